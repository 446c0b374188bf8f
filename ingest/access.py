"""Which access groups a file's chunks carry: ``rag ingest PATH --groups hr,finance`` or a ``.raggroups`` file.

A ``.raggroups`` file in a folder (group names separated by commas or new lines, ``#`` comments) sets the groups of
every file below it, down to a deeper ``.raggroups`` that replaces it (the nearest one wins). An empty
``.raggroups`` makes the files below it public within the collection. ``--groups`` applies to files that no
``.raggroups`` covers. Only ``.raggroups`` files inside the ingested folder count (not ones above it).

Who may read which group is decided by ``rag.policy``; this module only labels the documents.

Example::

    $ printf 'hr\\n' > ~/docs/salaries/.raggroups
    $ rag ingest ~/docs --groups staff       # salaries/* carry ("hr",), everything else ("staff",)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rag.errors import IngestError
from rag.policy import parse_groups

GROUPS_FILE = ".raggroups"


def read_groups_file(path: Path) -> tuple[str, ...]:
    """The groups listed in one ``.raggroups`` file; ``IngestError`` naming the file for a bad name."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise IngestError(f"cannot read {path}: {e}") from e
    lines = [ln.split("#", 1)[0] for ln in text.splitlines()]
    try:
        return parse_groups(",".join(lines))
    except ValueError as e:
        raise IngestError(f"{path}: {e}") from e


def file_groups(
    files: Sequence[Path], roots: Sequence[str | Path], default: Sequence[str] = ()
) -> dict[Path, tuple[str, ...]]:
    """The access groups of each of ``files`` (found under ``roots``), ``default`` where no ``.raggroups`` applies."""
    try:
        fallback = parse_groups(",".join(default))
    except ValueError as e:
        raise IngestError(f"--groups: {e}") from e
    bases = [Path(r).expanduser().resolve() for r in roots]
    bases = [b if b.is_dir() else b.parent for b in bases]
    cache: dict[Path, tuple[str, ...] | None] = {}

    def nearest(folder: Path) -> tuple[str, ...] | None:
        # Up the folders one at a time (a loop, not recursion: a tree may be thousands of folders deep), then
        # remember the answer for every folder passed on the way.
        passed: list[Path] = []
        found: tuple[str, ...] | None = None
        while True:
            if folder in cache:
                found = cache[folder]
                break
            passed.append(folder)
            marker = folder / GROUPS_FILE
            if marker.is_file():
                found = read_groups_file(marker)
                break
            if folder in bases or folder.parent == folder or not any(b in folder.parents for b in bases):
                found = None  # the top of an ingested folder (or outside every one): look no higher
                break
            folder = folder.parent
        for f in passed:
            cache[f] = found
        return found

    out: dict[Path, tuple[str, ...]] = {}
    for f in files:
        groups = nearest(f.parent)
        out[f] = fallback if groups is None else groups
    return out
