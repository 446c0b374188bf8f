"""A collection and the files it owns: the vector store, the ingestion manifest and the BM25 index, in step.

Everything that reads or writes a collection's on-disk state asks this class where it lives and how to change it:
ingestion, the answering pipeline, the UI's document list, evals and the HTTP service. Layout::

    <data_dir>/collections/<name>/
        manifest.sqlite                 which file (by content hash) is in the FAISS store, with how many chunks
        manifest-<backend>.sqlite       the same for another store (switching backends re-ingests into it)
        faiss/ | memory/ | qdrant_edge/ | qdrant_local/     the vector store (a Qdrant server keeps its own)
        bm25/                           the keyword index, rebuilt from the store's chunks
        bm25.stale                      present while the store has changes the keyword index does not have yet
        writer.lock                     held (flock) by the one process that changes the collection

One writer at a time: whatever changes the store, the manifest or the keyword index first takes the collection's
writer lock (``acquire_writer``; a second writer waits ``RAG_STORE__LOCK_TIMEOUT_S``, then gets a ``StoreError``),
and the stale marker is set and cleared only under it, so a writer that finishes first can never clear the marker
of one that is still writing. The lock is an ``flock``: a writer killed with ``kill -9`` releases it with its life.

A missing collection is ``CollectionNotFound`` and an empty one ``CollectionEmpty``: typed, never a string match.
Opening a collection for reading never creates it; only writers (``create=True``) do.

Example::

    >>> from rag.config import Settings
    >>> c = Collection(Settings(data_dir="/tmp/rag-doc", collection="papers"), embedder=lambda: None)
    >>> c.root.as_posix(), c.manifest_path.name, c.exists()
    ('/tmp/rag-doc/collections/papers', 'manifest.sqlite', False)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag.config import Settings
from rag.errors import CollectionNotFound, StoreError
from rag.manifest import Manifest
from rag.types import Embedder, VectorStore

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""What a collection may be called (the same rule as ``Settings.collection``): a single safe path component."""


def collections_root(settings: Settings) -> Path:
    return Path(settings.data_dir).expanduser() / "collections"


def list_collections(settings: Settings) -> list[str]:
    """Names of the collections under the data directory, sorted."""
    root = collections_root(settings)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and NAME.match(p.name))


class Collection:
    """``settings.collection`` on disk. Cheap to build; the manifest and the store open on first use.

    ``embedder`` is asked for the model's name and dimension when the store opens (a store refuses vectors of
    another model); it is a callable so that listing or deleting never loads a model that is not needed.
    """

    def __init__(self, settings: Settings, *, embedder: Callable[[], Embedder]) -> None:
        self.settings = settings
        self.name = settings.collection
        self.root = collections_root(settings) / self.name
        self._embedder = embedder
        self._store: VectorStore | None = None
        self._manifest: Manifest | None = None
        self._lock_cond = threading.Condition()
        self._lock_fd: int | None = None
        self._lock_owner: int | None = None  # the thread that holds (or is taking) the writer lock
        self._lock_depth = 0  # re-entrant within that thread: ``writing()`` blocks nest, ``acquire_writer`` is one
        self._writer_held = False

    # -- where things live ------------------------------------------------------------------------------------------
    @property
    def store_key(self) -> str:
        """``faiss``, ``memory`` or ``qdrant-<mode>``: which store of the collection the settings select."""
        s = self.settings.store
        return f"qdrant-{s.qdrant_mode}" if s.backend == "qdrant" else s.backend

    @property
    def manifest_path(self) -> Path:
        """One manifest per store, so that switching ``RAG_STORE__BACKEND`` ingests everything into the new store.

        >>> from rag.config import Settings
        >>> Collection(Settings(data_dir="/d", store={"backend": "qdrant"}), embedder=lambda: None).manifest_path.name
        'manifest-qdrant-embedded.sqlite'
        """
        key = self.store_key
        return self.root / ("manifest.sqlite" if key == "faiss" else f"manifest-{key}.sqlite")

    @property
    def store_dir(self) -> Path:
        """The local folder of the selected store (a Qdrant server's collection lives on the server)."""
        key = self.store_key
        folder = {"qdrant-embedded": "qdrant_edge", "qdrant-edge": "qdrant_edge", "qdrant-local": "qdrant_local"}
        return self.root / folder.get(key, key)

    @property
    def bm25_dir(self) -> Path:
        return self.root / "bm25"

    @property
    def bm25_stale_marker(self) -> Path:
        return self.root / "bm25.stale"

    @property
    def writer_lock_path(self) -> Path:
        return self.root / "writer.lock"

    @property
    def uploads_dir(self) -> Path:
        """Where files uploaded through the UI or the API for this collection are kept."""
        return Path(self.settings.data_dir).expanduser() / "uploads" / self.name

    # -- existence --------------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.root.is_dir()

    def require(self) -> Collection:
        """This collection, or ``CollectionNotFound`` (asking must not create what it asks about)."""
        if not self.exists():
            raise CollectionNotFound(self.name, str(collections_root(self.settings)))
        return self

    # -- the parts, opened on first use ----------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = Manifest(self.manifest_path)
        return self._manifest

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            from rag.stores import open_store

            embedder = self._embedder()
            self._store = open_store(self.settings, self.store_dir, embedder.dim, embedder.name)
        return self._store

    @property
    def store_is_open(self) -> bool:
        return self._store is not None

    # -- documents --------------------------------------------------------------------------------------------------
    def documents(self) -> list[tuple[str, int]]:
        """(source, chunk count) of every file in the collection, sorted; empty when it does not exist."""
        if not self.exists():
            return []  # never create an empty collection just by looking at it
        return sorted(self.store.sources().items())

    def delete_document(self, source: str) -> int:
        """Remove a file's chunks and manifest entry; returns the number of chunks removed."""
        self.require()
        with self.writing():  # released at the end: a server keeps the collection open and serving
            key = source if self.manifest.get(source) else str(Path(source).expanduser().resolve())
            self.mark_bm25_stale()
            self.manifest.mark_pending(key)  # a crash before the delete completes re-does it on the next ingest
            removed = self.store.delete_source(key)
            self.manifest.remove(key)
            self.rebuild_bm25()
            return removed

    def drop(self) -> None:
        """Delete the whole collection: its store (also on a Qdrant server), manifests, keyword index, uploads."""
        self.require()
        self.acquire_writer()
        store = self.store
        drop_remote = getattr(store, "drop", None)
        if callable(drop_remote):
            drop_remote()
        self.close()
        shutil.rmtree(self.root)
        shutil.rmtree(self.uploads_dir, ignore_errors=True)

    # -- the writer lock --------------------------------------------------------------------------------------------
    def acquire_writer(self) -> None:
        """Take the writer lock and keep it until ``close()`` (what ingestion does before its first change).

        Waits up to ``settings.store.lock_timeout_s`` for another writer; ``StoreError`` naming it after that.
        """
        with self._lock_cond:
            if self._writer_held and self._lock_owner == threading.get_ident():
                return
        self._lock(wait=True)
        with self._lock_cond:
            self._writer_held = True

    def release_writer(self) -> None:
        """Give the lock ``acquire_writer`` took back before ``close()`` (a caller that keeps the collection open)."""
        with self._lock_cond:
            if self._writer_held:
                self._writer_held = False
                self._unlock()

    @contextlib.contextmanager
    def writing(self, *, wait: bool = True) -> Iterator[bool]:
        """The writer lock for the block; with ``wait=False`` yields False at once when another writer (a process,
        or another thread of this one) holds it. Re-entrant within one thread."""
        got = self._lock(wait=wait)
        try:
            yield got
        finally:
            if got:
                self._unlock()

    @property
    def holds_writer_lock(self) -> bool:
        """Whether this thread holds the writer lock."""
        with self._lock_cond:
            return self._lock_depth > 0 and self._lock_owner == threading.get_ident()

    def _lock(self, *, wait: bool) -> bool:
        """One level of the lock for this thread: other threads of this process wait on a condition, other
        processes on the ``flock``; both within ``lock_timeout_s`` (or not at all with ``wait=False``)."""
        import fcntl

        me = threading.get_ident()
        timeout = self.settings.store.lock_timeout_s if wait else 0.0
        deadline = time.monotonic() + timeout
        with self._lock_cond:
            if self._lock_owner == me:
                self._lock_depth += 1
                return True
            while self._lock_owner is not None:  # another thread of this process writes (or is acquiring)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if not wait:
                        return False
                    raise self._busy("another thread of this process", timeout)
                self._lock_cond.wait(remaining)
            self._lock_owner = me  # acquiring: other threads wait for us, not for the file lock
        fd = -1
        try:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.writer_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise StoreError(f"cannot write to the collection in {self.root}: {e.strerror}; check its "
                                 "permissions") from e  # fmt: skip
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        if not wait:
                            os.close(fd)
                            fd = -1
                            self._abandon()
                            return False
                        raise self._busy(f"another process{_read_holder(fd)}", timeout) from None
                    time.sleep(0.05)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            self._abandon()
            raise
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        with self._lock_cond:
            self._lock_fd, self._lock_depth = fd, 1
        return True

    def _busy(self, who: str, waited: float) -> StoreError:
        return StoreError(
            f"{who} is changing the collection {self.name!r} (a running `rag ingest`?); waited {waited:g} s: try "
            "again when it has finished, or raise RAG_STORE__LOCK_TIMEOUT_S"
        )

    def _abandon(self) -> None:
        with self._lock_cond:
            self._lock_owner = None
            self._lock_cond.notify_all()

    def _unlock(self, *, all_levels: bool = False) -> None:
        import fcntl

        with self._lock_cond:
            if not self._lock_depth:
                return
            self._lock_depth = 0 if all_levels else self._lock_depth - 1
            if self._lock_depth:
                return
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            self._lock_owner = None
            self._lock_cond.notify_all()

    # -- the keyword index ------------------------------------------------------------------------------------------
    def mark_bm25_stale(self) -> None:
        """Say "the store is about to change" before changing it (under the writer lock, which this takes if it is
        not held yet, until ``close()``)."""
        if not self.holds_writer_lock:
            self.acquire_writer()
        self.bm25_stale_marker.touch()

    def bm25_needs_rebuild(self, *, counts: bool = True) -> bool:
        """A writer marked the keyword index stale, it is missing, or (``counts``) its chunk count is not the
        collection's."""
        if self.bm25_stale_marker.exists():
            return True
        have = bm25_chunk_count(self.bm25_dir)
        if not counts:
            return have is None and self.store.count() > 0
        if self.store_is_open:
            expected = self.store.count()
        else:  # cheap: the manifest knows how many chunks the committed files have
            expected = sum(r.chunks for r in self.manifest.all().values() if r.status == "done")
        return have != expected if have is not None else expected > 0

    def rebuild_bm25(self) -> None:
        """The keyword index rebuilt from the store's chunks (the store is the truth); clears the stale marker."""
        from rag.lexical import build_bm25_index

        with self.writing():
            try:
                build_bm25_index(self.store.chunks(), self.bm25_dir)
            except OSError as e:
                raise StoreError(f"cannot write the keyword index in {self.bm25_dir}: {e}") from e
            self.bm25_stale_marker.unlink(missing_ok=True)

    def sync_bm25(self, *, counts: bool = True) -> bool:
        """Rebuild the keyword index if it is out of step, unless another writer is at work (it will, at its end).

        Ingestion calls this at the end of every run, and retrieval before it loads the index (``counts=False``:
        only the marker and a missing index, no counting per query), so a writer killed before its rebuild costs
        one rebuild later, never a keyword index that silently lacks chunks. Returns whether it rebuilt.
        """
        if not self.exists() or not self.bm25_needs_rebuild(counts=counts):
            return False
        with self.writing(wait=False) as got:
            if got and self.bm25_needs_rebuild(counts=counts):
                self.rebuild_bm25()
                return True
        return False

    # -- files a run left half-done ---------------------------------------------------------------------------------
    def clean_pending(self) -> list[tuple[str, int]]:
        """Remove the chunks and manifest entries of files a stopped run left ``pending`` (half-written or
        half-deleted): (file, chunks removed) for each. Takes the writer lock only when there is something to do.

        Ingestion calls it first, so a file killed half-way is never searchable in part past the next run (and
        retrieval hides pending files until then: ``pending_among``).
        """
        if not self.exists() or not self.manifest.pending():
            return []
        self.acquire_writer()
        cleaned = []
        for source in self.manifest.pending():  # again, under the lock: a live writer's files are not ours to touch
            self.mark_bm25_stale()
            cleaned.append((source, self.store.delete_source(source)))
            self.manifest.remove(source)
        return cleaned

    def pending_among(self, sources: Iterable[str]) -> set[str]:
        """Which of ``sources`` are being changed (or were left half-done by a stopped run): not to be shown."""
        return set(self.manifest.pending(sources)) if self.exists() else set()

    # -- the invariant -----------------------------------------------------------------------------------------------
    def check(self) -> Consistency:
        """Compare the manifest, the vector store and the keyword index: same files, same chunk ids, no orphans,
        nothing pending. ``repair()`` brings them back in step from the source of truth."""
        from rag.lexical import BM25Index

        self.require()
        report = Consistency(collection=self.name)
        records = self.manifest.all()
        ids_by_source: dict[str, list[str]] = {}
        stale: set[str] = set()
        for chunk in self.store.chunks():
            ids_by_source.setdefault(chunk.source, []).append(chunk.id)
            record = records.get(chunk.source)
            if record is not None and record.status == "done" and chunk.file_hash != record.file_hash:
                stale.add(chunk.source)
        report.stale_versions = sorted(stale)
        all_ids = [cid for ids in ids_by_source.values() for cid in ids]
        report.chunks = len(all_ids)
        report.files = sum(1 for r in records.values() if r.status == "done")
        report.duplicate_ids = sorted(cid for cid, n in Counter(all_ids).items() if n > 1)
        for source, record in sorted(records.items()):
            if record.status != "done":
                report.pending.append(source)
            elif len(ids_by_source.get(source, ())) != record.chunks:
                report.count_mismatch.append((source, record.chunks, len(ids_by_source.get(source, ()))))
        report.orphans = sorted(s for s in ids_by_source if s not in records)
        store_ids = set(all_ids)
        if self.bm25_stale_marker.exists():
            report.bm25_stale = True
        if store_ids or self.bm25_dir.exists():
            try:
                bm25_ids = {c.id for c in BM25Index.load(self.bm25_dir).chunks}
            except StoreError:
                bm25_ids = set()
            report.bm25_missing = len(store_ids - bm25_ids)
            report.bm25_extra = len(bm25_ids - store_ids)
        return report

    def repair(self) -> Consistency:
        """Make the three agree again and return what was found before.

        The store is the truth for the keyword index (rebuilt from it); the manifest and the files are the truth
        for the store: chunks of a file that is pending, not in the manifest, or whose count disagrees are removed
        with its manifest entry, so the next ``rag ingest`` of the folder indexes that file again, cleanly.
        """
        self.acquire_writer()
        report = self.check()
        for source in report.files_to_reingest():
            self.mark_bm25_stale()
            self.store.delete_source(source)
            self.manifest.remove(source)
        if report.duplicate_ids or not report.clean:
            self.rebuild_bm25()
        return report

    # -- lifetime ---------------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Make what was written durable and keep the store open (a server goes on serving from it): the FAISS
        index file is written, the memory store saved (its ``close`` only saves), Qdrant's engine flushed."""
        store = self._store
        if store is None:
            return
        checkpoint = getattr(store, "checkpoint", None)
        if callable(checkpoint):
            checkpoint()
        elif type(store).__name__ == "MemoryStore":
            store.close()
        elif callable(getattr(store, "optimize", None)):
            store.optimize()  # type: ignore[attr-defined]

    # -- lifetime ---------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush and release the store and the manifest (the next use opens them again)."""
        store, manifest = self._store, self._manifest
        self._store = self._manifest = None
        try:
            if store is not None:
                store.close()
        finally:
            try:
                if manifest is not None:
                    manifest.close()
            finally:
                with self._lock_cond:  # released last: everything this writer changed is flushed by now
                    self._writer_held = False
                    self._unlock(all_levels=True)

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Consistency:
    """What ``Collection.check`` found; ``clean`` when manifest, store and keyword index agree."""

    collection: str
    files: int = 0
    chunks: int = 0
    pending: list[str] = field(default_factory=list)  # files a run was changing when it stopped
    orphans: list[str] = field(default_factory=list)  # files with chunks in the store but not in the manifest
    count_mismatch: list[tuple[str, int, int]] = field(default_factory=list)  # (file, manifest says, store has)
    stale_versions: list[str] = field(default_factory=list)  # files with chunks of another version than recorded
    duplicate_ids: list[str] = field(default_factory=list)
    bm25_missing: int = 0  # chunk ids in the store that the keyword index lacks
    bm25_extra: int = 0  # chunk ids in the keyword index that the store no longer has
    bm25_stale: bool = False  # a writer marked the keyword index out of date and has not rebuilt it yet

    @property
    def clean(self) -> bool:
        return not (self.pending or self.orphans or self.count_mismatch or self.stale_versions or self.duplicate_ids
                    or self.bm25_missing or self.bm25_extra or self.bm25_stale)  # fmt: skip

    def files_to_reingest(self) -> list[str]:
        """Files whose chunks ``repair`` removes (with their manifest entry) so the next ingest adds them cleanly."""
        mismatched = (s for s, _, _ in self.count_mismatch)
        return sorted({*self.pending, *self.orphans, *mismatched, *self.stale_versions})

    def to_dict(self) -> dict[str, object]:
        return {"collection": self.collection, "clean": self.clean, "files": self.files, "chunks": self.chunks,
                "problems": self.problems(), "pending": self.pending, "orphans": self.orphans,
                "count_mismatch": [list(m) for m in self.count_mismatch], "stale_versions": self.stale_versions,
                "duplicate_ids": self.duplicate_ids, "bm25_missing": self.bm25_missing,
                "bm25_extra": self.bm25_extra, "bm25_stale": self.bm25_stale}  # fmt: skip

    def problems(self) -> list[str]:
        """One line per problem, for people."""
        out = [f"{s}: pending (a run stopped while changing it)" for s in self.pending]
        out += [f"{s}: chunks in the store but not in the manifest" for s in self.orphans]
        out += [f"{s}: the manifest says {m} chunks, the store has {n}" for s, m, n in self.count_mismatch]
        out += [f"{s}: chunks of another version of the file than the manifest records" for s in self.stale_versions]
        out += [f"chunk id {c} is stored more than once" for c in self.duplicate_ids]
        if self.bm25_missing or self.bm25_extra:
            out.append(f"keyword index out of step: {self.bm25_missing} chunks missing, {self.bm25_extra} extra")
        if self.bm25_stale:
            out.append("keyword index marked stale (a writer stopped before rebuilding it)")
        return out


def bm25_chunk_count(directory: Path) -> int | None:
    """How many chunks the current keyword index holds (from its metadata), or None when there is none."""
    try:
        version = (directory / "CURRENT").read_text().strip()
        return int(json.loads((directory / version / "meta.json").read_text())["chunks"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_holder(fd: int) -> str:
    """`` (pid N)`` of the lock's holder as it wrote it, or nothing."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip() or 0)
        if pid:
            return f" (pid {pid})"
    return ""
