"""A collection and the files it owns: the vector store, the ingestion manifest and the BM25 index, in step.

Everything that reads or writes a collection's on-disk state asks this class where it lives and how to change it:
ingestion, the answering pipeline, the UI's document list, evals and the HTTP service. Layout::

    <data_dir>/collections/<name>/
        manifest.sqlite                 which file (by content hash) is in the FAISS store, with how many chunks
        manifest-<backend>.sqlite       the same for another store (switching backends re-ingests into it)
        faiss/ | memory/ | qdrant_edge/ | qdrant_local/     the vector store (a Qdrant server keeps its own)
        bm25/                           the keyword index, rebuilt from the store's chunks
        bm25.stale                      present while the store has changes the keyword index does not have yet

A missing collection is ``CollectionNotFound`` and an empty one ``CollectionEmpty``: typed, never a string match.
Opening a collection for reading never creates it; only writers (``create=True``) do.

Example::

    >>> from rag.config import Settings
    >>> c = Collection(Settings(data_dir="/tmp/rag-doc", collection="papers"), embedder=lambda: None)
    >>> c.root.as_posix(), c.manifest_path.name, c.exists()
    ('/tmp/rag-doc/collections/papers', 'manifest.sqlite', False)
"""

from __future__ import annotations

import logging
import re
import shutil
from collections import Counter
from collections.abc import Callable
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
        store = self.store
        drop_remote = getattr(store, "drop", None)
        if callable(drop_remote):
            drop_remote()
        self.close()
        shutil.rmtree(self.root)
        shutil.rmtree(self.uploads_dir, ignore_errors=True)

    # -- the keyword index ------------------------------------------------------------------------------------------
    def mark_bm25_stale(self) -> None:
        """Say "the store is about to change" before changing it: a crash before the rebuild is then noticed."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.bm25_stale_marker.touch()

    def bm25_needs_rebuild(self) -> bool:
        return self.bm25_stale_marker.exists() or (self.store.count() > 0 and not self.bm25_dir.exists())

    def rebuild_bm25(self) -> None:
        """The keyword index rebuilt from the store's chunks (the store is the truth); clears the stale marker."""
        from rag.lexical import build_bm25_index

        try:
            build_bm25_index(self.store.chunks(), self.bm25_dir)
        except OSError as e:
            raise StoreError(f"cannot write the keyword index in {self.bm25_dir}: {e}") from e
        self.bm25_stale_marker.unlink(missing_ok=True)

    # -- the invariant -----------------------------------------------------------------------------------------------
    def check(self) -> Consistency:
        """Compare the manifest, the vector store and the keyword index: same files, same chunk ids, no orphans,
        nothing pending. ``repair()`` brings them back in step from the source of truth."""
        from rag.lexical import BM25Index

        self.require()
        report = Consistency(collection=self.name)
        records = self.manifest.all()
        ids_by_source: dict[str, list[str]] = {}
        for chunk in self.store.chunks():
            ids_by_source.setdefault(chunk.source, []).append(chunk.id)
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
        report = self.check()
        for source in sorted({*report.pending, *report.orphans, *(s for s, _, _ in report.count_mismatch)}):
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
            if manifest is not None:
                manifest.close()

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
    duplicate_ids: list[str] = field(default_factory=list)
    bm25_missing: int = 0  # chunk ids in the store that the keyword index lacks
    bm25_extra: int = 0  # chunk ids in the keyword index that the store no longer has
    bm25_stale: bool = False  # a writer marked the keyword index out of date and has not rebuilt it yet

    @property
    def clean(self) -> bool:
        return not (self.pending or self.orphans or self.count_mismatch or self.duplicate_ids or self.bm25_missing
                    or self.bm25_extra or self.bm25_stale)  # fmt: skip

    def problems(self) -> list[str]:
        """One line per problem, for people."""
        out = [f"{s}: pending (a run stopped while changing it)" for s in self.pending]
        out += [f"{s}: chunks in the store but not in the manifest" for s in self.orphans]
        out += [f"{s}: the manifest says {m} chunks, the store has {n}" for s, m, n in self.count_mismatch]
        out += [f"chunk id {c} is stored more than once" for c in self.duplicate_ids]
        if self.bm25_missing or self.bm25_extra:
            out.append(f"keyword index out of step: {self.bm25_missing} chunks missing, {self.bm25_extra} extra")
        if self.bm25_stale:
            out.append("keyword index marked stale (a writer stopped before rebuilding it)")
        return out
