"""Loaders on real files, good and bad: every bad file gets a reason a user can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ingest import load
from ingest.load import LOADERS, detect_encoding, load_file
from rag.errors import IngestError


def test_pdf_pages_keep_their_numbers(tmp_path: Path, kit: Any) -> None:
    docs = list(load_file(kit.write_pdf(tmp_path / "a.pdf", kit.PAGES), "h"))
    assert [d.page for d in docs] == [1, 2, 3]
    assert "powerhouse" in docs[0].text and "Ribosomes" in docs[2].text
    assert {d.file_type for d in docs} == {"pdf"}


def test_corrupt_pdf_is_named_corrupt(tmp_path: Path, kit: Any) -> None:
    good = kit.write_pdf(tmp_path / "good.pdf", kit.PAGES).read_bytes()
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(good[:200] + b"\x00garbage" * 50)
    with pytest.raises(IngestError, match="corrupt PDF"):
        list(load_file(bad, "h"))
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"this is not a pdf at all")
    with pytest.raises(IngestError, match="corrupt PDF"):
        list(load_file(junk, "h"))


def test_encrypted_pdf_with_password_is_reported(tmp_path: Path, kit: Any) -> None:
    src = kit.write_pdf(tmp_path / "src.pdf", kit.PAGES)
    locked = kit.write_encrypted_pdf(tmp_path / "locked.pdf", "s3cret", src)
    with pytest.raises(IngestError, match="encrypted PDF"):
        list(load_file(locked, "h"))


def test_encrypted_pdf_with_empty_user_password_opens(tmp_path: Path, kit: Any) -> None:
    src = kit.write_pdf(tmp_path / "src.pdf", kit.PAGES)
    restricted = kit.write_encrypted_pdf(tmp_path / "restricted.pdf", "", src)
    docs = list(load_file(restricted, "h"))
    assert [d.page for d in docs] == [1, 2, 3]


def test_image_only_pdf_has_no_extractable_text(tmp_path: Path, kit: Any) -> None:
    with pytest.raises(IngestError, match="no extractable text"):
        list(load_file(kit.write_image_only_pdf(tmp_path / "scan.pdf"), "h"))


def test_empty_files(tmp_path: Path) -> None:
    for name in ("empty.txt", "empty.md", "empty.html", "empty.pdf"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(IngestError, match="empty|corrupt"):
            list(load_file(tmp_path / name, "h"))
    (tmp_path / "blank.txt").write_text("  \n\n \t\n")
    with pytest.raises(IngestError, match="empty"):
        list(load_file(tmp_path / "blank.txt", "h"))


def test_binary_file_named_txt(tmp_path: Path) -> None:
    p = tmp_path / "photo.txt"
    p.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(IngestError, match="binary file"):
        list(load_file(p, "h"))


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1252", "Größe über alles, schöne Grüße aus Köln und Düsseldorf. Straße, Maß, Fuß."),
        ("utf-16", "Unicode text with a BOM: naïve café, 東京, Ελληνικά."),
        ("utf-8-sig", "UTF-8 with a byte order mark: crème brûlée."),
        ("koi8-r", "Съешь же ещё этих мягких французских булок, да выпей чаю. " * 4),
    ],
)
def test_non_utf8_text_is_decoded(tmp_path: Path, encoding: str, text: str) -> None:
    p = tmp_path / "legacy.txt"
    p.write_bytes(text.encode(encoding))
    (doc,) = list(load_file(p, "h"))
    assert doc.text.strip() == text.strip()
    assert "\ufeff" not in doc.text


def test_detect_encoding_prefers_utf8() -> None:
    assert detect_encoding(b"plain ascii") == "utf-8"
    assert detect_encoding("naïve".encode()[:-1]) == "utf-8"  # a multibyte char cut at the sample's end


def test_html_keeps_visible_text_only(tmp_path: Path) -> None:
    p = tmp_path / "page.html"
    p.write_text(
        "<html><head><title>Volcanoes</title><style>.x{color:red}</style></head><body>"
        "<script>var secret = 1;</script><h1>Lava</h1><p>Magma at the surface is lava.</p>"
        "<noscript>enable js</noscript></body></html>"
    )
    (doc,) = list(load_file(p, "h"))
    assert "Magma at the surface is lava." in doc.text and "Lava" in doc.text and "Volcanoes" in doc.text
    assert "secret" not in doc.text and "color" not in doc.text and "enable js" not in doc.text


def test_html_meta_charset_is_honoured(tmp_path: Path) -> None:
    p = tmp_path / "legacy.htm"
    p.write_bytes('<html><head><meta charset="iso-8859-1"></head><body><p>Déjà vu à Noël</p></body></html>'
                  .encode("latin-1"))
    (doc,) = list(load_file(p, "h"))
    assert "Déjà vu à Noël" in doc.text


def test_unknown_type_and_vanished_file(tmp_path: Path) -> None:
    assert ".odt" not in LOADERS
    (tmp_path / "a.odt").write_bytes(b"PK")
    with pytest.raises(IngestError, match="unsupported file type"):
        list(load_file(tmp_path / "a.odt", "h"))
    with pytest.raises(IngestError, match="vanished"):
        list(load_file(tmp_path / "gone.txt", "h"))


def test_large_text_is_streamed_in_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big file comes out in bounded pieces whose offsets rebuild the file exactly."""
    monkeypatch.setattr(load, "TEXT_PIECE_CHARS", 10_000)
    monkeypatch.setattr(load, "READ_BYTES", 4096)
    paragraph = "Line of a very long log file with some words in it, über alles.\n"
    text = "".join(f"{i} {paragraph}" + ("\n" if i % 7 == 0 else "") for i in range(3000))
    p = tmp_path / "big.txt"
    p.write_text(text, encoding="utf-8")
    docs = list(load_file(p, "h"))
    assert len(docs) > 10
    assert max(len(d.text) for d in docs) <= 10_000
    assert "".join(d.text for d in docs) == text
    for d in docs:
        assert text[d.offset : d.offset + len(d.text)] == d.text


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_utf16_and_utf32_without_a_byte_order_mark_are_text(tmp_path: Path, encoding: str, suffix: str) -> None:
    """Before: "binary file, not text (NUL bytes)". Windows tools (PowerShell's Out-File, Notepad's "Unicode")
    write UTF-16LE, sometimes without a BOM."""
    text = "Quarterly report — Größe und Qualität.\r\nRevenue rose 12% in the third quarter.\r\n" * 50
    path = tmp_path / f"report{suffix}"
    path.write_bytes(text.encode(encoding))
    docs = list(load_file(path, "h"))
    assert "".join(d.text for d in docs).replace("\r\n", "\n").count("Revenue rose 12%") == 50


def test_utf16_html_without_a_byte_order_mark(tmp_path: Path) -> None:
    page = "<html><head><title>Notes</title></head><body><p>Die Größe zählt.</p></body></html>"
    path = tmp_path / "page.html"
    path.write_bytes(page.encode("utf-16-le"))
    assert "Die Größe zählt." in next(iter(load_file(path, "h"))).text


def test_binary_with_nul_bytes_is_still_binary(tmp_path: Path) -> None:
    import struct

    for name, data in (("ints.txt", struct.pack("<2000i", *range(2000))), ("zeros.txt", bytes(5000)),
                       ("random.txt", bytes((i * 7919 + 13) % 256 for i in range(20000)))):  # fmt: skip
        (tmp_path / name).write_bytes(data)
        with pytest.raises(IngestError, match="binary file"):
            list(load_file(tmp_path / name, "h"))
