"""The reference store: exact cosine search over a numpy matrix, the semantics every other store must match.

It is small on purpose: the contract suite (``tests/rag/test_store_contract.py``) compares every real store with
this one. It is also a usable backend for small collections (``RAG_STORE__BACKEND=memory``): everything lives in
RAM and is written to ``<collection_dir>/memory/`` (``vectors.npy`` + ``chunks.jsonl`` + ``meta.json``) on
``close()``, atomically, so a crash mid-write never leaves a half-written collection.

Example::

    >>> import numpy as np
    >>> from rag.types import Chunk
    >>> store = MemoryStore(None, dim=2, embedding_model="toy")
    >>> c = Chunk(id="a", text="hi", source="/x.md", page=None, start=0, end=2, content_hash="h",
    ...           file_hash="f", file_type="md")
    >>> store.upsert([c], np.array([[1.0, 0.0]], dtype=np.float32))
    >>> [round(h.score, 3) for h in store.search(np.array([1.0, 0.0], dtype=np.float32), k=1)]
    [1.0]
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rag.config import Settings
from rag.errors import StoreError
from rag.filters import matches, normalize
from rag.stores.common import check_meta, check_query, check_vectors, dedupe_batch, write_meta
from rag.types import Chunk, Filters, ScoredChunk, Vector


class MemoryStore:
    """Exact in-memory store; see the module docstring. Thread-safe: one lock guards the matrix."""

    def __init__(self, directory: Path | None, dim: int, embedding_model: str) -> None:
        self.dim = dim
        self.embedding_model = embedding_model
        self._dir = directory
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._chunks: list[Chunk] = []
        self._row: dict[str, int] = {}
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._dirty = False
        if directory is not None and (directory / "meta.json").exists():
            check_meta(directory / "meta.json", "memory", dim, embedding_model)
            self._load(directory)

    def _load(self, directory: Path) -> None:
        try:
            vectors = np.load(directory / "vectors.npy")
            with open(directory / "chunks.jsonl", encoding="utf-8") as f:
                chunks = [Chunk(**json.loads(line)) for line in f if line.strip()]
        except (OSError, ValueError, TypeError) as e:
            raise StoreError(f"cannot read the memory store at {directory}: {e}; delete it and re-ingest") from e
        if vectors.shape != (len(chunks), self.dim):
            raise StoreError(f"the memory store at {directory} is inconsistent; delete it and re-ingest")
        self._chunks = chunks
        self._ids = [c.id for c in chunks]
        self._row = {cid: i for i, cid in enumerate(self._ids)}
        self._vectors = vectors.astype(np.float32, copy=False)

    def upsert(self, chunks: Sequence[Chunk], vectors: Vector) -> None:
        arr = check_vectors(chunks, vectors, self.dim)
        chunks, arr = dedupe_batch(chunks, arr)
        with self._lock:
            new_rows: list[np.ndarray] = []
            for chunk, vec in zip(chunks, arr, strict=True):
                row = self._row.get(chunk.id)
                if row is not None:  # same id: replace in place (idempotent upsert)
                    self._vectors[row] = vec
                    self._chunks[row] = chunk
                else:
                    self._row[chunk.id] = len(self._ids)
                    self._ids.append(chunk.id)
                    self._chunks.append(chunk)
                    new_rows.append(vec)
            if new_rows:
                # a new array, not an in-place resize: readers holding the old one stay consistent
                self._vectors = np.vstack([self._vectors, np.stack(new_rows)])
            self._dirty = True

    def search(self, vector: Vector, k: int, filters: Filters | None = None) -> list[ScoredChunk]:
        q = check_query(vector, self.dim)
        norm = normalize(filters)
        with self._lock:
            chunks, matrix = self._chunks, self._vectors
            if norm:
                rows = np.fromiter((i for i, c in enumerate(chunks) if matches(c, norm)), dtype=np.int64)
            else:
                rows = np.arange(len(chunks))
            if k <= 0 or rows.size == 0:
                return []
            scores = matrix[rows] @ q
            top = np.argsort(-scores, kind="stable")[:k]
            return [ScoredChunk(chunk=chunks[int(rows[i])], score=float(scores[i])) for i in top]

    def delete_source(self, source: str) -> int:
        with self._lock:
            keep = [i for i, c in enumerate(self._chunks) if c.source != source]
            removed = len(self._chunks) - len(keep)
            if removed:
                self._chunks = [self._chunks[i] for i in keep]
                self._ids = [c.id for c in self._chunks]
                self._row = {cid: i for i, cid in enumerate(self._ids)}
                self._vectors = self._vectors[keep]
                self._dirty = True
            return removed

    def count(self) -> int:
        with self._lock:
            return len(self._chunks)

    def chunks(self, filters: Filters | None = None) -> Iterator[Chunk]:
        with self._lock:
            snapshot = list(self._chunks)
        norm = normalize(filters)
        return (c for c in snapshot if matches(c, norm))

    def sources(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for c in self._chunks:
                counts[c.source] = counts.get(c.source, 0) + 1
        return counts

    def close(self) -> None:
        with self._lock:
            if self._dir is None or not self._dirty:
                return
            self._save(self._dir)
            self._dirty = False

    def _save(self, directory: Path) -> None:
        # write a sibling temp folder, then swap it in: a reader never sees half a collection
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.save(tmp / "vectors.npy", self._vectors)
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
            for c in self._chunks:
                f.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
        write_meta(tmp / "meta.json", "memory", self.dim, self.embedding_model)
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)


def open_memory_store(settings: Settings, directory: Path, dim: int, embedding_model: str) -> MemoryStore:
    """Open the collection's memory store, loading ``directory`` (``<collection>/memory/``) when it exists."""
    return MemoryStore(directory, dim, embedding_model)
