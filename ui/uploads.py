"""Saving browser uploads safely: sanitized names, a size limit, one folder per collection.

A browser sends whatever file name it likes (``../../etc/passwd``, ``C:\\x\\report.pdf``, control characters), so
only the last path component survives, stripped of characters that are unsafe on common file systems. Unicode
letters are kept: ``Résumé – 2024.pdf`` stays readable in the sources panel.

Example::

    >>> sanitize_filename("../../etc/passwd")
    'passwd'
    >>> sanitize_filename("C:\\\\Users\\\\me\\\\Résumé 2024.pdf")
    'Résumé 2024.pdf'
    >>> sanitize_filename("")
    'upload'
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rag.config import Settings
from rag.errors import IngestError

FALLBACK_NAME = "upload"
_UNSAFE = re.compile(r'[<>:"|?*\x00]')  # reserved on Windows/macOS file systems or in shells' globbing
_MAX_NAME_BYTES = 255  # the usual file-name limit (ext4, APFS, NTFS)


def sanitize_filename(name: str) -> str:
    """A safe single-component file name for ``name``: no directories, no control characters, never empty.

    >>> sanitize_filename("..")
    'upload'
    >>> sanitize_filename("报告.md")
    '报告.md'
    """
    name = unicodedata.normalize("NFC", name or "")
    # Browsers on Windows may send backslash paths; keep only the last component of either separator.
    name = re.split(r"[\\/]", name)[-1]
    # Control and format characters (newlines, RTL overrides that disguise a suffix) are dropped.
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip()
    # Leading dots would make "..", "." or a hidden file; trailing dots/spaces are stripped by Windows anyway.
    name = name.lstrip(".").rstrip(". ")
    if not name:
        return FALLBACK_NAME
    return _truncate(name)


def _truncate(name: str) -> str:
    """Cut ``name`` to 255 UTF-8 bytes, keeping its suffix so the right loader still picks it up."""
    if len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    suffix = Path(name).suffix if len(Path(name).suffix) <= 16 else ""
    stem = name[: len(name) - len(suffix)] if suffix else name
    budget = _MAX_NAME_BYTES - len(suffix.encode())
    while len(stem.encode()) > budget:
        stem = stem[:-1]
    return stem + suffix


def upload_dir(settings: Settings) -> Path:
    """Where uploads of ``settings.collection`` are kept: ``<data_dir>/uploads/<collection>``."""
    return Path(settings.data_dir).expanduser() / "uploads" / settings.collection


class UploadedFileLike(Protocol):
    """What we need from Streamlit's ``UploadedFile`` (tests pass a tiny stand-in)."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    def getvalue(self) -> bytes: ...


@dataclass(frozen=True)
class SavedUploads:
    saved: tuple[Path, ...]
    rejected: tuple[tuple[str, str], ...]  # (name as uploaded, why)


def save_uploads(files: Iterable[UploadedFileLike], settings: Settings) -> SavedUploads:
    """Write ``files`` under :func:`upload_dir`, rejecting those over ``settings.ui.max_upload_mb``.

    Two uploads that sanitize to the same name keep the last one (re-uploading a file updates it in the index).
    """
    target = upload_dir(settings)
    limit = settings.ui.max_upload_mb * 1024 * 1024
    saved: dict[Path, None] = {}
    rejected: list[tuple[str, str]] = []
    for f in files:
        if f.size > limit:
            rejected.append((f.name, f"larger than the {settings.ui.max_upload_mb} MB upload limit (ui.max_upload_mb)"))
            continue
        path = target / sanitize_filename(f.name)
        # Belt and braces: whatever the sanitizer missed, nothing may land outside the upload folder.
        if path.resolve().parent != target.resolve():
            rejected.append((f.name, "unsafe file name"))
            continue
        try:
            target.mkdir(parents=True, exist_ok=True)
            tmp = target / f".{uuid.uuid4().hex}.part"  # short: the real name may be 255 bytes already
            tmp.write_bytes(f.getvalue())
            tmp.replace(path)
        except OSError as e:
            raise IngestError(f"cannot save the upload {f.name!r} under {target}: {e.strerror or e}") from e
        saved[path] = None
    return SavedUploads(saved=tuple(saved), rejected=tuple(rejected))
