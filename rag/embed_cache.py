"""The embedding cache: vectors keyed by (model, sha256 of the chunk text), so no text is embedded twice.

Embedding is ~90% of what ingestion costs on a CPU. A changed file usually keeps most of its paragraphs, and a
change of chunk size or overlap keeps many chunk texts too; with this cache only the texts never seen before reach
the model. ``CachedEmbedder`` wraps any ``Embedder``: ``embed_documents`` looks every text up first and embeds only
the misses (queries are never cached). One SQLite file per model and precision under ``<cache_dir>/embeddings``
(``RAG_EMBEDDING__CACHE_DIR``): int8 or fp16 vectors of a model never mix with its fp32 ones. It can be deleted at
any time (it is rebuilt as files are ingested); it grows by ~1.6 KB per distinct 384-d chunk text and is never
pruned by ``rag``.

Example::

    >>> emb = CachedEmbedder(FakeEmbedder(), EmbeddingCache(Path(tmp), "fake|fp32", 64))  # doctest: +SKIP
    >>> emb.embed_documents(["a", "b"]); emb.embed_documents(["a", "c"]); emb.misses  # doctest: +SKIP
    3
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.errors import StoreError
from rag.transactions import transaction
from rag.types import Embedder, Vector

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (hash BLOB PRIMARY KEY, vector BLOB NOT NULL) WITHOUT ROWID;
"""
_LOOKUP_BATCH = 500  # SQLite's bound-parameter limit is 999 on old builds


def model_key(embedder: Embedder) -> str:
    """What decides an embedder's vectors: its name, its precision (``cache_key``) and its dimension.

    >>> class E: name, dim, cache_key = "all-MiniLM-L6-v2", 384, "int8"
    >>> model_key(E())
    'all-MiniLM-L6-v2|int8|384'
    """
    return f"{embedder.name}|{getattr(embedder, 'cache_key', '')}|{embedder.dim}"


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class EmbeddingCache:
    """Vectors of one model, on disk. Thread-safe (one connection, one lock); each ``put_many`` is one transaction."""

    def __init__(self, folder: Path, key: str, dim: int) -> None:
        self.key, self.dim = key, dim
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", key.split("|", 1)[0])[-48:]
        self.path = Path(folder).expanduser() / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.sqlite"
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last writes on power loss is fine
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('model', ?)", (key,))
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the embedding cache {self.path}: {e}; is the cache directory writable? "
                             "(RAG_EMBEDDING__CACHE=false turns it off)") from e

    def get_many(self, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        with self._lock:
            for i in range(0, len(unique), _LOOKUP_BATCH):
                part = unique[i : i + _LOOKUP_BATCH]
                rows = self._db.execute(
                    f"SELECT hash, vector FROM vectors WHERE hash IN ({','.join('?' * len(part))})", part
                ).fetchall()
                for h, blob in rows:
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if vec.shape[0] == self.dim:
                        found[h] = vec
        return found

    def put_many(self, hashes: Sequence[bytes], vectors: Vector) -> None:
        arr = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock, transaction(self._db):
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                                 [(h, arr[i].tobytes()) for i, h in enumerate(hashes)])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedEmbedder:
    """An ``Embedder`` that answers known texts from an ``EmbeddingCache`` and embeds only the others.

    ``hits`` and ``misses`` count texts; ``inner`` is the wrapped model (its other attributes are reachable too:
    ``count_tokens``, ``token_counter``, ``max_seq_length``, ...).
    """

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner, self.cache = inner, cache
        self.hits = self.misses = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def __getattr__(self, attr: str) -> object:  # count_tokens, token_counter, max_seq_length, cache_key, ...
        if attr in ("inner", "cache"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def embed_documents(self, texts: Sequence[str]) -> Vector:
        if not texts:
            return self.inner.embed_documents(texts)
        hashes = [text_hash(t) for t in texts]
        known = self.cache.get_many(hashes)
        todo = [i for i, h in enumerate(hashes) if h not in known]
        first: dict[bytes, int] = {}
        for i in todo:  # the same text twice in one batch is embedded once
            first.setdefault(hashes[i], i)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if first:
            fresh = np.asarray(self.inner.embed_documents([texts[i] for i in first.values()]), dtype=np.float32)
            self.cache.put_many(list(first), fresh)
            known.update(zip(first, fresh, strict=True))
        for i, h in enumerate(hashes):
            out[i] = known[h]
        self.hits += len(texts) - len(first)
        self.misses += len(first)
        return out

    def embed_query(self, text: str) -> Vector:
        return self.inner.embed_query(text)

    def close(self) -> None:
        self.cache.close()
