"""Spreadsheets: XLSX (openpyxl, streamed read-only) and CSV/TSV, as rows under their header.

Each sheet is its own section (the sheet name). Blank rows separate tables on a sheet; a table's first row is its
header (a lone cell above it, like "Sales 2023", is its caption), and every chunk of the table repeats that header,
so a number is always read beside its column name and its row. Long tables are loaded ``ROWS_PER_DOCUMENT`` rows at
a time, so a million-row sheet never sits whole in memory. Values are the last computed ones (formulas are not
re-evaluated); dates are ISO dates.

Example::

    >>> [(d.section, d.text.splitlines()[1]) for d in load_xlsx(Path("budget.xlsx"), "h")]  # doctest: +SKIP
    [('2023', '| Region | Q1 | Q2 |'), ('2024', '| Region | Q1 | Q2 |')]
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ingest.formats.common import LoadOptions, check_office_zip, vanished
from ingest.formats.tables import table_document
from rag.errors import IngestError
from rag.types import Document

ROWS_PER_DOCUMENT = 1000
CSV_FIELD_LIMIT = 16 << 20  # the csv module's default (128 KiB) refuses long text cells


def _blank(row: Sequence[Any]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in row)


def table_blocks(
    rows: Iterable[Sequence[Any]], *, source: str, file_type: str, file_hash: str, section: str | None,
    offset: int = 0,
) -> Iterator[Document]:
    """Table ``Document``s of a stream of rows: tables split at blank rows, each chunked under its header."""
    table: list[Sequence[Any]] = []
    header: Sequence[Any] | None = None
    caption: str | None = None
    emitted = False  # whether the current table already gave a document (a header alone is then not repeated)

    def emit(final: bool) -> Iterator[Document]:
        nonlocal table, header, caption, offset, emitted
        if header is not None and (table or not emitted):
            doc = table_document([header, *table], caption or section, source=source, file_type=file_type,
                                 file_hash=file_hash, section=section, offset=offset)
            if doc is not None:
                offset += len(doc.text) + 1
                emitted = True
                yield doc
        table = []
        if final:
            header, caption, emitted = None, None, False

    for row in rows:
        if _blank(row):
            yield from emit(final=True)
            continue
        if header is None:
            filled = [v for v in row if v is not None and str(v).strip()]
            if len(filled) == 1 and caption is None:
                caption = " ".join(str(filled[0]).split())  # a title row above the table
                continue
            header = list(row)
            continue
        table.append(list(row))
        if len(table) >= ROWS_PER_DOCUMENT:
            yield from emit(final=False)
    if header is None and caption is not None:  # a sheet holding one line of text
        header = [caption]
        caption = None
    yield from emit(final=True)


def load_xlsx(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
    """Table ``Document``s of every worksheet, the sheet name as the section (see the module docstring)."""
    options = options or LoadOptions()
    check_office_zip(path, "XLSX", options)
    try:
        import openpyxl

        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except ImportError as e:
        raise IngestError("XLSX support needs openpyxl: pip install 'rag-private-docs[docs]'") from e
    except Exception as e:  # openpyxl raises KeyError, InvalidFileException, lxml and zip errors
        raise IngestError(f"corrupt XLSX, openpyxl cannot read it: {e or type(e).__name__}") from e
    found = False
    offset = 0
    try:
        for sheet in workbook.worksheets:
            try:
                rows = sheet.iter_rows(values_only=True)
                for doc in table_blocks(rows, source=str(path), file_type="xlsx", file_hash=file_hash,
                                        section=str(sheet.title), offset=offset):
                    found = True
                    offset = doc.offset + len(doc.text) + 1
                    yield doc
            except IngestError:
                raise
            except Exception as e:
                raise IngestError(f"corrupt XLSX: sheet {sheet.title!r} cannot be read: {e}") from e
    finally:
        workbook.close()
    if not found:
        raise IngestError("no data in this XLSX (every sheet is empty)")


def load_csv(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
    """Table ``Document``s of a CSV/TSV file: delimiter sniffed, encoding detected, rows under the header."""
    from ingest.load import SNIFF_BYTES, detect_encoding

    try:
        with path.open("rb") as f:
            sample = f.read(SNIFF_BYTES)
    except FileNotFoundError as e:
        raise vanished() from e
    if not sample.strip():
        raise IngestError("empty file")
    encoding = detect_encoding(sample)
    text_sample = sample.decode(encoding, errors="ignore")
    default = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        dialect: Any = csv.Sniffer().sniff(text_sample, delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = default
    csv.field_size_limit(CSV_FIELD_LIMIT)
    found = False
    try:
        with path.open(encoding=encoding, errors="replace", newline="") as f:
            reader = csv.reader((line.replace("\x00", "") for line in f), delimiter=delimiter)
            for doc in table_blocks(reader, source=str(path), file_type=path.suffix.lower().lstrip("."),
                                    file_hash=file_hash, section=None):
                found = True
                yield doc
    except FileNotFoundError as e:
        raise vanished() from e
    except csv.Error as e:
        raise IngestError(f"malformed CSV: {e}") from e
    if not found:
        raise IngestError("empty file (no rows)")
