"""Markdown and HTML with their structure: one ``Document`` per section (heading path), tables on their own.

Markdown: ATX (``## Title``) and setext (``Title`` over ``===``/``---``) headings outside code fences open
sections; pipe tables become table ``Document``s (their caption is a ``Table N`` line right above, else the
heading). HTML: ``<h1>``-``<h6>`` open sections, ``<table>``s with at least two rows and two columns become table
``Document``s (caption from ``<caption>``, else the heading); layout tables (one row, one column, or paragraphs in
cells) stay text.

Example::

    >>> docs = list(markdown_documents([(0, "# Fruit\\nApples.\\n## Pears\\nPears are sweet.\\n")], "/f.md", "h"))
    >>> [(d.section, d.text.strip()) for d in docs]
    [('Fruit', '# Fruit\\nApples.'), ('Fruit › Pears', '## Pears\\nPears are sweet.')]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from ingest.formats.common import HeadingPath
from ingest.formats.tables import looks_like_caption, table_document
from rag.types import Document

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_TABLE_SEP = re.compile(r"^ {0,3}\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_PIPE_SPLIT = re.compile(r"(?<!\\)\|")


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip().replace("\\|", "|") for c in _PIPE_SPLIT.split(line)]


def markdown_documents(pieces: Iterable[tuple[int, str]], source: str, file_hash: str) -> Iterator[Document]:
    """Section and table ``Document``s of Markdown text given as ``(offset, text)`` pieces (cut at paragraphs)."""
    heading = HeadingPath()
    in_fence = False
    for offset, text in pieces:
        lines = text.splitlines(keepends=True)
        starts = [0]
        for ln in lines:
            starts.append(starts[-1] + len(ln))
        block_start = 0
        body_start = 0  # after the heading line(s) that open the block

        def flush(end: int, block_start: int, body_start: int, text: str = text, offset: int = offset
                  ) -> Iterator[Document]:
            # A section holding only its heading gives no chunk: the heading leads the next section's path.
            piece = text[block_start:end]
            if text[max(body_start, block_start) : end].strip():
                yield Document(source=source, text=piece, file_type="md", file_hash=file_hash,
                               offset=offset + block_start, section=heading.section)

        i = 0
        while i < len(lines):
            line = lines[i].rstrip("\r\n")
            if _FENCE.match(line):
                in_fence = not in_fence
                i += 1
                continue
            if in_fence:
                i += 1
                continue
            nxt = lines[i + 1].rstrip("\r\n") if i + 1 < len(lines) else ""
            m = _ATX.match(line)
            setext = (not m and line.strip() and "|" not in line and _SETEXT.match(nxt)
                      and (i == 0 or not lines[i - 1].strip()))
            if m or setext:
                yield from flush(starts[i], block_start, body_start)
                if m:
                    heading.enter(len(m.group(1)), m.group(2))
                else:
                    heading.enter(1 if nxt.strip().startswith("=") else 2, line)
                block_start = starts[i]
                i += 2 if setext else 1
                body_start = starts[min(i, len(lines))]
                continue
            if "|" in line and _TABLE_SEP.match(nxt) and len(_cells(line)) >= 1:
                j = i + 2
                while j < len(lines) and "|" in lines[j] and lines[j].strip():
                    j += 1
                rows = [_cells(line)] + [_cells(lines[k]) for k in range(i + 2, j)]
                before = text[block_start : starts[i]].rstrip()
                prev = before.rsplit("\n", 1)[-1].strip()
                block_end = starts[i]
                if prev and looks_like_caption(prev):  # the caption goes with the table, not into the text
                    caption: str | None = prev
                    block_end = block_start + len(before) - len(before.rsplit("\n", 1)[-1])
                else:
                    caption = heading.last
                yield from flush(block_end, block_start, body_start)
                doc = table_document(rows, caption, source=source, file_type="md", file_hash=file_hash,
                                     section=heading.section, offset=offset + starts[i])
                if doc is not None:
                    yield doc
                block_start = body_start = starts[j]
                i = j
                continue
            i += 1
        yield from flush(len(text), block_start, body_start)


# --------------------------------------------------------------------------------------------------------- HTML
_INVISIBLE = ("script", "style", "noscript", "template", "head", "svg", "iframe", "object")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)*")
_MARKER = re.compile(r"\x02(H[1-6]\x04[^\x03]*|T\d+)\x03")
_CONTROL = str.maketrans("", "", "\x02\x03\x04")
MAX_TABLE_CELL_CHARS = 400  # a cell holding more text than this marks a layout table: its text stays text


def _html_table_rows(table: Any) -> tuple[list[list[str]], int]:
    rows: list[list[str]] = []
    header_rows = 0
    counting_header = True
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue  # a row of a nested table: its text is in the cell that holds it
        cells: list[str] = []
        all_th = True
        for cell in tr.find_all(["td", "th"], recursive=False):
            value = cell.get_text(" ", strip=True)
            all_th = all_th and cell.name == "th"
            try:
                span = max(1, min(int(cell.get("colspan", 1)), 50))
            except (TypeError, ValueError):
                span = 1
            cells.extend([value] + [""] * (span - 1))
        if not cells:
            continue
        in_thead = tr.find_parent("thead") is not None
        if counting_header and (in_thead or all_th):
            header_rows += 1
        else:
            counting_header = False
        rows.append(cells)
    return rows, max(1, header_rows)


def html_documents(markup: bytes | str, source: str, file_hash: str) -> Iterator[Document]:
    """Section and table ``Document``s of an HTML page's visible text (scripts, styles and the head dropped).

    ``markup`` is the file's bytes (BeautifulSoup detects the encoding: BOM, ``<meta charset>``, then
    charset-normalizer) or text the caller already decoded.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""  # it lives in <head>, dropped next
    for tag in soup(_INVISIBLE):
        tag.decompose()
    for node in soup.find_all(string=True):
        if any(c in node for c in "\x02\x03\x04"):
            node.replace_with(node.translate(_CONTROL))
    tables: list[tuple[list[list[str]], str | None, int]] = []
    for table in soup.find_all("table"):
        if table.find_parent("table") is not None:
            continue
        rows, header_rows = _html_table_rows(table)
        width = max((len(r) for r in rows), default=0)
        layout = len(rows) < 2 or width < 2 or any(len(c) > MAX_TABLE_CELL_CHARS for r in rows for c in r)
        if layout:
            continue
        caption_tag = table.find("caption")
        caption = caption_tag.get_text(" ", strip=True) if caption_tag else None
        table.replace_with(f"\n\x02T{len(tables)}\x03\n")
        tables.append((rows, caption, header_rows))
    for h in soup.find_all(re.compile(r"^h[1-6]$")):
        h.replace_with(f"\n\x02H{h.name[1]}\x04{h.get_text(' ', strip=True)}\x03\n")
    text = soup.get_text("\n")
    text = "\n".join(line.strip() for line in text.splitlines())
    text = _BLANK_LINES.sub("\n\n", text).strip()
    heading = HeadingPath()
    parts = _MARKER.split(text)
    offset = 0
    found_text = False
    # The <title> leads the first text, unless the page's text starts with it anyway.
    pending_title = title if title and not _MARKER.sub("", text).strip().startswith(title) else ""
    for k, part in enumerate(parts):
        if k % 2 == 0:  # text between markers
            if part.strip():
                body = part.strip()
                if pending_title:
                    body, pending_title = f"{pending_title}\n\n{body}", ""
                found_text = True
                yield Document(source=source, text=body, file_type="html", file_hash=file_hash, offset=offset,
                               section=heading.section)
            offset += len(part)
        elif part.startswith("H"):
            level, _, heading_text = part[1:].partition("\x04")
            heading.enter(int(level), heading_text)
            following = parts[k + 1].strip() if k + 1 < len(parts) else ""
            if heading_text.strip() and following:  # the heading stays in the text it opens, as on the page
                parts[k + 1] = f"{heading_text}\n{following}"
            offset += 1
        else:
            rows, caption, header_rows = tables[int(part[1:])]
            doc = table_document(rows, caption or heading.last, source=source, file_type="html",
                                 file_hash=file_hash, section=heading.section, offset=offset, header_rows=header_rows)
            if doc is not None:
                found_text = True
                yield doc
            offset += 1
    if not found_text and title:
        yield Document(source=source, text=title, file_type="html", file_hash=file_hash)
