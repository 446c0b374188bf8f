"""OCR of scanned pages and images with the packaged RapidOCR models (offline); only pages that need it are read.

Kept small on purpose (a handful of pages at 150 dpi): OCR is the slowest thing ingestion does.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from ingest.formats.common import LoadOptions
from ingest.formats.ocr import _lines_from_boxes, resolve_engine
from ingest.load import load_file
from rag.errors import IngestError

pytestmark = pytest.mark.skipif(resolve_engine("auto") is None, reason="no OCR engine installed (docs extra)")

STORM = "The lighthouse keeper logged a storm on the ninth of November, with waves over the pier."
CLAIM = "Insurance claim 7731 covers the broken lantern and two cracked windows of the tower."
INVOICE = "Invoice 4471-B was paid in full on 3 March 2021."


def _merge(target: Path, *parts: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for part in parts:
        for page in PdfReader(part).pages:
            writer.add_page(page)
    with target.open("wb") as f:
        writer.write(f)
    return target


def _words(text: str) -> set[str]:
    return {w.strip(".,").lower() for w in text.split()}


def test_only_scanned_pages_are_ocrd_thin_stamp_included(tmp_path: Path, make: SimpleNamespace) -> None:
    text_page = make.text_pdf(tmp_path / "t.pdf", ["The harbour master keeps a typed log of every ship."])
    scan = make.scanned_pdf(tmp_path / "s.pdf", [STORM], stamp="Scanned 2025-03-04 by OfficeJet")
    mixed = _merge(tmp_path / "mixed.pdf", text_page, scan)
    docs = list(load_file(mixed, "h", LoadOptions(ocr_workers=1)))
    assert [(d.page, d.ocr) for d in docs] == [(1, False), (2, True)]
    assert docs[0].ocr_confidence is None
    scanned = docs[1]
    assert _words(STORM) <= _words(scanned.text)  # the picture was read, not only the thin stamp layer
    assert scanned.ocr_confidence is not None and 0.8 < scanned.ocr_confidence <= 1.0


def test_pages_are_ocrd_in_a_process_pool_in_order(tmp_path: Path, make: SimpleNamespace) -> None:
    from ingest.formats import ocr
    from ingest.formats.ocr import shutdown_pool

    scan = make.scanned_pdf(tmp_path / "two.pdf", [STORM, CLAIM])
    try:
        docs = list(load_file(scan, "h", LoadOptions(ocr_workers=2)))
        assert ocr._POOL is not None and ocr._POOL_WORKERS == 2  # the pages went to worker processes
    finally:
        shutdown_pool()
    assert [(d.page, d.ocr) for d in docs] == [(1, True), (2, True)]
    assert "lighthouse keeper" in docs[0].text and "lantern" in docs[1].text


def test_image_file_is_read_by_ocr(tmp_path: Path, make: SimpleNamespace) -> None:
    (doc,) = load_file(make.png(tmp_path / "receipt.png", INVOICE), "h", LoadOptions(ocr_workers=1))
    assert (doc.file_type, doc.page, doc.ocr) == ("png", None, True)
    assert "4471-B" in doc.text and "March 2021" in doc.text


def test_a_scan_that_yields_nothing_is_a_named_failure(tmp_path: Path, make: SimpleNamespace) -> None:
    from PIL import Image

    blank = tmp_path / "blank.pdf"
    Image.new("L", (1240, 1754), 255).save(blank, "PDF", resolution=150)
    with pytest.raises(IngestError, match=r"no extractable text: 1 scanned page.*OCR \(rapidocr\) found no text"):
        list(load_file(blank, "h", LoadOptions(ocr_workers=1)))
    Image.new("RGB", (400, 300), "white").save(tmp_path / "white.jpg")
    with pytest.raises(IngestError, match="no text found by OCR"):
        list(load_file(tmp_path / "white.jpg", "h", LoadOptions(ocr_workers=1)))


def test_ocr_off_names_the_setting(tmp_path: Path, make: SimpleNamespace) -> None:
    scan = make.scanned_pdf(tmp_path / "s.pdf", [STORM], dpi=72)
    with pytest.raises(IngestError, match=r"no extractable text \(a scanned .*OCR is off"):
        list(load_file(scan, "h", LoadOptions(ocr_engine="off")))
    with pytest.raises(IngestError, match="OCR is off"):
        list(load_file(make.png(tmp_path / "a.png", INVOICE, dpi=72), "h", LoadOptions(ocr_engine="off")))


def test_an_image_with_too_many_pixels_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from ingest.formats import image

    monkeypatch.setattr(image, "MAX_IMAGE_PIXELS", 100 * 100)
    Image.new("L", (200, 120), 255).save(tmp_path / "poster.png")
    with pytest.raises(IngestError, match=r"image too large \(200 x 120 pixels\)"):
        list(load_file(tmp_path / "poster.png", "h"))


def test_bad_images_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    with pytest.raises(IngestError, match="empty file"):
        list(load_file(tmp_path / "empty.png", "h"))
    with pytest.raises(IngestError, match="corrupt image"):
        list(load_file(tmp_path / "junk.jpg", "h"))


def test_boxes_become_lines_and_paragraphs_in_reading_order() -> None:
    boxes = [  # (left, top, right, bottom, text, confidence), out of order as detectors return them
        (300, 12, 500, 30, "world", 0.9),
        (10, 10, 250, 30, "hello", 1.0),
        (10, 40, 200, 60, "second line", 0.8),
        (10, 120, 200, 140, "new paragraph", 0.7),
    ]
    result = _lines_from_boxes(boxes)
    assert result.text == "hello world\nsecond line\n\nnew paragraph"
    assert result.confidence is not None and 0.7 < result.confidence < 1.0


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr is not installed")
def test_tesseract_engine(tmp_path: Path, make: SimpleNamespace) -> None:
    (doc,) = load_file(make.png(tmp_path / "r.png", INVOICE, dpi=200), "h",
                       LoadOptions(ocr_engine="tesseract", ocr_workers=1))
    assert doc.ocr and "4471-B" in doc.text and doc.ocr_confidence is not None


def test_scans_are_ocrd_inside_parse_worker_processes(tmp_path: Path, make: SimpleNamespace) -> None:
    """``rag ingest`` with two parse processes: each OCRs its files with its share of the OCR budget (here one OCR
    process each: the page is read in the parse process itself, no pool per worker), and the chunks, their OCR
    provenance and the summary's count are those of a run that parses in one thread."""
    from ingest.formats import ocr
    from ingest.pipeline import ingest_paths
    from rag.config import Settings
    from rag.wiring import Wiring
    from tests.fakes import FakeEmbedder

    folder = tmp_path / "docs"
    folder.mkdir()
    make.scanned_pdf(folder / "storm.pdf", [STORM])
    make.png(folder / "receipt.png", INVOICE)
    (folder / "notes.md").write_text("# Notes\n\nThe pier was repaired in spring.")

    def run(name: str, **ingest: int) -> tuple[int, dict[str, tuple[bool, str]]]:
        settings = Settings(data_dir=tmp_path / name, ingest=ingest)
        summary = ingest_paths([folder], settings, embedder=FakeEmbedder())
        assert summary.new == 3 and not summary.failed, summary.failed
        with Wiring(settings, embedder=FakeEmbedder()).collection() as c:
            return summary.ocr_pages, {ch.id: (ch.ocr, ch.text) for ch in c.store.chunks()}

    pooled = run("pooled", workers=2, ocr_workers=2)
    assert ocr._POOL is None  # this process OCR'd nothing: the parse workers did
    assert pooled == run("threaded", workers=0, ocr_workers=1)
    pages, chunks = pooled
    read = " ".join(text for is_ocr, text in chunks.values() if is_ocr)
    assert pages == 2 and "lighthouse keeper" in read and "4471-B" in read
