"""Loaders: a file path -> ``Document``s. ``LOADERS`` maps a lower-case suffix to its loader (the one registry);
anything else is skipped and reported. Text, Markdown and HTML live here; every other format has its own module in
``ingest.formats``: PDF (page by page, outline sections, tables, OCR of scanned pages), DOCX, PPTX (a page per
slide), XLSX/CSV (rows under their header), e-mail (``.eml``, attachments loaded by their own loaders) and images
(PNG, JPEG, TIFF, by OCR). Markdown and HTML are cut into sections by heading, with tables on their own.

Loaders are generators so big files never sit whole in memory: PDFs yield one page at a time (pages read by OCR,
which run in parallel, come after the others), spreadsheets a block of rows at a time, and text files
larger than ``TEXT_PIECE_CHARS`` are decoded incrementally and yielded in pieces cut at paragraph or line breaks
(each piece's ``offset`` says where it starts in the file's text). Every problem a user can fix is an
``IngestError`` whose message names it: "encrypted PDF ...", "no extractable text ...", "empty file", ...

Example::

    >>> docs = list(load_file(Path("notes.md"), file_hash="abc"))  # doctest: +SKIP
    >>> docs[0].file_type, docs[0].page  # doctest: +SKIP
    ('md', None)
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from ingest.formats.common import LoadOptions
from ingest.formats.docx import load_docx
from ingest.formats.email import load_eml
from ingest.formats.image import load_image
from ingest.formats.markup import html_documents, markdown_documents
from ingest.formats.pdf import load_pdf
from ingest.formats.pptx import load_pptx
from ingest.formats.sheets import load_csv, load_xlsx
from rag.errors import IngestError
from rag.types import Document

Loader = Callable[[Path, str, LoadOptions], Iterator[Document]]
"""(path, sha256 of its bytes, options) -> its ``Document``s; raises ``IngestError`` naming what is wrong."""

SNIFF_BYTES = 64 * 1024  # how much of a text file is read to detect its encoding and binary content
READ_BYTES = 1 << 20  # text is decoded 1 MiB at a time
TEXT_PIECE_CHARS = 4_000_000  # text longer than this is yielded in pieces of about this size

_log = logging.getLogger(__name__)


def _vanished(path: Path) -> IngestError:
    return IngestError("file vanished during the run (deleted or moved)")


# --------------------------------------------------------------------------------------------------- text files
def detect_encoding(sample: bytes) -> str:
    """The encoding of a text sample: UTF-8 (with or without BOM) when it decodes, else charset-normalizer's guess.

    Raises ``IngestError`` for binary content (NUL bytes or no plausible text encoding).

    >>> detect_encoding("naïve café".encode("utf-8"))
    'utf-8'
    >>> sample = "Größe über alles, schöne Grüße aus Köln".encode("cp1252")
    >>> sample.decode(detect_encoding(sample))
    'Größe über alles, schöne Grüße aus Köln'
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00 starts both
        return "utf-32"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample:
        wide = wide_encoding(sample)
        if wide is None:
            raise IngestError("binary file, not text (it contains NUL bytes): check the file type")
        return wide
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)  # a cut multibyte char is fine
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(sample))
    if not matches:
        raise IngestError("binary file, not text (no text encoding fits): check the file type")
    best = matches[0]
    # Short Western text often fits several code pages equally well (é, ü, à sit at the same bytes in cp1250 and
    # cp1252); on a tie prefer the code pages most legacy documents were written in.
    tied = {m.encoding for m in matches if m.chaos == best.chaos and m.coherence == best.coherence}
    for preferred in _PREFERRED_ON_TIE:
        if preferred in tied:
            return preferred
    return str(best.encoding)


_PREFERRED_ON_TIE = ("cp1252", "latin_1", "iso8859_15", "cp1251", "cp1250")


def wide_encoding(sample: bytes) -> str | None:
    """UTF-16 or UTF-32 without a byte order mark (Windows tools write them), else None.

    Text in these encodings has its NUL bytes at one position of each 2- or 4-byte unit (the high byte of ASCII and
    Latin letters, spaces and digits), where binary data has them anywhere; the sample must also decode to
    printable text. A mostly-CJK UTF-16 text has no NUL bytes at all and never gets here.

    >>> wide_encoding("Quarterly report, 2024".encode("utf-16-le"))
    'utf-16-le'
    >>> wide_encoding("Größe".encode("utf-32-be"))
    'utf-32-be'
    >>> wide_encoding(bytes(range(256)) * 4) is None
    True
    """
    for unit, order in ((4, ("utf-32-le", "utf-32-be")), (2, ("utf-16-le", "utf-16-be"))):
        units = len(sample) // unit
        if units == 0:
            continue
        zeros = [sum(1 for i in range(pos, units * unit, unit) if sample[i] == 0) for pos in range(unit)]
        # the one byte of each unit that varies most: the lowest (LE: first, BE: last)
        low_le, low_be = zeros[0], zeros[-1]
        if unit == 4 and min(zeros[1:-1]) < 0.9 * units:
            continue  # UTF-32 text of the BMP has two zero bytes in the middle of nearly every unit
        for encoding, low, high in ((order[0], low_le, max(zeros[1:])), (order[1], low_be, max(zeros[:-1]))):
            if high < max(1, 0.05 * units) or low > 0.1 * high:
                continue
            try:
                text = codecs.getincrementaldecoder(encoding)().decode(sample[: units * unit], final=False)
            except UnicodeDecodeError:
                continue
            if text and "\x00" not in text and _printable_share(text) >= 0.9:
                return encoding
    return None


def _printable_share(text: str) -> float:
    return sum(1 for ch in text if ch.isprintable() or ch in "\n\r\t\f") / len(text)


def _iter_text_pieces(path: Path) -> Iterator[tuple[int, str]]:
    """(offset, text) pieces of a text file, decoded incrementally, each cut at a paragraph or line break."""
    try:
        f = path.open("rb")
    except FileNotFoundError as e:
        raise _vanished(path) from e
    with f:
        sample = f.read(SNIFF_BYTES)
        if not sample:
            raise IngestError("empty file")
        encoding = detect_encoding(sample)
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        buffer = decoder.decode(sample)
        offset = 0
        while True:
            block = f.read(READ_BYTES)
            if block:
                buffer += decoder.decode(block)
            else:
                buffer += decoder.decode(b"", final=True)
            while len(buffer) >= TEXT_PIECE_CHARS:
                cut = _cut_point(buffer, TEXT_PIECE_CHARS)
                yield offset, buffer[:cut]
                offset += cut
                buffer = buffer[cut:]
            if not block:
                break
        if buffer:
            yield offset, buffer


def _cut_point(text: str, limit: int) -> int:
    """A cut at or before ``limit`` on a paragraph break, else a line break, else a space, else ``limit``."""
    for sep in ("\n\n", "\n", " "):
        i = text.rfind(sep, limit // 2, limit)
        if i != -1:
            return i + len(sep)
    return limit


def _text_loader(file_type: str) -> Loader:
    def load(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
        any_text = False
        for offset, text in _iter_text_pieces(path):
            if "\x00" in text:
                raise IngestError("binary file, not text (it contains NUL bytes): check the file type")
            if text.strip():
                any_text = True
                yield Document(source=str(path), text=text, file_type=file_type, file_hash=file_hash, offset=offset)
        if not any_text:
            raise IngestError("empty file (only whitespace)")

    load.__name__ = f"load_{file_type}"
    load.__doc__ = f"``{file_type}`` text, encoding detected, streamed in pieces when large."
    return load


load_text = _text_loader("txt")


def load_markdown(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
    """Markdown, encoding detected, one ``Document`` per section (heading path) and per pipe table."""

    def pieces() -> Iterator[tuple[int, str]]:
        for offset, text in _iter_text_pieces(path):
            if "\x00" in text:
                raise IngestError("binary file, not text (it contains NUL bytes): check the file type")
            yield offset, text

    any_text = False
    for doc in markdown_documents(pieces(), str(path), file_hash):
        any_text = True
        yield doc
    if not any_text:
        raise IngestError("empty file (only whitespace)")


# --------------------------------------------------------------------------------------------------------- HTML
def load_html(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
    """The visible text of an HTML page (scripts, styles and the head dropped): sections by heading, tables."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise _vanished(path) from e
    if not raw.strip():
        raise IngestError("empty file")
    markup: bytes | str = raw
    if b"\x00" in raw[:SNIFF_BYTES] and not raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        wide = wide_encoding(raw[:SNIFF_BYTES])
        if wide is None:
            raise IngestError("binary file, not HTML (it contains NUL bytes): check the file type")
        markup = raw.decode(wide, errors="replace")  # UTF-16/32 without a BOM: BeautifulSoup would not guess it
    any_text = False
    for doc in html_documents(markup, str(path), file_hash):
        any_text = True
        yield doc
    if not any_text:
        raise IngestError("no visible text in this HTML page")


LOADERS: dict[str, Loader] = {
    ".pdf": load_pdf,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".text": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".docx": load_docx,
    ".pptx": load_pptx,
    ".xlsx": load_xlsx,
    ".xlsm": load_xlsx,
    ".csv": load_csv,
    ".tsv": load_csv,
    ".eml": load_eml,
    ".png": load_image,
    ".jpg": load_image,
    ".jpeg": load_image,
    ".tif": load_image,
    ".tiff": load_image,
}


def load_file(path: Path, file_hash: str, options: LoadOptions | None = None) -> Iterator[Document]:
    """The ``Document``s of one file, by suffix; ``IngestError`` for unsupported types or unreadable files."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise IngestError(f"unsupported file type {path.suffix or '(no suffix)'!r}; supported: {', '.join(LOADERS)}")
    try:
        yield from loader(path, file_hash, options or LoadOptions())
    except FileNotFoundError as e:
        raise _vanished(path) from e
    except PermissionError as e:
        raise IngestError(f"permission denied: {e.strerror}; check the file's permissions") from e
    except IsADirectoryError as e:
        raise IngestError("a directory with a file's name") from e
