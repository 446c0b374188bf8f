"""What every loader shares: ``LoadOptions``, the bad-input checks for Office files, and heading paths.

Office files (DOCX, PPTX, XLSX) are zip archives. Before a library parses one, ``check_office_zip`` names the
usual problems: an empty file, a password-protected file (Office encrypts to an OLE compound file holding an
``EncryptedPackage`` stream), a legacy binary ``.doc``/``.xls``/``.ppt`` under a new suffix, a file that is not a
zip at all, and an archive that expands to far more than its size (a zip bomb).

Example::

    >>> path = HeadingPath()
    >>> path.enter(1, "Training"); path.enter(2, "Optimisers"); path.enter(3, "Adam"); path.enter(2, "Data")
    >>> path.section
    'Training › Data'
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import IngestError
from rag.types import SECTION_SEP

if TYPE_CHECKING:
    from rag.config import IngestSettings

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # OLE compound file: legacy Office, or an encrypted OOXML file
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")
_READ = 1 << 20


@dataclass(frozen=True)
class LoadOptions:
    """How loaders read files; built from ``IngestSettings`` and picklable (it travels to worker processes).

    ``ocr_engine``: ``auto`` (RapidOCR when installed, else Tesseract when on PATH, else none), ``rapidocr``,
    ``tesseract`` or ``off``. ``ocr_workers``: processes that OCR the pages of a file in parallel (1: in-process).
    ``ocr_threads``: CPU threads OCR may use in this process, split among its OCR workers (0: every core); set when
    several parse processes share the machine (``ingest.parse.ParseSpec.for_processes``).
    """

    ocr_engine: str = "auto"
    ocr_workers: int = 1
    ocr_threads: int = 0
    ocr_dpi: int = 200
    ocr_languages: str = "eng"  # Tesseract's -l (RapidOCR's packaged models read Latin and Chinese script)
    max_expanded_mb: float = 2048.0  # an Office file that unpacks to more than this is refused (zip bomb)

    @classmethod
    def from_settings(cls, ingest: IngestSettings) -> LoadOptions:
        import os

        workers = ingest.ocr_workers if ingest.ocr_workers is not None else (os.cpu_count() or 1)
        return cls(
            ocr_engine=ingest.ocr_engine,
            ocr_workers=max(1, workers),
            ocr_dpi=ingest.ocr_dpi,
            ocr_languages=ingest.ocr_languages,
            max_expanded_mb=max(ingest.max_file_mb * 20, 256.0),
        )


def vanished() -> IngestError:
    return IngestError("file vanished during the run (deleted or moved)")


def check_office_zip(path: Path, kind: str, options: LoadOptions) -> None:
    """Raise a named ``IngestError`` unless ``path`` looks like a readable Office Open XML file of ``kind``.

    ``kind`` is what the user calls it ("DOCX", "PPTX", "XLSX"); the legacy format is named in the advice.
    """
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if not head:
                raise IngestError("empty file")
            if head == OLE_MAGIC:
                f.seek(0)
                tail = b""
                while block := f.read(_READ):
                    if _ENCRYPTED_STREAM in tail + block:
                        raise IngestError(
                            f"encrypted {kind} (password protected): open it in Office and save it without a password"
                        )
                    tail = block[-len(_ENCRYPTED_STREAM) :]
                legacy = {"DOCX": ".doc", "PPTX": ".ppt", "XLSX": ".xls"}.get(kind, "binary")
                raise IngestError(
                    f"a legacy {legacy} file (binary Office format), not {kind}: save it as {kind.lower()} and retry"
                )
    except FileNotFoundError as e:
        raise vanished() from e
    if not zipfile.is_zipfile(path):
        raise IngestError(f"corrupt {kind}: not a zip archive (truncated or another format)")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            expanded = sum(i.file_size for i in infos)
            if "[Content_Types].xml" not in {i.filename for i in infos}:
                raise IngestError(f"corrupt {kind}: a zip archive without Office content ([Content_Types].xml)")
    except zipfile.BadZipFile as e:
        raise IngestError(f"corrupt {kind}: {e}") from e
    limit = options.max_expanded_mb * 2**20
    if expanded > limit:
        raise IngestError(
            f"{kind} unpacks to {expanded / 2**20:.0f} MB, over the {options.max_expanded_mb:g} MB limit "
            "(a zip bomb, or raise RAG_INGEST__MAX_FILE_MB)"
        )


class HeadingPath:
    """The stack of headings above the current position; ``section`` joins them with ``SECTION_SEP``."""

    def __init__(self, root: str | None = None) -> None:
        self._stack: list[tuple[int, str]] = [(-1, root)] if root else []

    def enter(self, level: int, title: str) -> None:
        """A heading of ``level`` (smaller is higher) closes every open heading at or below it."""
        title = " ".join(title.split())
        if not title:
            return
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, title))

    @property
    def section(self) -> str | None:
        return SECTION_SEP.join(t for _, t in self._stack) or None

    @property
    def last(self) -> str | None:
        return self._stack[-1][1] if self._stack else None


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed to single spaces."""
    return " ".join(text.split())
