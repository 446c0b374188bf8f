"""PDF: text page by page (pypdf), sections from the outline, tables (pdfplumber), OCR for scanned pages.

For each page:

* **text** comes from pypdf's text layer, as before;
* **sections**: the PDF's outline (bookmarks) gives a heading path per page; a heading's title found in the page
  text splits the page there, so text before it keeps the previous section;
* **tables**: pages with table rules or cell-sized boxes (counted cheaply with PDFium first) go through
  pdfplumber's table finder, and tables ruled with horizontal lines only (LaTeX's booktabs) are read from the text
  between their rules. Each table becomes a Markdown table ``Document`` with its caption (a ``Table N`` line next
  to it, else the line just above, else the nearest heading), and the page's text is then re-read (pdfplumber)
  without the table's characters, so no cell is indexed twice. A table that continues on the next page keeps its
  header;
* **OCR**: a page without a text layer that holds images, or whose text layer is far too thin for a page that is
  mostly image (a scan with a stamped header line), is rendered (PDFium) and OCR'd (``ingest.formats.ocr``). Only
  those pages are; their ``Document``s carry ``ocr=True`` and the engine's confidence.

A PDF that yields no text at all is a named failure: encrypted, corrupt, or "no extractable text" with the reason
(OCR off, no engine installed, or OCR found nothing).

Example::

    >>> [(d.page, d.section, d.ocr) for d in load_pdf(Path("report.pdf"), "h")]  # doctest: +SKIP
    [(1, 'Introduction', False), (2, 'Results › Sales', False), (2, 'Results › Sales', False), (3, None, True)]
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.formats.common import LoadOptions, vanished
from ingest.formats.ocr import PDFIUM_LOCK, OcrConfig, OcrPages, no_engine_hint, resolve_engine
from ingest.formats.tables import looks_like_caption, table_document
from rag.errors import IngestError
from rag.types import SECTION_SEP, Document

_log = logging.getLogger(__name__)

THIN_TEXT_CHARS = 100  # a text layer shorter than this on a page mostly covered by images is OCR'd
IMAGE_PAGE_COVERAGE = 0.5  # "mostly image": images cover at least this share of the page
ANY_IMAGE_COVERAGE = 0.05  # a page without text is OCR'd when images cover at least this share
OUTLINED_TEXT_PATHS = 300  # or when it holds this many vector paths (text converted to outlines)
MIN_TABLE_ROWS, MIN_TABLE_COLS = 2, 2  # a framed paragraph (1 x 1 "table") stays text
CAPTION_GAP = 40.0  # points between a table and a caption line
TEXT_OPTIONS = {"x_tolerance_ratio": 0.15}  # a gap over 15% of the font size is a space (TeX output has no spaces)
MIN_RULE_WIDTH = 60.0  # points: a horizontal rule at least this long may bound a table drawn with rules only
EDGE = 0.2  # a table within this share of the page's height from its top/bottom may continue across pages


@dataclass(frozen=True)
class _PageStats:
    paths: int
    image_coverage: float  # 0-1
    rules: int = 0  # thin horizontal or vertical lines (table rules, cell borders)
    boxes: int = 0  # rectangles of cell size (tables drawn as boxes)

    @property
    def may_hold_a_table(self) -> bool:
        return self.rules >= 2 or self.boxes >= 4


@dataclass(frozen=True)
class _Heading:
    path: str
    title: str
    top: float | None  # PDF y coordinate of the destination (from the bottom), when known


@dataclass
class _OpenTable:
    """The last table of the previous page, in case it continues."""

    n_cols: int
    header: list[str]
    caption: str | None
    near_bottom: bool


# ----------------------------------------------------------------------------------------------------- opening
def _open(path: Path) -> Any:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PdfStreamError

    # pypdf logs every recoverable glitch of real-world PDFs as a warning; they are not the user's business.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    logging.getLogger("pdfminer").setLevel(logging.ERROR)
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except (NotImplementedError, DependencyError) as e:  # AES without the crypto extra
                hint = "pip install 'pypdf[crypto]'"
                raise IngestError(f"encrypted PDF that needs a crypto library: {hint} ({e})") from e
            if not ok:
                raise IngestError("encrypted PDF (password protected): decrypt it first, e.g. qpdf --decrypt")
        n_pages = len(reader.pages)
    except FileNotFoundError as e:
        raise vanished() from e
    except IngestError:
        raise
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise IngestError(f"corrupt PDF, pypdf cannot read it: {e or type(e).__name__}") from e
    if n_pages == 0:
        raise IngestError("corrupt PDF: it has no pages")
    return reader


try:  # pypdf raises DependencyError for AES without cryptography; keep the name importable for the except above
    from pypdf.errors import DependencyError
except ImportError:  # pragma: no cover - old pypdf

    class DependencyError(Exception):  # type: ignore[no-redef]
        pass


def _probe(path: Path, n_pages: int) -> list[_PageStats]:
    """Vector paths and image coverage of every page, from PDFium (fast C); zeros when PDFium cannot read it."""
    try:
        import pypdfium2 as pdfium
        import pypdfium2.raw as raw
    except ImportError:  # the docs extra is not installed: no table or scan detection
        return [_PageStats(0, 0.0)] * n_pages
    stats = []
    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(str(path))
        except Exception as e:  # pypdf read it; PDFium may still refuse odd files
            _log.info("%s: PDFium cannot open it (%s): no table or scan detection", path, e)
            return [_PageStats(0, 0.0)] * n_pages
        try:
            for i in range(min(n_pages, len(pdf))):
                page = pdf[i]
                try:
                    width, height = page.get_size()
                    area = max(width * height, 1.0)
                    paths, rules, boxes, covered = 0, 0, 0, 0.0
                    for obj in page.get_objects():
                        if obj.type == raw.FPDF_PAGEOBJ_PATH:
                            paths += 1
                            left, bottom, right, top = obj.get_bounds()
                            w, h = right - left, top - bottom
                            if (h <= 3 and w >= 30) or (w <= 3 and h >= 8):
                                rules += 1
                            elif 8 <= w <= 0.95 * width and 4 <= h <= 0.5 * height:
                                boxes += 1
                        elif obj.type == raw.FPDF_PAGEOBJ_IMAGE:
                            left, bottom, right, top = obj.get_bounds()
                            w = max(0.0, min(right, width) - max(left, 0.0))
                            h = max(0.0, min(top, height) - max(bottom, 0.0))
                            covered += w * h
                    stats.append(_PageStats(paths, min(covered / area, 1.0), rules, boxes))
                finally:
                    page.close()
        except Exception as e:
            _log.info("%s: PDFium failed on a page (%s): no table or scan detection after it", path, e)
        finally:
            pdf.close()
    return stats + [_PageStats(0, 0.0)] * (n_pages - len(stats))


# ----------------------------------------------------------------------------------------------------- outline
def _outline(reader: Any) -> dict[int, list[_Heading]]:
    """Outline entries by 0-based page index, in outline order, each with its full heading path."""
    out: dict[int, list[_Heading]] = {}

    def walk(items: list[Any], parents: list[str]) -> None:
        last_title: str | None = None
        for item in items:
            if isinstance(item, list):
                if last_title is not None:
                    walk(item, [*parents, last_title])
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            if not title:
                continue
            last_title = title
            try:
                index = reader.get_destination_page_number(item)
            except Exception:
                index = None
            if index is None or index < 0:
                continue
            top = getattr(item, "top", None)
            try:
                top_f = float(top) if top is not None else None
            except (TypeError, ValueError):
                top_f = None
            out.setdefault(index, []).append(_Heading(SECTION_SEP.join([*parents, title]), title, top_f))

    try:
        walk(list(reader.outline), [])
    except Exception as e:  # a broken outline must not cost the document
        _log.info("outline unreadable (%s): no sections", e)
        return {}
    for headings in out.values():  # top of the page first (PDF y grows upwards); unknown positions keep order
        headings.sort(key=lambda h: -(h.top if h.top is not None else float("inf")))
    return out


def _title_at(text: str, title: str, start: int) -> int | None:
    """Where the heading ``title`` starts in ``text`` at or after ``start`` (a line start preferred)."""
    words = [re.escape(w) for w in title.split()]
    if not words:
        return None
    pattern = r"\s+".join(words)
    line = re.compile(r"(?im)^[\W\d.]{0,12}" + pattern)
    m = line.search(text, start)
    if m:
        return m.start()
    m = re.compile(pattern, re.IGNORECASE).search(text, start)
    return m.start() if m else None


def _split_sections(text: str, current: str | None, headings: list[_Heading]) -> tuple[list[tuple[int, str | None]],
                                                                                       str | None]:
    """Cut points ``(offset, section)`` of a page's text and the section in effect at its end."""
    cuts: list[tuple[int, str | None]] = [(0, current)]
    cursor = 0
    for h in headings:
        at = _title_at(text, h.title, cursor)
        at = cursor if at is None else at
        if at == cuts[-1][0]:
            cuts[-1] = (at, h.path)
        else:
            cuts.append((at, h.path))
        cursor = at
        current = h.path
    return cuts, current


def _sections(text: str, cuts: list[tuple[int, str | None]]) -> Iterator[tuple[str, int, str | None]]:
    """``(piece, offset, section)`` of a page's text cut at ``cuts`` (empty pieces left out)."""
    bounds = [c[0] for c in cuts[1:]] + [len(text)]
    for (start, section), end in zip(cuts, bounds, strict=True):
        piece = text[start:end]
        if piece.strip():
            yield piece, start, section


# ------------------------------------------------------------------------------------------------------ tables
def _page_tables(plumber_page: Any) -> tuple[list[tuple[list[list[str]], str | None,
                                                                             tuple[float, float]]], str | None]:
    """(rows, caption, (top, bottom)) of the ruled tables on a page, and the page text without their characters.

    Tables ruled as a grid come from pdfplumber's line finder; tables with horizontal rules only (LaTeX booktabs,
    many reports) from ``_rules_only_tables``.
    """
    tables: list[tuple[tuple[float, float, float, float], list[list[str]]]] = []
    for t in plumber_page.find_tables():
        if not t.bbox:
            continue
        rows = [[c or "" for c in row] for row in t.extract(**TEXT_OPTIONS)]
        rows = [r for r in rows if any(c.strip() for c in r)]
        if len(rows) >= MIN_TABLE_ROWS and max((len(r) for r in rows), default=0) >= MIN_TABLE_COLS:
            tables.append((tuple(t.bbox), rows))
    tables += _rules_only_tables(plumber_page, [bbox for bbox, _ in tables])
    if not tables:
        return [], None
    try:
        lines = plumber_page.extract_text_lines(**TEXT_OPTIONS)
    except Exception:
        lines = []
    boxes = [bbox for bbox, _ in tables]

    def inside(obj: dict[str, Any]) -> bool:
        if obj.get("object_type") != "char":
            return False
        cx, cy = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
        return any(x0 <= cx <= x1 and top <= cy <= bottom for x0, top, x1, bottom in boxes)

    rest = plumber_page.filter(lambda obj: not inside(obj)).extract_text(**TEXT_OPTIONS) or ""
    out = []
    for (_, top, _, bottom), rows in sorted(tables, key=lambda t: t[0][1]):
        out.append((rows, _caption(lines, top, bottom, boxes), (top, bottom)))
    return out, rest


def _rules_only_tables(
    page: Any, taken: list[tuple[float, float, float, float]]
) -> list[tuple[tuple[float, float, float, float], list[list[str]]]]:
    """Tables drawn with horizontal rules only: two or more rules of the same extent enclose the table, its rows
    are the text lines between them and its columns the horizontal spans that the cells of every row share.

    Written here because pdfplumber's text-based strategies merge such rows or cut cells mid-word. Text between
    two rules that does not fall into at least two columns (a boxed paragraph, a code listing) is left alone.
    """
    rules: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for edge in page.edges:
        if edge.get("orientation") == "h" and edge["x1"] - edge["x0"] >= MIN_RULE_WIDTH:
            rules.setdefault((round(edge["x0"] / 3), round(edge["x1"] / 3)), []).append(edge)
    found = []
    for group in rules.values():
        tops = sorted({round(e["top"]) for e in group})
        if len(tops) < 2 or tops[-1] - tops[0] < 12:
            continue
        x0, x1 = min(e["x0"] for e in group), max(e["x1"] for e in group)
        top, bottom = float(tops[0]), float(tops[-1])
        if any(not (x1 < b[0] or x0 > b[2] or bottom < b[1] or top > b[3]) for b in taken):
            continue
        words = [w for w in page.extract_words(**TEXT_OPTIONS)
                 if top < (w["top"] + w["bottom"]) / 2 < bottom and x0 - 2 <= w["x0"] and w["x1"] <= x1 + 2]
        rows = _rows_from_words(words)
        if len(rows) < MIN_TABLE_ROWS:
            continue
        # A table has a header that names most columns and cells in most places; code listings and figures
        # framed by rules do not.
        cells = [c for r in rows for c in r]
        if sum(bool(c) for c in rows[0]) < 0.5 * len(rows[0]) or sum(bool(c) for c in cells) < 0.5 * len(cells):
            continue
        found.append(((x0, top, x1, bottom), rows))
        taken = [*taken, (x0, top, x1, bottom)]
    return found


def _rows_from_words(words: list[dict[str, Any]]) -> list[list[str]]:
    """Words -> rows of cells: lines by vertical position, cells by word gaps, columns by shared horizontal spans."""
    lines: list[list[dict[str, Any]]] = []
    for w in sorted(words, key=lambda w: (round(w["top"]), w["x0"])):
        if lines and abs(lines[-1][0]["top"] - w["top"]) <= 3:
            lines[-1].append(w)
        else:
            lines.append([w])
    cells_by_line: list[list[tuple[float, float, str]]] = []
    for line in lines:
        line.sort(key=lambda w: w["x0"])
        cells: list[tuple[float, float, str]] = []
        for w in line:
            gap = 0.8 * max(w["bottom"] - w["top"], 1.0)  # much wider than a space: a new cell
            if cells and w["x0"] - cells[-1][1] <= gap:
                cells[-1] = (cells[-1][0], w["x1"], f"{cells[-1][2]} {w['text']}")
            else:
                cells.append((w["x0"], w["x1"], w["text"]))
        cells_by_line.append(cells)
    spans: list[list[float]] = []  # the union of the cells' horizontal extents: one span per column
    for x_start, x_end, _ in sorted((c for cells in cells_by_line for c in cells), key=lambda c: c[0]):
        if spans and x_start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], x_end)
        else:
            spans.append([x_start, x_end])
    if len(spans) < MIN_TABLE_COLS:
        return []
    rows = []
    for cells in cells_by_line:
        row = [""] * len(spans)
        for x_start, x_end, text in cells:
            centre = (x_start + x_end) / 2
            j = next(i for i, (a, b) in enumerate(spans) if a <= centre <= b)
            row[j] = f"{row[j]} {text}".strip()
        rows.append(row)
    return rows


def _caption(lines: list[dict[str, Any]], top: float, bottom: float, boxes: list[Any]) -> str | None:
    """A ``Table N`` line just above or below the table, else the short line right above it."""

    def in_a_table(line: dict[str, Any]) -> bool:
        cy = (line["top"] + line["bottom"]) / 2
        return any(b[1] <= cy <= b[3] for b in boxes)

    above = [ln for ln in lines if ln["bottom"] <= top + 1 and top - ln["bottom"] <= CAPTION_GAP and not in_a_table(ln)]
    below = [ln for ln in lines if ln["top"] >= bottom - 1 and ln["top"] - bottom <= CAPTION_GAP and not in_a_table(ln)]
    above.sort(key=lambda ln: top - ln["bottom"])
    below.sort(key=lambda ln: ln["top"] - bottom)
    for ln in above[:2] + below[:2]:
        if looks_like_caption(ln["text"]):
            return str(ln["text"]).strip()
    if above and len(above[0]["text"]) <= 120 and top - above[0]["bottom"] <= CAPTION_GAP / 2:
        return str(above[0]["text"]).strip()
    return None


# -------------------------------------------------------------------------------------------------------- load
def load_pdf(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
    """The ``Document``s of a PDF (see the module docstring): sections of each page's text, its tables, OCR'd pages.

    Encrypted PDFs are opened with the empty user password when they allow it (common for "protected" PDFs that
    only restrict printing).
    """
    from pypdf.errors import FileNotDecryptedError

    options = options or LoadOptions()
    reader = _open(path)
    n_pages = len(reader.pages)
    stats = _probe(path, n_pages)
    headings = _outline(reader)
    source = str(path)
    plumber: Any = None
    engine: str | None = None
    engine_checked = False
    ocr: OcrPages | None = None
    ocr_wanted = 0
    any_text = False
    current: str | None = None
    open_table: _OpenTable | None = None
    try:
        for number in range(n_pages):
            try:
                text = reader.pages[number].extract_text() or ""
            except FileNotDecryptedError as e:
                raise IngestError("encrypted PDF (password protected): decrypt it first, e.g. qpdf --decrypt") from e
            except FileNotFoundError as e:
                raise vanished() from e
            except Exception as e:  # one broken page must not cost the rest of the document
                _log.warning("%s: page %d skipped: %s", path, number + 1, e)
                continue
            text = text.replace("\x00", "")
            page_headings = headings.get(number, [])
            st = stats[number]
            chars = len(text.strip())
            if (chars == 0 and (st.image_coverage >= ANY_IMAGE_COVERAGE or st.paths >= OUTLINED_TEXT_PATHS)) or (
                0 < chars < THIN_TEXT_CHARS and st.image_coverage >= IMAGE_PAGE_COVERAGE
            ):
                ocr_wanted += 1
                if not engine_checked:
                    engine, engine_checked = resolve_engine(options.ocr_engine), True
                    if engine:
                        config = OcrConfig(engine, options.ocr_languages, options.ocr_threads)
                        ocr = OcrPages(config, options.ocr_workers)
                if ocr is not None:
                    _, end_section = _split_sections(text, current, page_headings)
                    ocr.submit_pdf_page(source, number, options.ocr_dpi, key=(number, text, current, page_headings))
                    current = end_section
                    open_table = None
                    continue
                if not chars:
                    continue
            page_no = number + 1
            tables: list[tuple[list[list[str]], str | None, tuple[float, float]]] = []
            height = 0.0
            if st.may_hold_a_table:
                try:
                    if plumber is None:
                        import pdfplumber

                        plumber = pdfplumber.open(path, password="")
                    ppage = plumber.pages[number]
                    height = float(ppage.height)
                    tables, rest = _page_tables(ppage)
                    if tables and rest is not None:
                        text = rest.replace("\x00", "")
                        for _, caption, _ in tables:  # a caption goes with its table, not into the page's text
                            text = _drop_line(text, caption) if caption else text
                    ppage.close()
                except ImportError:
                    pass
                except Exception as e:  # pdfplumber failing on one page leaves its text as pypdf read it
                    _log.info("%s: page %d: no table detection (%s)", path, page_no, e)
                    tables = []
            cuts, end_section = _split_sections(text, current, page_headings)
            for piece, start, section in _sections(text, cuts):
                any_text = True
                yield Document(source=source, text=piece, file_type="pdf", file_hash=file_hash, page=page_no,
                               offset=start, section=section)
            offset = len(text)
            for i, (rows, caption, (top, bottom)) in enumerate(tables):
                n_cols = max(len(r) for r in rows)
                if (i == 0 and open_table and open_table.near_bottom and open_table.n_cols == n_cols
                        and height and top < EDGE * height):
                    if [c.strip() for c in rows[0]] == [c.strip() for c in open_table.header]:
                        rows = rows[1:]  # the header is repeated on the new page
                    rows = [open_table.header, *rows]
                    caption = caption or open_table.caption
                section = _section_at(cuts, text, top, height) if height else current
                cap = caption or (section.split(SECTION_SEP)[-1] if section else None)
                doc = table_document(rows, cap, source=source, file_type="pdf", file_hash=file_hash, page=page_no,
                                     section=section, offset=offset)
                if doc is not None:
                    any_text = True
                    offset += len(doc.text) + 1
                    yield doc
                open_table = _OpenTable(n_cols, rows[0], caption, bool(height) and bottom > (1 - EDGE) * height)
            if not tables:
                open_table = None
            current = end_section
        if ocr is not None:
            for (number, text_layer, section, page_headings), result in ocr.results():
                text, used_ocr = result.text, True
                if len(result.text.strip()) <= len(text_layer.strip()):  # OCR read less than the thin layer had
                    text, used_ocr = text_layer, False
                if not text.strip():
                    continue
                cuts, _ = _split_sections(text, section, page_headings)
                for piece, start, sec in _sections(text, cuts):
                    any_text = True
                    yield Document(source=source, text=piece, file_type="pdf", file_hash=file_hash, page=number + 1,
                                   offset=start, section=sec, ocr=used_ocr,
                                   ocr_confidence=result.confidence if used_ocr else None)
    finally:
        if ocr is not None:
            ocr.cancel()
        if plumber is not None:
            plumber.close()
    if not any_text:
        raise IngestError(_no_text_reason(ocr_wanted, engine, options))
    if ocr_wanted and engine is None:
        _log.warning("%s: %d scanned page(s) not read: %s", path, ocr_wanted, no_engine_hint(options.ocr_engine))


def _drop_line(text: str, line: str) -> str:
    """``text`` without the first line equal to ``line`` (whitespace-insensitive); unchanged when absent."""
    want = " ".join(line.split())
    lines = text.split("\n")
    for i, candidate in enumerate(lines):
        if " ".join(candidate.split()) == want:
            return "\n".join(lines[:i] + lines[i + 1 :])
    return text


def _section_at(cuts: list[tuple[int, str | None]], text: str, top: float, height: float) -> str | None:
    """The section in effect at a table's position, estimated from its height on the page."""
    share = min(max(top / height, 0.0), 1.0)
    at = int(share * len(text))
    section = cuts[0][1]
    for offset, sec in cuts:
        if offset <= at:
            section = sec
    return section


def _no_text_reason(ocr_wanted: int, engine: str | None, options: LoadOptions) -> str:
    if not ocr_wanted:
        return "no extractable text: the pages hold neither a text layer nor scanned images"
    if engine is None:
        return f"no extractable text (a scanned or image-only PDF): {no_engine_hint(options.ocr_engine)}"
    return (f"no extractable text: {ocr_wanted} scanned page(s) without a text layer, and OCR ({engine}) found no "
            "text in them (blank, too blurred, or not a script the OCR model reads)")
