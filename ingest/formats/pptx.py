"""PPTX (python-pptx): one "page" per slide, so a citation says "slide 12".

Each slide gives a ``Document`` with ``page`` = the slide number and ``section`` = the slide title: the title, then
the text of its shapes in reading order (top to bottom, left to right; groups opened), then the speaker notes.
Each table on a slide is a table ``Document`` of that slide, captioned by the slide title. Pictures are not OCR'd.

Example::

    >>> [(d.page, d.section) for d in load_pptx(Path("deck.pptx"), "h")]  # doctest: +SKIP
    [(1, 'Quarterly review'), (2, 'Revenue by region'), (2, 'Revenue by region')]
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.formats.common import LoadOptions, check_office_zip, one_line
from ingest.formats.tables import table_document
from rag.errors import IngestError
from rag.types import Document


def _shapes(shapes: Any) -> Iterator[Any]:
    """Shapes in reading order, the members of groups in place of the group."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    ordered = sorted(shapes, key=lambda s: ((s.top or 0), (s.left or 0)))
    for shape in ordered:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _frame_text(shape: Any) -> str:
    return "\n".join(p.text for p in shape.text_frame.paragraphs if p.text.strip())


def load_pptx(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
    """One ``Document`` per slide with text (plus one per table); see the module docstring."""
    options = options or LoadOptions()
    check_office_zip(path, "PPTX", options)
    try:
        from pptx import Presentation

        presentation = Presentation(str(path))
        slides = list(presentation.slides)
    except ImportError as e:
        raise IngestError("PPTX support needs python-pptx: pip install 'rag-private-docs[docs]'") from e
    except Exception as e:  # python-pptx raises KeyError, lxml and zip errors for damaged files
        raise IngestError(f"corrupt PPTX, python-pptx cannot read it: {e or type(e).__name__}") from e
    source = str(path)
    found = False
    for number, slide in enumerate(slides, start=1):
        try:
            title_shape = slide.shapes.title
            title = one_line(title_shape.text_frame.text) if title_shape is not None else ""
            parts = [title] if title else []
            tables: list[list[list[str]]] = []
            for shape in _shapes(slide.shapes):
                if title_shape is not None and shape.shape_id == title_shape.shape_id:
                    continue
                if getattr(shape, "has_table", False) and shape.has_table:
                    tables.append([[cell.text for cell in row.cells] for row in shape.table.rows])
                elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
                    text = _frame_text(shape)
                    if text.strip():
                        parts.append(text)
            if slide.has_notes_slide:
                notes_frame = slide.notes_slide.notes_text_frame
                notes = notes_frame.text.strip() if notes_frame is not None else ""
                if notes:
                    parts.append(f"Speaker notes: {notes}")
        except Exception as e:  # one damaged slide must not cost the deck
            import logging

            logging.getLogger(__name__).warning("%s: slide %d skipped: %s", path, number, e)
            continue
        section = title or None
        if tables and parts == [title]:
            parts = []  # the title captions the table; alone it would be a chunk of one line
        body = "\n\n".join(parts).replace("\x00", "")
        offset = 0
        if body.strip():
            found = True
            yield Document(source=source, text=body, file_type="pptx", file_hash=file_hash, page=number,
                           section=section)
            offset = len(body) + 1
        for rows in tables:
            doc = table_document(rows, title or f"Slide {number}", source=source, file_type="pptx",
                                 file_hash=file_hash, page=number, section=section, offset=offset)
            if doc is not None:
                found = True
                offset += len(doc.text) + 1
                yield doc
    if not found:
        raise IngestError("no text in this PPTX (no slides, or only pictures: OCR does not read them)")
