"""Keep a collection in sync with folders: ``rag ingest PATH --watch``.

First an ordinary incremental ingest of the folders (with ``prune``: files deleted while nobody watched leave the
index too), then the folders are watched with ``watchfiles`` (inotify on Linux, FSEvents on macOS; polling with
``WATCHFILES_FORCE_POLLING=1`` on network filesystems). Changes are debounced (``debounce_ms``: an editor's save,
a copy of many files, arrive as one batch) and applied with the same pipeline as ``rag ingest``: added and changed
files are ingested (crash-safe, resumable), deleted ones are removed with their chunks. Each change is reported on
one line::

    2026-11-30 14:02:11 added   /srv/docs/q3/report.pdf (41 chunks)
    2026-11-30 14:02:11 changed /srv/docs/notes.md (6 chunks, 5 removed)
    2026-11-30 14:05:40 deleted /srv/docs/old.txt (3 chunks removed)
    2026-11-30 14:06:02 failed  /srv/docs/scan.pdf: no extractable text (a scanned or image-only PDF?) ...

Files that discovery skips (hidden, ``.ragignore``, unsupported types, symlinks it would not follow) are skipped
here too, and files get the access groups a full ingest would give them (``--groups``, ``.raggroups`` files up to
the watched folder). A changed ``.raggroups`` or ``.ragignore`` re-runs the full incremental ingest of the watched
folders (files whose groups changed are indexed again with the new ones). Ctrl-C (or ``stop``) ends the watch
after the batch in progress is committed or cancelled cleanly.

Example::

    >>> stop = threading.Event()
    >>> watch_paths(["~/notes"], Settings(collection="notes"), stop=stop, log=print)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.access import GROUPS_FILE
from ingest.discover import included
from ingest.pipeline import IngestSummary, ingest_paths, remove_files
from rag.config import Settings
from rag.errors import UsageError
from rag.wiring import Wiring

DEBOUNCE_MS = 1500
RULE_FILES = (GROUPS_FILE, ".ragignore")  # a change to one of these re-runs the full incremental ingest


@dataclass(frozen=True)
class WatchBatch:
    """What one debounced batch of changes did."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    deleted: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    chunks_added: int
    chunks_removed: int


def watch_paths(
    paths: Sequence[str | Path],
    target: Settings | Wiring,
    *,
    log: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    debounce_ms: int = DEBOUNCE_MS,
    on_batch: Callable[[WatchBatch], None] | None = None,
    on_ready: Callable[[IngestSummary], None] | None = None,
    groups: Sequence[str] = (),
) -> None:
    """Ingest ``paths`` once, then apply every change until ``stop`` is set or Ctrl-C (see the module docstring).

    ``on_ready`` gets the summary of the first ingest (the watch is armed right after); ``on_batch`` each batch.
    ``groups``: the access groups of files no ``.raggroups`` covers (``rag ingest --groups``).
    """
    import watchfiles

    wiring = target if isinstance(target, Wiring) else Wiring(target)
    settings = wiring.settings
    roots = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise UsageError(f"path not found: {raw}")
        roots.append(p.resolve())
    stop = stop or threading.Event()
    first = ingest_paths(roots, wiring, prune=True, groups=groups)
    _stamp(log, f"watching {', '.join(map(str, roots))}: {first.files_seen} files, {first.new} new, "
                f"{first.changed} changed, {first.pruned_files} removed, {len(first.failed)} failed "
                f"({first.chunks_total} chunks in {settings.collection!r})")
    for f in first.failed:
        _stamp(log, f"failed  {f.path}: {f.reason}")
    if on_ready:
        on_ready(first)
    for changes in watchfiles.watch(*roots, debounce=debounce_ms, stop_event=stop, watch_filter=None,
                                    raise_interrupt=True):
        batch = apply_changes(changes, roots, wiring, settings.ingest.include, log, groups=groups)
        if on_batch and batch is not None:
            on_batch(batch)


def apply_changes(changes: AbstractSet[tuple[Any, str]], roots: Sequence[Path], wiring: Wiring, include: Sequence[str],
                  log: Callable[[str], None], *, groups: Sequence[str] = ()) -> WatchBatch | None:  # fmt: skip
    """Ingest what was added or modified, remove what was deleted; one log line per file. None when nothing of
    ours changed (a hidden file, an ignored folder, an unsupported type)."""
    import watchfiles

    rules = sorted({p for _, p in changes if Path(p).name in RULE_FILES})
    if rules:
        _stamp(log, f"rules changed ({', '.join(rules)}): ingesting the watched folders again")
        summary = ingest_paths(roots, wiring, prune=True, groups=groups)
        wiring.collection().close()
        for f in summary.failed:
            _stamp(log, f"failed  {f.path}: {f.reason}")
        _stamp(log, f"{summary.new} new, {summary.changed} changed (new access groups included), "
                    f"{summary.pruned_files} removed ({summary.chunks_total} chunks)")
        return WatchBatch((), (), (), tuple((f.path, f.reason) for f in summary.failed), summary.chunks_added,
                          summary.chunks_removed)  # fmt: skip
    follow = wiring.settings.ingest.follow_symlinks_outside
    deleted_paths = {Path(p) for kind, p in changes if kind == watchfiles.Change.deleted}
    touched = {Path(p) for kind, p in changes if kind != watchfiles.Change.deleted}
    to_ingest = sorted(p for p in touched
                       if p.is_file() and included(p, roots, include, follow_symlinks_outside=follow))  # fmt: skip
    deleted_paths |= {p for p in touched if not p.exists()}  # created and gone within the debounce
    known = wiring.collection().manifest.all()
    gone: list[str] = []
    for p in sorted(deleted_paths):
        if p.exists():
            continue  # deleted and created again (an editor's atomic save): it is in to_ingest
        source = str(p)
        if source in known:
            gone.append(source)
        else:  # a deleted folder: every file that was below it
            prefix = source.rstrip("/") + "/"
            gone += [s for s in known if s.startswith(prefix)]
    if not to_ingest and not gone:
        return None
    before = {s: known[s].chunks for s in map(str, to_ingest) if s in known and known[s].status == "done"}
    added: list[str] = []
    changed: list[str] = []
    failed: list[tuple[str, str]] = []
    chunks_added = chunks_removed = 0
    if to_ingest:
        summary = ingest_paths(to_ingest, wiring, groups=groups, roots=roots)
        chunks_added, chunks_removed = summary.chunks_added, summary.chunks_removed
        failed = [(f.path, f.reason) for f in summary.failed]
        bad = {p for p, _ in failed}
        after = wiring.collection().manifest.all()
        for src in map(str, to_ingest):
            if src in bad or src not in after:
                continue
            if src not in before:
                added.append(src)
                _stamp(log, f"added   {src} ({after[src].chunks} chunks)")
            elif after[src].file_hash != known[src].file_hash or after[src].config_key != known[src].config_key:
                changed.append(src)
                _stamp(log, f"changed {src} ({after[src].chunks} chunks, {before[src]} removed)")
        for src, why in failed:
            _stamp(log, f"failed  {src}: {why}")
    if gone:
        removed = remove_files(gone, wiring)
        chunks_removed += removed
        for s in gone:
            _stamp(log, f"deleted {s} ({known[s].chunks} chunks removed)")
    wiring.collection().close()
    return WatchBatch(tuple(added), tuple(changed), tuple(gone), tuple(failed), chunks_added, chunks_removed)


def _stamp(log: Callable[[str], None], message: str) -> None:
    log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}")


__all__ = ["WatchBatch", "apply_changes", "watch_paths"]
