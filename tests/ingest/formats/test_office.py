"""DOCX, PPTX, XLSX, CSV and e-mail on real files made here; bad files of each type get a reason a user can act on."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ingest.formats.common import LoadOptions
from ingest.load import load_file
from ingest.pipeline import ingest_paths
from rag.config import Settings
from rag.errors import IngestError
from rag.wiring import Wiring

DECK = [
    {"title": "Kickoff", "body": ["Budget approved for the Arctic survey", "Team of five"],
     "notes": "Mention that the Oslo office pays for the boat."},
    {"title": "Revenue by region", "table": [["Region", "Q1"], ["North", "1,204"], ["South", "2,518"]]},
    {"title": "Risks", "body": ["Sea ice may close the harbour in February"]},
]  # fmt: skip


def test_docx_sections_paragraphs_and_table_in_order(tmp_path: Path, make: SimpleNamespace) -> None:
    docs = list(load_file(make.docx(tmp_path / "report.docx"), "h"))
    assert [(d.section, d.table_header is not None) for d in docs] == [
        ("Annual report › Operations", False),
        # "Sales" and "By region" hold no text of their own; the caption paragraph goes with the table
        ("Annual report › Sales › By region", True),
        ("Annual report › Sales › By region", False),
        ("Annual report › Outlook", False),
    ]
    table = docs[1]
    assert table.text.splitlines()[:2] == ["Table 4: Revenue by region in thousands of euros",
                                           "| Region | Q1 revenue | Q2 revenue | Manager |"]
    assert "Tromsø" in docs[0].text and "Bodø" in docs[3].text
    assert "Dmitri Volkov" not in docs[2].text and "Table 4" not in docs[2].text  # cells only in the table
    assert [d.offset for d in docs] == sorted(d.offset for d in docs)
    assert {d.file_type for d in docs} == {"docx"}


def test_pptx_one_page_per_slide_with_title_table_and_notes(tmp_path: Path, make: SimpleNamespace) -> None:
    docs = list(load_file(make.pptx(tmp_path / "deck.pptx", DECK), "h"))
    assert [(d.page, d.section, d.table_header is not None) for d in docs] == [
        (1, "Kickoff", False), (2, "Revenue by region", True), (3, "Risks", False)
    ]
    assert "Speaker notes: Mention that the Oslo office pays for the boat." in docs[0].text
    assert docs[1].text.splitlines()[:2] == ["Revenue by region", "| Region | Q1 |"]


def test_xlsx_rows_under_their_header_sheet_as_section(tmp_path: Path, make: SimpleNamespace) -> None:
    import datetime

    path = make.xlsx(tmp_path / "budget.xlsx", {
        "2023": [["Travel budget 2023"], ["Team", "Budget", "Approved"], ["Survey", 12500.0, datetime.date(2023, 2, 1)],
                 ["Lab", 8000, None], [None, None, None], ["Vessel", "Days"], ["Polarstern", 14]],
        "Empty": [],
    })  # fmt: skip
    docs = list(load_file(path, "h"))
    assert [d.section for d in docs] == ["2023", "2023"]  # two tables on the sheet; the empty sheet gives none
    assert docs[0].text == ("Travel budget 2023\n| Team | Budget | Approved |\n| --- | --- | --- |\n"
                            "| Survey | 12500 | 2023-02-01 |\n| Lab | 8000 |  |")
    assert docs[1].text.splitlines()[1] == "| Vessel | Days |"


def test_csv_and_tsv(tmp_path: Path) -> None:
    csv_path = tmp_path / "people.csv"
    csv_path.write_text("name;city\nAda Lovelace;London\n\"Turing, Alan\";Wilmslow\n", encoding="cp1252")
    (doc,) = load_file(csv_path, "h")
    assert doc.text.splitlines() == ["| name | city |", "| --- | --- |", "| Ada Lovelace | London |",
                                     "| Turing, Alan | Wilmslow |"]
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a\tb\n1\t2\n")
    assert list(load_file(tsv, "h"))[0].text.splitlines()[2] == "| 1 | 2 |"


def test_long_sheet_is_loaded_in_bounded_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest.formats import sheets

    monkeypatch.setattr(sheets, "ROWS_PER_DOCUMENT", 100)
    big = tmp_path / "log.csv"
    big.write_text("id,value\n" + "".join(f"{i},{i * i}\n" for i in range(1050)))
    docs = list(load_file(big, "h"))
    assert len(docs) == 11
    assert all(d.text.startswith("| id | value |\n") for d in docs)
    assert sum(d.text.count("\n") - 1 for d in docs) == 1050


def test_eml_message_and_attachments_as_their_own_documents(tmp_path: Path, make: SimpleNamespace) -> None:
    deck = make.pptx(tmp_path / "plan.pptx", DECK)
    mail = make.eml(tmp_path / "offer.eml", "Survey plan", "Hi team,\nthe plan is attached.\nHanna", [deck])
    docs = list(load_file(mail, "h"))
    first = docs[0]
    assert first.file_type == "eml" and first.section == "Survey plan"
    assert "From: Hanna Berg <hanna@example.org>" in first.text and "the plan is attached" in first.text
    assert "Attachments: plan.pptx" in first.text
    slides = docs[1:]
    assert [(d.file_type, d.page) for d in slides] == [("pptx", 1), ("pptx", 2), ("pptx", 3)]
    assert all(d.source == str(mail) for d in slides)
    assert slides[0].section == "Survey plan › plan.pptx › Kickoff"


# ------------------------------------------------------------------------------------------------ bad input
def _encrypt(plain: Path, target: Path) -> Path:
    from msoffcrypto.format.ooxml import OOXMLFile

    with plain.open("rb") as f, target.open("wb") as out:
        OOXMLFile(f).encrypt("s3cret", out)
    return target


@pytest.mark.parametrize("kind", ["docx", "pptx", "xlsx"])
def test_bad_office_files_are_named(tmp_path: Path, make: SimpleNamespace, kind: str) -> None:
    good = {"docx": lambda p: make.docx(p), "pptx": lambda p: make.pptx(p, DECK[:1]),
            "xlsx": lambda p: make.xlsx(p, {"S": [["a", "b"], [1, 2]]})}[kind](tmp_path / f"good.{kind}")
    upper = kind.upper()
    cases: dict[str, tuple[bytes, str]] = {
        "empty": (b"", "empty file"),
        "truncated": (good.read_bytes()[:300], f"corrupt {upper}"),
        "not-a-zip": (b"Hello, I am plain text", f"corrupt {upper}"),
        "legacy": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "legacy"),
        "encrypted": (_encrypt(good, tmp_path / f"locked.{kind}").read_bytes(), f"encrypted {upper}"),
    }
    for name, (data, reason) in cases.items():
        bad = tmp_path / f"{name}.{kind}"
        bad.write_bytes(data)
        with pytest.raises(IngestError, match=reason):
            list(load_file(bad, "h"))


def test_zip_bomb_is_refused(tmp_path: Path, make: SimpleNamespace) -> None:
    source = make.docx(tmp_path / "a.docx")
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item, zin.read(item.filename))
        zout.writestr("word/media/padding.bin", b"\x00" * (40 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(IngestError, match=r"unpacks to 4\d MB, over the 16 MB limit"):
        list(load_file(bomb, "h", LoadOptions(max_expanded_mb=16)))
    assert list(load_file(bomb, "h", LoadOptions(max_expanded_mb=64)))  # under the limit it is read


def test_empty_office_documents_are_named(tmp_path: Path, make: SimpleNamespace) -> None:
    import docx
    from pptx import Presentation

    docx.Document().save(str(tmp_path / "blank.docx"))
    Presentation().save(str(tmp_path / "blank.pptx"))
    make.xlsx(tmp_path / "blank.xlsx", {"Sheet": []})
    for name, reason in (("blank.docx", "no text in this DOCX"), ("blank.pptx", "no text in this PPTX"),
                         ("blank.xlsx", "no data in this XLSX")):
        with pytest.raises(IngestError, match=reason):
            list(load_file(tmp_path / name, "h"))
    (tmp_path / "blank.eml").write_bytes(b"just some words, no headers\n")
    with pytest.raises(IngestError, match="not an e-mail"):
        list(load_file(tmp_path / "blank.eml", "h"))


def test_corrupt_docx_is_named_and_the_batch_continues_then_nothing_on_rerun(
    tmp_path: Path, make: SimpleNamespace, fake_embedder: Any
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    make.docx(folder / "report.docx")
    make.pptx(folder / "deck.pptx", DECK)
    make.xlsx(folder / "budget.xlsx", {"2024": [["Team", "Budget"], ["Survey", 12500]]})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")  # a zip that claims to be Office, without a document
    (folder / "broken.docx").write_bytes(buf.getvalue())
    settings = Settings()
    first = ingest_paths([folder], settings, embedder=fake_embedder)
    assert [(Path(f.path).name, "corrupt DOCX" in f.reason) for f in first.failed] == [("broken.docx", True)]
    assert (first.files_seen, first.new) == (4, 3)
    again = ingest_paths([folder], settings, embedder=fake_embedder)
    assert (again.new, again.changed, again.unchanged, again.chunks_added) == (0, 0, 3, 0)
    assert [Path(f.path).name for f in again.failed] == ["broken.docx"]

    collection = Wiring(settings, embedder=fake_embedder).collection()
    try:
        chunks = list(collection.store.chunks())
    finally:
        collection.close()
    assert len(chunks) == first.chunks_added
    slide = [c for c in chunks if c.file_type == "pptx" and c.page == 3]
    assert slide and slide[0].section == "Risks"
    assert any(c.section == "Annual report › Sales › By region" and "| Region |" in c.text for c in chunks)


def test_every_loader_suffix_is_ingested_by_default() -> None:
    """Discovery (and the UI's upload) use ``settings.ingest.include``: it must name every type a loader reads."""
    from ingest.load import LOADERS
    from rag.config import IngestSettings

    included = {"." + pattern.rsplit(".", 1)[-1] for pattern in IngestSettings().include}
    assert included == set(LOADERS)


def test_nested_eml_attachments_stop_at_a_depth(tmp_path: Path, make: SimpleNamespace) -> None:
    inner = make.eml(tmp_path / "level-0.eml", "Level 0", "The innermost message mentions the walrus.")
    for level in range(1, 7):  # each message carries the previous one as an .eml file
        inner = make.eml(tmp_path / f"level-{level}.eml", f"Level {level}", f"Message {level}.", [inner])
    docs = list(load_file(inner, "h"))
    assert [d.section.rsplit(" › ", 1)[-1] for d in docs if d.section] == [f"Level {n}" for n in (6, 5, 4, 3)]
    assert all(d.source == str(inner) for d in docs)
