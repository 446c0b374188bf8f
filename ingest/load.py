"""Loaders: a file path -> ``Document``s. PDF page by page (pypdf), Markdown and text (encoding detected), HTML
(visible text only). ``LOADERS`` maps a lower-case suffix to its loader; anything else is skipped and reported.

Loaders are generators so big files never sit whole in memory: PDFs yield one page at a time, and text files
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
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from rag.errors import IngestError
from rag.types import Document

Loader = Callable[[Path, str], Iterator[Document]]

SNIFF_BYTES = 64 * 1024  # how much of a text file is read to detect its encoding and binary content
READ_BYTES = 1 << 20  # text is decoded 1 MiB at a time
TEXT_PIECE_CHARS = 4_000_000  # text longer than this is yielded in pieces of about this size

_log = logging.getLogger(__name__)


def _vanished(path: Path) -> IngestError:
    return IngestError("file vanished during the run (deleted or moved)")


# ---------------------------------------------------------------------------------------------------------- PDF
def load_pdf(path: Path, file_hash: str) -> Iterator[Document]:
    """One ``Document`` per page that has text (1-based ``page``).

    Encrypted PDFs are opened with the empty user password when they allow it (common for "protected" PDFs that
    only restrict printing); a PDF where no page has a text layer raises "no extractable text".
    """
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

    # pypdf logs every recoverable glitch of real-world PDFs as a warning; they are not the user's business.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
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
        raise _vanished(path) from e
    except IngestError:
        raise
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise IngestError(f"corrupt PDF, pypdf cannot read it: {e or type(e).__name__}") from e
    if n_pages == 0:
        raise IngestError("corrupt PDF: it has no pages")

    any_text = False
    for number in range(n_pages):
        try:
            text = reader.pages[number].extract_text() or ""
        except FileNotDecryptedError as e:
            raise IngestError("encrypted PDF (password protected): decrypt it first, e.g. qpdf --decrypt") from e
        except FileNotFoundError as e:
            raise _vanished(path) from e
        except Exception as e:  # one broken page must not cost the rest of the document
            _log.warning("%s: page %d skipped: %s", path, number + 1, e)
            continue
        text = text.replace("\x00", "")
        if text.strip():
            any_text = True
            yield Document(source=str(path), text=text, file_type="pdf", file_hash=file_hash, page=number + 1)
    if not any_text:
        raise IngestError("no extractable text (a scanned or image-only PDF?): run OCR first, e.g. ocrmypdf")


try:  # pypdf raises DependencyError for AES without cryptography; keep the name importable for the except above
    from pypdf.errors import DependencyError
except ImportError:  # pragma: no cover - old pypdf

    class DependencyError(Exception):  # type: ignore[no-redef]
        pass


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
    def load(path: Path, file_hash: str) -> Iterator[Document]:
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
load_markdown = _text_loader("md")


# --------------------------------------------------------------------------------------------------------- HTML
_INVISIBLE = ("script", "style", "noscript", "template", "head", "svg", "iframe", "object")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)*")


def load_html(path: Path, file_hash: str) -> Iterator[Document]:
    """The visible text of an HTML page (scripts, styles and the head dropped), one ``Document``."""
    from bs4 import BeautifulSoup

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
    # BeautifulSoup detects the encoding itself (BOM, <meta charset>, then charset-normalizer).
    soup = BeautifulSoup(markup, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""  # it lives in <head>, dropped next
    for tag in soup(_INVISIBLE):
        tag.decompose()
    text = soup.get_text("\n")
    text = "\n".join(line.strip() for line in text.splitlines())
    text = _BLANK_LINES.sub("\n\n", text).strip()
    if title and not text.startswith(title):
        text = f"{title}\n\n{text}"
    if not text:
        raise IngestError("no visible text in this HTML page")
    yield Document(source=str(path), text=text, file_type="html", file_hash=file_hash)


LOADERS: dict[str, Loader] = {
    ".pdf": load_pdf,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".text": load_text,
    ".html": load_html,
    ".htm": load_html,
}


def load_file(path: Path, file_hash: str) -> Iterator[Document]:
    """The ``Document``s of one file, by suffix; ``IngestError`` for unsupported types or unreadable files."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise IngestError(f"unsupported file type {path.suffix or '(no suffix)'!r}; supported: {', '.join(LOADERS)}")
    try:
        yield from loader(path, file_hash)
    except FileNotFoundError as e:
        raise _vanished(path) from e
    except PermissionError as e:
        raise IngestError(f"permission denied: {e.strerror}; check the file's permissions") from e
    except IsADirectoryError as e:
        raise IngestError("a directory with a file's name") from e
