"""Images (PNG, JPEG, TIFF): their text, by OCR. A multi-page TIFF (a fax, a scanner's output) gives one page per
frame, OCR'd in parallel like the pages of a scanned PDF.

An image in which OCR finds no text is a named failure ("no text found by OCR"), as is an image when OCR is off or
no engine is installed: never a silent empty document.

Example::

    >>> [(d.page, d.ocr, d.ocr_confidence) for d in load_image(Path("receipt.jpg"), "h")]  # doctest: +SKIP
    [(None, True, 0.97)]
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ingest.formats.common import LoadOptions, vanished
from ingest.formats.ocr import MAX_IMAGE_PIXELS, OcrConfig, OcrPages, no_engine_hint, pil_open, resolve_engine
from rag.errors import IngestError
from rag.types import Document


def load_image(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
    """One ``Document`` per image (per frame of a multi-page TIFF) with its OCR'd text and confidence."""
    options = options or LoadOptions()
    try:
        if path.stat().st_size == 0:
            raise IngestError("empty file")
    except FileNotFoundError as e:
        raise vanished() from e
    engine = resolve_engine(options.ocr_engine)
    if engine is None:
        raise IngestError(f"an image is read by OCR, and {no_engine_hint(options.ocr_engine)}")
    image = pil_open(path)
    with image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise IngestError(f"image too large ({width} x {height} pixels): scale it down first")
        frames = int(getattr(image, "n_frames", 1) or 1)
        config = OcrConfig(engine, options.ocr_languages, options.ocr_threads)
        runner = OcrPages(config, options.ocr_workers if frames > 1 else 1)
        try:
            for index in range(frames):
                image.seek(index)
                frame = image.convert("L" if image.mode in ("1", "L", "P", "I;16") else "RGB")
                runner.submit_pil(frame, key=index)
        except (OSError, ValueError, EOFError) as e:
            runner.cancel()
            raise IngestError(f"corrupt image, Pillow cannot read it: {e}") from e
    found = False
    for index, result in runner.results():
        if result.text.strip():
            found = True
            yield Document(source=str(path), text=result.text, file_type=path.suffix.lower().lstrip("."),
                           file_hash=file_hash, page=index + 1 if frames > 1 else None, ocr=True,
                           ocr_confidence=result.confidence)
    if not found:
        raise IngestError(f"no text found by OCR ({engine}) in this image")
