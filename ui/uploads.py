"""Saving browser uploads safely: sanitized names (``rag.filenames.sanitize_filename``: the last path component of
whatever the browser sent, without unsafe characters), a size limit, one folder per collection."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rag.config import Settings
from rag.errors import IngestError
from rag.filenames import FALLBACK_NAME, sanitize_filename  # noqa: F401  (re-exported)


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


def save_uploads(files: Iterable[UploadedFileLike], settings: Settings, *, user: str | None = None) -> SavedUploads:
    """Write ``files`` under :func:`upload_dir` (a signed-in ``user``'s own folder in it), rejecting those over
    ``settings.ui.max_upload_mb`` and those of a type ingestion does not read (the browser's filter is not trusted).

    Two uploads that sanitize to the same name keep the last one (re-uploading a file updates it in the index); one
    user's upload never replaces another's.
    """
    import fnmatch

    target = upload_dir(settings) / sanitize_filename(user) if user else upload_dir(settings)
    patterns = [p.lower() for p in settings.ingest.include]
    limit = settings.ui.max_upload_mb * 1024 * 1024
    saved: dict[Path, None] = {}
    rejected: list[tuple[str, str]] = []
    for f in files:
        if f.size > limit:
            rejected.append((f.name, f"larger than the {settings.ui.max_upload_mb} MB upload limit (ui.max_upload_mb)"))
            continue
        name = sanitize_filename(f.name)
        if not any(fnmatch.fnmatchcase(name.lower(), p) for p in patterns):
            rejected.append((f.name, f"not a supported type ({', '.join(settings.ingest.include)})"))
            continue
        path = target / name
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
