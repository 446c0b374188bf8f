"""Which files a run ingests: walk the given paths, skip hidden entries and what ``.ragignore`` excludes, and sort
the rest into files a loader reads and files of an unsupported type.

Example::

    >>> files, skipped = discover(["docs/samples"], ["*.pdf", "*.md", "*.txt"])  # doctest: +SKIP
    >>> [f.name for f in files][:2], [s.reason for s in skipped][:1]  # doctest: +SKIP
    (['Aardwolf.txt', 'lppl.pdf'], [])
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.load import LOADERS
from rag.errors import UsageError


@dataclass(frozen=True)
class FailedFile:
    path: str
    reason: str


def _hidden(name: str) -> bool:
    return name.startswith(".")


def discover(paths: Sequence[str | Path], include: Sequence[str]) -> tuple[list[Path], list[FailedFile]]:
    """Files to ingest under ``paths`` (recursively, hidden entries skipped) and the unsupported ones found.

    Raises ``UsageError`` when a given path does not exist (nothing is done then).
    """
    found: dict[str, Path] = {}
    skipped: dict[str, FailedFile] = {}
    patterns = [p.lower() for p in include]

    def consider(p: Path) -> None:
        key = str(p)
        if key in found or key in skipped:
            return
        ok = p.suffix.lower() in LOADERS and any(fnmatch.fnmatchcase(p.name.lower(), pat) for pat in patterns)
        if ok:
            found[key] = p
        else:
            skipped[key] = FailedFile(key, f"unsupported file type {p.suffix or '(no suffix)'!r}; skipped")

    roots = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise UsageError(f"path not found: {raw}")
        roots.append(p.resolve())
    for root in roots:
        if root.is_file():
            consider(root)
            continue
        rules: dict[str, list[tuple[Path, str]]] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            mine = rules.get(str(here), []) + _ragignore(here)
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d) and not _ignored(here / d, mine))
            for d in dirnames:
                rules[str(here / d)] = mine
            for name in sorted(filenames):
                p = here / name
                if not _hidden(name) and not _ignored(p, mine) and p.is_file():
                    consider(p)
    return sorted(found.values()), sorted(skipped.values(), key=lambda f: f.path)


def _ragignore(folder: Path) -> list[tuple[Path, str]]:
    """Patterns of ``folder/.ragignore`` (one glob a line, ``#`` comments), like a small ``.gitignore``.

    A pattern matches a file or folder name (``*.log``, ``drafts``) or a path relative to the folder that holds the
    ``.ragignore`` (``notes/private/*.md``); it applies to that folder and everything below it. Files named on the
    command line are always ingested.
    """
    try:
        lines = (folder / ".ragignore").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [(folder, line.strip().strip("/")) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _ignored(path: Path, rules: list[tuple[Path, str]]) -> bool:
    for base, pattern in rules:
        rel = path.relative_to(base).as_posix()
        if fnmatch.fnmatchcase(path.name, pattern) or fnmatch.fnmatchcase(rel, pattern):
            return True
    return False
