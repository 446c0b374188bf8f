"""OCR: the text of a page image, offline. RapidOCR by default (``rapidocr`` 3.x: PP-OCRv6 detection and
recognition models inside its wheel); Tesseract through ``pytesseract`` when ``tesseract`` is on PATH.

Why ``rapidocr`` 3.x and not ``rapidocr-onnxruntime`` 1.4 (PP-OCRv4): on noisy 150 dpi scans the older
recognition model dropped most spaces between words ("thefactsabout"; CER 6.0% against 0.4%), which ruins keyword
search and embeddings of scanned pages.

``ocr_image`` is a pure function of the image bytes (it may run in any process); ``OcrPages`` runs many pages of
a file, in this process for one worker or in a process pool that is kept for the run (``shutdown_pool`` ends it).
Each engine is loaded once per process. Workers are started with ``spawn``: forking a process that runs threads
(the parse pool, onnxruntime, torch) can deadlock the child.

Example::

    >>> resolve_engine("off") is None
    True
    >>> result = ocr_image(Path("scan.png").read_bytes(), "rapidocr")  # doctest: +SKIP
    >>> result.text[:40], round(result.confidence, 2)  # doctest: +SKIP
    ('The quarterly revenue of Zephyr Labs gre', 0.98)
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import IngestError

_log = logging.getLogger(__name__)

ENGINES = ("auto", "rapidocr", "tesseract", "off")
MAX_OCR_SIDE = 4000  # larger images are scaled down before OCR (a 300 dpi A4 page is 2480 x 3508)
DETECTION_SIDE = 1280  # RapidOCR finds text lines on the page scaled to this longer side
MAX_IMAGE_PIXELS = 250_000_000  # refused beyond this (PIL's decompression-bomb guard is lower and only warns)

PDFIUM_LOCK = threading.Lock()
"""PDFium is not thread-safe, not even across documents: every use in this process holds this lock."""


@dataclass(frozen=True)
class OcrResult:
    text: str
    confidence: float | None  # the engine's mean confidence (0-1) over the recognised text; None when none


@dataclass(frozen=True)
class OcrConfig:
    """What a worker needs to OCR a page (picklable)."""

    engine: str  # "rapidocr" or "tesseract": already resolved
    languages: str = "eng"
    threads: int = 0  # onnxruntime threads of this process (0 = its default: all cores); split among pool workers


def rapidocr_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("rapidocr") is not None


def tesseract_installed() -> bool:
    import importlib.util

    return shutil.which("tesseract") is not None and importlib.util.find_spec("pytesseract") is not None


def resolve_engine(requested: str) -> str | None:
    """The engine to use for the setting ``requested`` (``None``: no OCR); ``IngestError`` if it is missing."""
    if requested == "off":
        return None
    if requested == "auto":
        if rapidocr_installed():
            return "rapidocr"
        return "tesseract" if tesseract_installed() else None
    if requested == "rapidocr":
        if not rapidocr_installed():
            raise IngestError(
                "RAG_INGEST__OCR_ENGINE=rapidocr but rapidocr is not installed: "
                "pip install 'rag-private-docs[docs]'"
            )
        return "rapidocr"
    if requested == "tesseract":
        if not tesseract_installed():
            raise IngestError(
                "RAG_INGEST__OCR_ENGINE=tesseract but tesseract is not available: install tesseract-ocr "
                "(apt-get install tesseract-ocr) and pytesseract"
            )
        return "tesseract"
    raise IngestError(f"unknown OCR engine {requested!r}; use one of {', '.join(ENGINES)}")


def no_engine_hint(requested: str) -> str:
    if requested == "off":
        return "OCR is off (RAG_INGEST__OCR_ENGINE=off)"
    return ("no OCR engine is installed: pip install 'rag-private-docs[docs]' (RapidOCR) "
            "or apt-get install tesseract-ocr")


# ------------------------------------------------------------------------------------------------------ engines
_ENGINES: dict[tuple[str, int], Any] = {}
_ENGINE_LOCK = threading.Lock()


def _rapidocr(threads: int) -> Any:
    """The RapidOCR engine of this process (``rapidocr`` 3.x; PP-OCRv6 models from its wheel, offline)."""
    key = ("rapidocr", threads)
    with _ENGINE_LOCK:
        if key not in _ENGINES:
            from rapidocr import RapidOCR

            # Recognition reads crops of the full-resolution page (the default 2000 px cap would shrink a 200 dpi
            # page first); detection finds the lines on a smaller copy (faster, as accurate on documents). No angle
            # classifier: it turned upright lines upside down on clean scans, and the line was then lost.
            params: dict[str, Any] = {
                "Global.log_level": "warning", "Global.max_side_len": MAX_OCR_SIDE, "Global.use_cls": False,
                "Det.limit_type": "max", "Det.limit_side_len": DETECTION_SIDE,
            }  # fmt: skip
            if threads > 0:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
                params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
            _ENGINES[key] = RapidOCR(params=params)
        return _ENGINES[key]


def _lines_from_boxes(items: Iterable[tuple[float, float, float, float, str, float]]) -> OcrResult:
    """Text in reading order from word/line boxes ``(left, top, right, bottom, text, confidence)``.

    Boxes whose vertical centres lie within half a line height join one line (left to right); a gap of more than
    about one line height between lines starts a new paragraph.
    """
    boxes = sorted((b for b in items if b[4].strip()), key=lambda b: (b[1] + b[3]) / 2)
    if not boxes:
        return OcrResult("", None)
    lines: list[list[tuple[float, float, float, float, str, float]]] = []
    for b in boxes:
        centre, height = (b[1] + b[3]) / 2, max(b[3] - b[1], 1.0)
        if lines:
            last = lines[-1]
            l_centre = sum((x[1] + x[3]) / 2 for x in last) / len(last)
            if abs(centre - l_centre) <= height / 2:
                last.append(b)
                continue
        lines.append([b])
    heights = sorted(max(b[3] - b[1], 1.0) for b in boxes)
    typical = heights[len(heights) // 2]
    out: list[str] = []
    prev_bottom: float | None = None
    for line in lines:
        line.sort(key=lambda b: b[0])
        top = min(b[1] for b in line)
        if prev_bottom is not None and top - prev_bottom > 1.0 * typical:
            out.append("")
        out.append(" ".join(b[4].strip() for b in line))
        prev_bottom = max(b[3] for b in line)
    weights = [len(b[4]) for b in boxes]
    confidence = sum(b[5] * w for b, w in zip(boxes, weights, strict=True)) / max(sum(weights), 1)
    return OcrResult("\n".join(out).strip(), round(float(confidence), 4))


def _ocr_rapid(image: Any, threads: int) -> OcrResult:
    import numpy as np

    out = _rapidocr(threads)(np.asarray(image.convert("RGB")))
    items = []
    for box, text, score in zip(out.boxes, out.txts, out.scores, strict=True) if out.txts else ():
        xs, ys = [float(p[0]) for p in box], [float(p[1]) for p in box]
        items.append((min(xs), min(ys), max(xs), max(ys), str(text), float(score)))
    return _lines_from_boxes(items)


def _ocr_tesseract(image: Any, languages: str) -> OcrResult:
    import pytesseract

    data = pytesseract.image_to_data(image, lang=languages, output_type=pytesseract.Output.DICT)
    items = []
    for i, word in enumerate(data["text"]):
        conf = float(data["conf"][i])
        if conf < 0 or not str(word).strip():
            continue
        left, top, w, h = data["left"][i], data["top"][i], data["width"][i], data["height"][i]
        items.append((float(left), float(top), float(left + w), float(top + h), str(word), conf / 100.0))
    return _lines_from_boxes(items)


def ocr_pil(image: Any, config: OcrConfig) -> OcrResult:
    """OCR of a PIL image (scaled down first when its longer side exceeds ``MAX_OCR_SIDE``)."""
    if max(image.size) > MAX_OCR_SIDE:
        image = image.copy()
        image.thumbnail((MAX_OCR_SIDE, MAX_OCR_SIDE))
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if config.engine == "rapidocr":
        return _ocr_rapid(image, config.threads)
    if config.engine == "tesseract":
        return _ocr_tesseract(image, config.languages)
    raise ValueError(f"unknown OCR engine {config.engine!r}")


def ocr_image(image: bytes, engine: str, languages: str = "eng", threads: int = 0) -> OcrResult:
    """OCR of one encoded image (PNG, JPEG, TIFF ...): the pure per-page function a worker process runs."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as img:
        img.load()
        return ocr_pil(img, OcrConfig(engine, languages, threads))


def render_pdf_page(path: str, index: int, dpi: int, password: str | None = None) -> Any:
    """Page ``index`` (0-based) of a PDF as a PIL image at ``dpi`` (PDFium; the caller holds ``PDFIUM_LOCK``)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path, password=password)
    try:
        page = pdf[index]
        try:
            bitmap = page.render(scale=dpi / 72.0, grayscale=True)
            try:
                return bitmap.to_pil().copy()
            finally:
                bitmap.close()
        finally:
            page.close()
    finally:
        pdf.close()


def ocr_pdf_page(path: str, index: int, dpi: int, config: OcrConfig) -> OcrResult:
    """Render page ``index`` of the PDF at ``path`` and OCR it (what a pool worker runs for a PDF page)."""
    with PDFIUM_LOCK:
        image = render_pdf_page(path, index, dpi)
    return ocr_pil(image, config)


# --------------------------------------------------------------------------------------------------------- pool
_POOL: ProcessPoolExecutor | None = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()


def _worker_init() -> None:
    _exit_with_parent(os.getppid())
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # cv2 is only there with rapidocr
        pass
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """A pool worker leaves when the process that started it is gone (``kill -9`` of ``rag ingest``, or of a parse
    worker): pool workers wait on a queue forever otherwise. A watch thread, not ``PR_SET_PDEATHSIG``: that fires
    when the *thread* that started the worker ends, and pools are started from short-lived parse threads."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="rag-ocr-orphan-watch", daemon=True).start()


def _pool(workers: int) -> ProcessPoolExecutor:
    global _POOL, _POOL_WORKERS
    with _POOL_LOCK:
        if _POOL is None or _POOL_WORKERS != workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False, cancel_futures=True)
            import multiprocessing

            _POOL = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_init)
            _POOL_WORKERS = workers
        return _POOL


def shutdown_pool() -> None:
    """Stop the OCR worker processes (the next OCR starts a new pool)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=True, cancel_futures=True)
            _POOL = None


atexit.register(shutdown_pool)


def _ocr_image_task(image: bytes, config: OcrConfig) -> OcrResult:
    return ocr_image(image, config.engine, config.languages, config.threads)


class OcrPages:
    """OCR of several pages of one file: submitted as they are found, results collected in order.

    With ``workers == 1`` pages are OCR'd right here, one by one, as they are submitted. With more, pages go to a
    process pool; a file with a single page to OCR (most images, a scan of one page) is read here instead, since
    starting the pool's workers would take longer than the page.

        >>> runner = OcrPages(OcrConfig("rapidocr"), workers=2)  # doctest: +SKIP
        >>> runner.submit_pdf_page("/scan.pdf", 0, 200, key=1)  # doctest: +SKIP
        >>> [(key, r.text[:20]) for key, r in runner.results()]  # doctest: +SKIP
        [(1, 'The quarterly revenu')]
    """

    def __init__(self, config: OcrConfig, workers: int) -> None:
        self.workers = max(1, workers)
        self.local = config  # for pages read in this process: onnxruntime's own thread count
        threads = config.threads
        if self.workers > 1:  # the workers share this process's cores (all of them, or its ``threads`` budget)
            threads = max(1, (config.threads or os.cpu_count() or 1) // self.workers)
        self.pooled = OcrConfig(config.engine, config.languages, threads)
        self._pending: list[tuple[Any, Future[OcrResult] | OcrResult]] = []
        self._deferred: tuple[Any, Any, tuple[Any, ...]] | None = None  # a first task, until a second comes

    def submit_pdf_page(self, path: str, index: int, dpi: int, key: Any) -> None:
        self._add(key, ocr_pdf_page, (path, index, dpi))

    def submit_image(self, image: bytes, key: Any) -> None:
        self._add(key, _ocr_image_task, (image,))

    def submit_pil(self, image: Any, key: Any) -> None:
        """A PIL image: OCR'd here with one worker, else sent to the pool as PNG bytes."""
        if self.workers == 1:
            self._pending.append((key, ocr_pil(image, self.local)))
            return
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        self.submit_image(buffer.getvalue(), key)

    def _add(self, key: Any, fn: Any, args: tuple[Any, ...]) -> None:
        if self.workers == 1:
            self._pending.append((key, fn(*args, self.local)))
        elif self._deferred is None and not self._pending:
            self._deferred = (key, fn, args)
        else:
            if self._deferred is not None:
                first_key, first_fn, first_args = self._deferred
                self._deferred = None
                self._pending.append((first_key, self._submit(first_fn, *first_args, self.pooled)))
            self._pending.append((key, self._submit(fn, *args, self.pooled)))

    def _submit(self, fn: Any, *args: Any) -> Future[OcrResult]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return _pool(self.workers).submit(fn, *args)
        except BrokenProcessPool:  # a worker died earlier (out of memory?): start a fresh pool once
            shutdown_pool()
            return _pool(self.workers).submit(fn, *args)

    def results(self) -> Iterator[tuple[Any, OcrResult]]:
        """``(key, result)`` in submission order; ``IngestError`` when a page cannot be read or a worker dies."""
        from concurrent.futures.process import BrokenProcessPool

        if self._deferred is not None:  # the only page of the file: read here
            key, fn, args = self._deferred
            self._deferred = None
            self._pending.append((key, fn(*args, self.local)))
        try:
            while self._pending:
                key, item = self._pending.pop(0)
                try:
                    result = item.result() if isinstance(item, Future) else item
                except BrokenProcessPool as e:
                    shutdown_pool()
                    raise IngestError("an OCR worker process died (out of memory?) while reading this file") from e
                yield key, result
        finally:
            self.cancel()

    def cancel(self) -> None:
        self._deferred = None
        for _, item in self._pending:
            if isinstance(item, Future):
                item.cancel()
        self._pending.clear()


def pil_open(path: Path) -> Any:
    """Open an image file, naming the usual problems (corrupt, truncated, too many pixels)."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as e:
        raise IngestError(f"image too large to read safely ({e})") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise IngestError(f"corrupt image, Pillow cannot read it: {e}") from e
