"""File names a user typed or a browser sent, made safe: one path component, no control characters, never empty.

A browser sends whatever file name it likes (``../../etc/passwd``, ``C:\\x\\report.pdf``, control characters), so
only the last path component survives, stripped of characters that are unsafe on common file systems. Unicode
letters are kept: ``Résumé – 2024.pdf`` stays readable in the sources panel. The web app and the HTTP API use it.

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
from pathlib import Path

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
