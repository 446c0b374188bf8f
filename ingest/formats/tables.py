"""Tables as Markdown: rows of cells -> a table ``Document`` whose caption and header row repeat in every chunk.

Every table loader (PDF via pdfplumber, HTML, DOCX, PPTX, XLSX/CSV, Markdown pipe tables) hands its rows to
``table_document``; the chunker calls ``split_table`` for documents with a ``table_header``. Cells are kept in
their row and column (empty cells stay empty), so a number sits under its column header and beside its row label
in every chunk, which is what lets a question about one cell find it.

Example::

    >>> doc = table_document([["Region", "Q1"], ["North", "10"], ["South", "12"]], "Table 1: Sales",
    ...                      source="/a.pdf", file_type="pdf", file_hash="h")
    >>> print(doc.text)
    Table 1: Sales
    | Region | Q1 |
    | --- | --- |
    | North | 10 |
    | South | 12 |
    >>> [t for _, _, t in split_table(doc.text, doc.table_header, lambda s: len(s.split()), 18)][1]
    'Table 1: Sales\\n| Region | Q1 |\\n| --- | --- |\\n| South | 12 |'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rag.types import Document

MAX_CAPTION_CHARS = 200


def cell_text(value: Any) -> str:
    """One cell as Markdown: whitespace collapsed, ``|`` escaped, ``None`` empty, whole floats without ``.0``."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    elif hasattr(value, "isoformat"):  # dates and times from spreadsheets
        text = value.isoformat()
        value = text[:-9] if text.endswith("T00:00:00") else text
    return " ".join(str(value).split()).replace("|", "\\|")


def clean_rows(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    """Rows as Markdown cells, empty rows and columns dropped, every row padded to the same width."""
    cells = [[cell_text(v) for v in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return []
    width = max(len(r) for r in cells)
    cells = [r + [""] * (width - len(r)) for r in cells]
    keep = [j for j in range(width) if any(r[j] for r in cells)]
    return [[r[j] for j in keep] for r in cells]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_document(
    rows: Sequence[Sequence[Any]],
    caption: str | None,
    *,
    source: str,
    file_type: str,
    file_hash: str,
    page: int | None = None,
    section: str | None = None,
    offset: int = 0,
    header_rows: int = 1,
    ocr: bool = False,
    ocr_confidence: float | None = None,
) -> Document | None:
    """A table ``Document`` (``None`` for a table without content): caption line, header rows, separator, body.

    A table of a single row or column is kept as a table too: its cells still sit under their caption.
    """
    cells = clean_rows(rows)
    if not cells or not any(any(r) for r in cells):
        return None
    header_rows = max(1, min(header_rows, len(cells)))
    head = [_row(r) for r in cells[:header_rows]]
    sep = _row(["---"] * len(cells[0]))
    caption = " ".join((caption or "").split())[:MAX_CAPTION_CHARS]
    header = "\n".join(([caption] if caption else []) + head + [sep]) + "\n"
    body = "\n".join(_row(r) for r in cells[header_rows:])
    return Document(
        source=source, text=header + body, file_type=file_type, file_hash=file_hash, page=page, offset=offset,
        section=section, ocr=ocr, ocr_confidence=ocr_confidence, table_header=header,
    )  # fmt: skip


def split_table(
    text: str, header: str | None, count_tokens: Callable[[str], int], size_tokens: int
) -> list[tuple[int, int, str]]:
    """``(start, end, chunk_text)`` per chunk of a table: whole rows under the repeated caption and header.

    ``start``/``end`` are the span of the chunk's body rows in ``text`` (the first chunk starts at 0, so the
    header is inside its span). A row longer than the budget is cut at cell, then word, boundaries.
    """
    header = header or ""
    if not text.startswith(header):
        raise ValueError("a table's header must be a prefix of its text")
    body_start = len(header)
    budget = max(size_tokens - count_tokens(header), size_tokens // 4, 1)
    out: list[tuple[int, int, str]] = []
    group: list[tuple[int, int]] = []  # (start, end) of the rows in the current chunk
    used = 0

    def emit() -> None:
        nonlocal used
        if group:
            start, end = group[0][0], group[-1][1]
            out.append((0 if not out else start, end, header + text[start:end]))
        group.clear()
        used = 0

    pos = body_start
    for line in text[body_start:].splitlines(keepends=True):
        start, end = pos, pos + len(line.rstrip("\n"))
        pos += len(line)
        if not text[start:end].strip():
            continue
        n = count_tokens(text[start:end])
        if n > budget:
            emit()
            for s, e in _cut_row(text, start, end, count_tokens, budget):
                out.append((s if out else 0, e, header + text[s:e]))
            continue
        if group and used + n > budget:
            emit()
        group.append((start, end))
        used += n
    emit()
    if not out:  # a header without body rows
        out.append((0, len(text), text.rstrip("\n")))
    return out


def _cut_row(
    text: str, start: int, end: int, count_tokens: Callable[[str], int], budget: int
) -> list[tuple[int, int]]:
    """Spans of one oversized row, cut after a cell (`` | ``) or a space, each within ``budget`` tokens."""
    spans: list[tuple[int, int]] = []
    piece_start = start
    used = 0
    last_cut = -1
    i = start
    while i < end:
        j = text.find(" ", i + 1, end)
        j = end if j == -1 else j
        n = count_tokens(text[i:j])
        if used + n > budget and i > piece_start:
            cut = last_cut if last_cut > piece_start else i
            spans.append((piece_start, cut))
            piece_start = cut
            used = count_tokens(text[cut:j])
        else:
            used += n
        if text.startswith(" |", j):
            last_cut = j
        i = j
    if piece_start < end:
        spans.append((piece_start, end))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def looks_like_caption(line: str) -> bool:
    """``Table 3: ...``, ``Tab. 2``, ``Tabelle 1``: the lines a caption starts with."""
    import re

    return bool(re.match(r"^\s*(table|tab\.|tabelle|tableau|tabla)\s*[\dIVX]+\b", line, re.IGNORECASE))
