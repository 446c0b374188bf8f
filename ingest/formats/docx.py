"""DOCX (python-docx): paragraphs and tables in document order, cut into sections at headings.

Headings are paragraphs in a "Title" or "Heading N" style (or with an outline level); each opens a section whose
path ("Methods › Sampling") goes with the text under it. A table becomes a table ``Document``: its caption is a
caption-style or ``Table N`` paragraph right before or after it, else the heading above it; rows marked "repeat as
header row" in Word are its header (else the first row). Merged cells are written once. Headers, footers,
footnotes and text boxes are not read.

Example::

    >>> [(d.section, d.table_header is not None) for d in load_docx(Path("report.docx"), "h")]  # doctest: +SKIP
    [('Report', False), ('Report › Results', False), ('Report › Results', True)]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.formats.common import HeadingPath, LoadOptions, check_office_zip
from ingest.formats.tables import looks_like_caption, table_document
from rag.errors import IngestError
from rag.types import Document

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def _heading_level(paragraph: Any) -> int | None:
    style = paragraph.style
    for _ in range(4):  # a custom style based on "Heading 2" is a heading too
        if style is None:
            break
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 0
        m = _HEADING_STYLE.match(name)
        if m:
            return int(m.group(1))
        style = style.base_style
    levels = paragraph._p.xpath("./w:pPr/w:outlineLvl/@w:val")
    if levels and str(levels[0]).isdigit() and int(levels[0]) < 9:
        return int(levels[0]) + 1
    return None


def _is_caption(item: Any) -> bool:
    from docx.text.paragraph import Paragraph

    if not isinstance(item, Paragraph) or not item.text.strip():
        return False
    style = (item.style.name if item.style is not None else "") or ""
    return style.lower() == "caption" or looks_like_caption(item.text)


def _cell_text(cell: Any) -> str:
    parts = [cell.text]
    for inner in cell.tables:  # nested tables: their text stays in the cell that holds them
        parts.extend(c.text for row in inner.rows for c in row.cells)
    return " ".join(p for p in parts if p.strip())


def _table_rows(table: Any) -> tuple[list[list[str]], int]:
    rows: list[list[str]] = []
    header_rows = 0
    counting = True
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a horizontally merged cell repeats: write it once
                cells.append("")
                continue
            previous = cell._tc
            cells.append(_cell_text(cell))
        rows.append(cells)
        repeats = bool(row._tr.xpath("./w:trPr/w:tblHeader"))
        if counting and repeats:
            header_rows += 1
        else:
            counting = False
    return rows, max(1, header_rows)


def load_docx(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
    """Section and table ``Document``s of a Word file (see the module docstring)."""
    options = options or LoadOptions()
    check_office_zip(path, "DOCX", options)
    try:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        document = docx.Document(str(path))
        items = list(document.iter_inner_content())
    except ImportError as e:
        raise IngestError("DOCX support needs python-docx: pip install 'rag-private-docs[docs]'") from e
    except Exception as e:  # python-docx raises KeyError, lxml and zip errors for damaged files
        raise IngestError(f"corrupt DOCX, python-docx cannot read it: {e or type(e).__name__}") from e
    source = str(path)
    heading = HeadingPath()
    buffer: list[tuple[str, bool]] = []  # (paragraph text, is a heading) of the current section
    start = 0  # where the buffered section starts in the document's text
    position = 0
    found = False

    def flush(force: bool = False) -> Iterator[Document]:
        # A section holding only its heading gives no chunk: the heading leads the next section's path.
        nonlocal start
        text = "\n".join(t for t, _ in buffer)
        if text.strip() and (force or any(t.strip() for t, is_heading in buffer if not is_heading)):
            yield Document(source=source, text=text, file_type="docx", file_hash=file_hash, offset=start,
                           section=heading.section)
        buffer.clear()
        start = position

    skip: set[int] = set()  # a caption paragraph after a table: it is in the table's chunk
    for i, item in enumerate(items):
        if i in skip:
            continue
        if isinstance(item, Paragraph):
            text = item.text.replace("\x00", "")
            level = _heading_level(item) if text.strip() else None
            if level is not None:
                for doc in flush():
                    found = True
                    yield doc
                heading.enter(level, text)
            buffer.append((text, level is not None))
            position += len(text) + 1
        elif isinstance(item, Table):
            caption = None
            if i and _is_caption(items[i - 1]) and buffer and not buffer[-1][1]:
                caption = buffer.pop()[0]  # the caption goes with the table, not into the text before it
            elif i + 1 < len(items) and _is_caption(items[i + 1]):
                caption = getattr(items[i + 1], "text", None)
                skip.add(i + 1)
            for doc in flush():
                found = True
                yield doc
            try:
                rows, header_rows = _table_rows(item)
            except Exception:  # a malformed table: its text, at least
                rows, header_rows = [[c.text for c in r.cells] for r in item.rows], 1
            table = table_document(rows, caption or heading.last, source=source, file_type="docx",
                                   file_hash=file_hash, section=heading.section, offset=position,
                                   header_rows=header_rows)
            if table is not None:
                found = True
                position += len(table.text) + 1
                yield table
            start = position
    for doc in flush(force=not found):  # a document of headings only: its text is the headings
        found = True
        yield doc
    if not found:
        raise IngestError("no text in this DOCX (an empty document, or only images: OCR does not read them)")
