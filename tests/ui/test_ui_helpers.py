"""Upload name sanitizing and saving, citation rendering, the sidebar's settings mapping, the ``rag chat`` command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import ConfigError
from ui import render, services
from ui.cli import streamlit_command
from ui.uploads import sanitize_filename, save_uploads, upload_dir


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("..\\..\\Windows\\system.ini", "system.ini"),
        ("C:\\Users\\me\\Résumé 2024.pdf", "Résumé 2024.pdf"),
        ("報告書.md", "報告書.md"),
        ("Ünïcödé – straße.txt", "Ünïcödé – straße.txt"),
        ("e\u0301te\u0301.txt", "été.txt"),  # decomposed accents are normalised (NFC)
        ("", "upload"),
        ("..", "upload"),
        (".", "upload"),
        ("   ", "upload"),
        ("/", "upload"),
        (".bashrc", "bashrc"),  # no hidden files
        ("evil\nname\x00.md", "evilname.md"),
        ("a:b*c?.md", "a_b_c_.md"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # right-to-left override cannot disguise the suffix
    ],
)
def test_sanitize_filename(raw: str, safe: str) -> None:
    assert sanitize_filename(raw) == safe


def test_sanitize_keeps_suffix_of_overlong_unicode_names() -> None:
    name = sanitize_filename("é" * 300 + ".pdf")
    assert name.endswith(".pdf")
    assert len(name.encode()) <= 255


@dataclass
class Upload:
    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def getvalue(self) -> bytes:
        return self.data


def test_save_uploads_stays_inside_the_collection_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, collection="papers", ui={"max_upload_mb": 1})
    result = save_uploads(
        [Upload("../../../outside.md", b"# hi"), Upload("big.txt", b"x" * (1024 * 1024 + 1)), Upload("", b"?")],
        settings,
    )
    target = tmp_path / "uploads" / "papers"
    assert upload_dir(settings) == target
    assert result.saved == (target / "outside.md",)
    assert (target / "outside.md").read_bytes() == b"# hi"
    assert not (tmp_path / "outside.md").exists()
    assert [name for name, _ in result.rejected] == ["big.txt", ""]  # too big; no name, so no readable type
    assert "1 MB" in result.rejected[0][1] and "supported type" in result.rejected[1][1]
    assert sorted(p.name for p in target.iterdir()) == ["outside.md"]  # no temp files left behind


def test_signed_in_uploads_go_to_the_users_folder_and_types_are_checked(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, collection="papers")
    result = save_uploads([Upload("../../x.md", b"# x"), Upload("run.sh", b"rm -rf /"), Upload("a.PDF.exe", b"MZ")],
                          settings, user="../bob")  # fmt: skip
    assert result.saved == (tmp_path / "uploads" / "papers" / "bob" / "x.md",)
    assert [name for name, _ in result.rejected] == ["run.sh", "a.PDF.exe"]


def test_citations_become_badges_and_dollars_stay_literal() -> None:
    assert render.answer_markdown("Costs $5 [1, 2] and [3].") == (
        "Costs \\$5 :blue-badge[1]:blue-badge[2] and :blue-badge[3]."
    )
    # the badges and the pipeline's citations read markers with the same parser (rag.prompt)
    assert render.answer_markdown("See [2-3] and [source 1].") == (
        "See :blue-badge[2]:blue-badge[3] and :blue-badge[1]."
    )
    assert render.claims_for("A [2-3]. B [1].", 3) == "A [2-3]."


def test_passage_marks_the_cited_sentence_and_escapes_html() -> None:
    chunk = "Intro <b>text</b>. The warranty lasts two years from delivery. Returns need a receipt."
    out = render.passage_html(chunk, render.claims_for("Hi. The warranty lasts two years [2]. Other [1].", 2))
    assert "<mark>The warranty lasts two years from delivery.</mark>" in out
    assert "&lt;b&gt;text&lt;/b&gt;" in out  # chunk text can never inject markup
    assert out.count("<mark>") == 1
    assert "<mark>" not in render.passage_html(chunk, "completely unrelated words")
    # paragraphs stay visible as line breaks, and never end the HTML block (markdown would parse the rest)
    para = render.passage_html("# Title\n\n\n\nFirst *para*.\n\nSecond.\n", "")
    assert para == "# Title<br><br>First *para*.<br><br>Second."


def test_with_ui_choices_maps_modes_and_rejects_bad_collections() -> None:
    base = Settings()
    dense = services.with_ui_choices(
        base, collection="notes", k=7, mode="dense", base_url=" http://h:8000/v1 ", model="m"
    )
    assert (dense.collection, dense.retrieval.k, dense.retrieval.mode, dense.retrieval.rerank) == (
        "notes",
        7,
        "dense",
        False,
    )
    assert (dense.llm.base_url, dense.llm.model) == ("http://h:8000/v1", "m")
    assert services.ui_mode(dense) == "dense"
    reranked = services.with_ui_choices(base, collection="notes", k=5, mode="reranked", base_url="", model="")
    assert services.ui_mode(reranked) == "reranked" and reranked.llm.base_url is None
    with pytest.raises(ConfigError, match="invalid collection name"):
        services.with_ui_choices(base, collection="../x", k=5, mode="dense", base_url="", model="")


def test_chat_command_is_local_headless_and_private_by_default() -> None:
    cmd = streamlit_command("127.0.0.1", 8600, 50)
    opts = dict(zip(cmd[7::2], cmd[8::2], strict=True))
    # python -m rag.processes PID streamlit run APP: Streamlit that ends with `rag chat` (tests/test_signals.py)
    assert cmd[1:3] == ["-m", "rag.processes"] and cmd[4:6] == ["streamlit", "run"]
    assert cmd[6].endswith("ui/app.py") and Path(cmd[6]).exists()
    assert opts["--server.address"] == "127.0.0.1"
    assert opts["--server.port"] == "8600"
    assert opts["--server.headless"] == "true"
    assert opts["--browser.gatherUsageStats"] == "false"
    assert opts["--server.maxUploadSize"] == "50"


def test_sample_documents_leave_out_the_readme_and_questions(tmp_path: Path) -> None:
    for name in ("README.md", "questions.txt", "a.pdf", "b.md", ".hidden.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / ".ragignore").write_text("README.md\nquestions.txt\n")  # as docs/samples has
    assert [p.name for p in services.sample_documents(tmp_path)] == ["a.pdf", "b.md"]
    bundled = {p.name for p in services.sample_documents()}
    assert bundled and not bundled & {"README.md", "questions.txt", ".ragignore"}
    assert services.sample_documents(tmp_path / "missing") == []


def test_rag_chat_indexes_the_samples_only_into_an_empty_collection(fake_embedder, capsys) -> None:  # type: ignore[no-untyped-def]
    from rag.wiring import Wiring, overriding
    from ui import cli

    with overriding(embedder=fake_embedder):
        cli._index_samples_if_empty(Settings())
        assert "indexing the" in capsys.readouterr().err
        with Wiring(Settings()).collection() as collection:
            indexed = sorted(Path(source).name for source, _ in collection.documents())
        assert indexed == sorted(p.name for p in services.sample_documents()) and indexed
        cli._index_samples_if_empty(Settings())
        assert "indexing the" not in capsys.readouterr().err  # a collection with documents is left alone


def test_file_names_and_questions_are_shown_literally() -> None:
    assert render.md_escape("*draft*_v2 [old] $5.md") == "\\*draft\\*\\_v2 \\[old\\] \\$5\\.md"
    assert render.md_escape("Résumé – 2024") == "Résumé – 2024"  # letters and dashes untouched


def test_source_label_says_page_or_slide_and_section() -> None:
    from rag.types import Chunk

    def chunk(file_type: str, page: int | None, section: str | None) -> Chunk:
        return Chunk(id="a", text="t", source=f"/d/x.{file_type}", page=page, start=0, end=1, content_hash="h",
                     file_hash="f", file_type=file_type, section=section)

    assert render.source_label(chunk("pdf", 3, None)) == "x.pdf · p. 3"
    assert render.source_label(chunk("pptx", 12, "Risks")) == "x.pptx · slide 12 · Risks"
    assert render.source_label(chunk("docx", None, "Report › Sales")) == "x.docx · Report › Sales"
