"""Qdrant behind the ``VectorStore`` protocol, in three deployments chosen by ``settings.store.qdrant_mode``.

- ``"embedded"`` (the default) and ``"edge"``: the Qdrant engine itself, in-process, through ``qdrant-edge-py``
  (Rust HNSW, payload indexes, WAL), stored under ``<collection>/qdrant_edge/``. It measured ~100x faster than
  qdrant-client's local mode at equal recall (docs/benchmarks.md), so "embedded" means this engine.
- ``"local"``: ``qdrant-client``'s local mode (``QdrantClient(path=...)``) under ``<collection>/qdrant_local/``:
  a pure-Python exact scan, fine for a few thousand chunks and for trying the client API without a server.
- ``"server"``: a Qdrant server or cluster at ``settings.store.qdrant_url`` (optional ``qdrant_api_key``); the
  collection is created with ``shard_number`` and ``replication_factor`` from the settings.

Every mode: cosine distance, the collection created with the embedding's dimension, the embedding model and
dimension recorded (collection metadata for qdrant-client modes, a ``rag_store.json`` sidecar for the edge engine)
and checked on open (``StoreError`` on mismatch), payload indexes on ``source``/``file_type``/``page``, point ids
derived from chunk ids (UUIDv5, so re-ingesting the same chunk overwrites it), metadata filters translated to
Qdrant filters.

The in-process modes lock their folder: one process at a time (a second one gets a ``StoreError`` naming the
cause). Inside that process, readers may search while a writer upserts (threads). Concurrent access from several
processes needs ``"server"``.

Example::

    >>> from rag.config import Settings
    >>> settings = Settings(store={"backend": "qdrant", "qdrant_mode": "embedded"})
    >>> store = open_qdrant_store(settings, Path(tmp), dim=384, embedding_model="all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> store.search(query_vector, k=5, filters={"file_type": "pdf"})  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import ConfigError, StoreError
from rag.filters import to_qdrant
from rag.stores.common import check_meta, check_query, check_vectors, dedupe_batch, write_meta
from rag.types import Chunk, Filters, ScoredChunk, Vector

_ID_NAMESPACE = uuid.UUID("6f1c1f0e-3a7e-5b8e-9c41-52a1d0e6a7b3")
_SCROLL_PAGE = 1024
_UPSERT_BATCH = 512
_INSTALL = "pip install 'rag-private-docs[qdrant]'  (qdrant-client, qdrant-edge-py)"


def point_id(chunk_id: str) -> str:
    """The Qdrant point id of a chunk: a UUIDv5 of its id (Qdrant ids must be integers or UUIDs).

    >>> point_id("abc") == point_id("abc")
    True
    """
    return str(uuid.uuid5(_ID_NAMESPACE, chunk_id))


def _payload(chunk: Chunk) -> dict[str, Any]:
    payload = asdict(chunk)
    payload["groups"] = list(chunk.groups)  # a keyword array: the access filter matches any of its values
    return payload


def _chunk(payload: dict[str, Any] | None) -> Chunk:
    if not payload:
        raise StoreError("a Qdrant point has no payload: the collection was not written by rag; use another one")
    # Fields added to Chunk later are absent from old points: they keep their defaults.
    fields: dict[str, Any] = {k: payload[k] for k in Chunk.__dataclass_fields__ if k in payload}
    return Chunk(**fields)


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


class QdrantEdgeStore:
    """The Qdrant engine in-process (``qdrant-edge-py``): one shard on disk, HNSW built by ``optimize()``.

    New points land in an appendable segment that is searched exactly; ``close()`` (or ``optimize()``) runs
    Qdrant's optimizers, which merge segments and build the HNSW graph for the large ones.
    """

    def __init__(self, directory: Path, dim: int, embedding_model: str, settings: Settings) -> None:
        try:
            import qdrant_edge as qe
        except ImportError as e:
            raise StoreError(f"qdrant_mode 'embedded'/'edge' needs qdrant-edge-py: {_INSTALL}") from e
        self._qe = qe
        self.dim = dim
        self.embedding_model = embedding_model
        self.path = directory
        self._ef = settings.store.hnsw_ef_search
        self._shard: Any = None
        self._lock = threading.RLock()  # serialises writers; reads go straight to the engine (it is thread-safe)
        meta = directory / "rag_store.json"
        shard_dir = directory / "shard"
        hnsw = qe.HnswIndexConfig(
            m=settings.store.hnsw_m, ef_construct=settings.store.hnsw_ef_construction, full_scan_threshold=10_000
        )
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine), hnsw_config=hnsw)
        try:
            if meta.exists():
                check_meta(meta, "Qdrant (embedded)", dim, embedding_model)
                self._shard = qe.EdgeShard.load(str(shard_dir))
            else:
                shard_dir.mkdir(parents=True, exist_ok=True)
                self._shard = qe.EdgeShard.create(str(shard_dir), config)
                for field, schema in (
                    ("source", qe.PayloadSchemaType.Keyword),
                    ("file_type", qe.PayloadSchemaType.Keyword),
                    ("page", qe.PayloadSchemaType.Integer),
                    ("groups", qe.PayloadSchemaType.Keyword),
                ):
                    self._shard.update(qe.UpdateOperation.create_field_index(field, schema))
                self._shard.flush()
                write_meta(meta, "qdrant-edge", dim, embedding_model)
        except StoreError:
            raise
        except Exception as e:  # the engine raises plain Exception with a message
            if "WouldBlock" in str(e) or "lock" in str(e).lower():
                raise StoreError(
                    f"the Qdrant collection at {directory} is open in another process (a running `rag ingest` or "
                    "`rag chat`?): the embedded engine allows one process at a time. Wait for it to finish, or use "
                    "a Qdrant server (RAG_STORE__QDRANT_MODE=server) for concurrent access"
                ) from e
            raise StoreError(f"cannot open the Qdrant (embedded) collection at {directory}: {e}") from e
        self._pending = False

    @property
    def _engine(self) -> Any:
        if self._shard is None:
            raise StoreError(f"the Qdrant collection at {self.path} is closed; open it again")
        return self._shard

    def upsert(self, chunks: Sequence[Chunk], vectors: Vector) -> None:
        qe = self._qe
        arr = check_vectors(chunks, vectors, self.dim)
        chunks, arr = dedupe_batch(chunks, arr)
        with self._lock:
            for start in range(0, len(chunks), _UPSERT_BATCH):
                part, part_vectors = chunks[start : start + _UPSERT_BATCH], arr[start : start + _UPSERT_BATCH]
                points = [
                    qe.Point(id=point_id(c.id), vector=v.tolist(), payload=_payload(c))
                    for c, v in zip(part, part_vectors, strict=True)
                ]
                self._engine.update(qe.UpdateOperation.upsert_points(points))
            self._pending = self._pending or bool(chunks)

    def search(self, vector: Vector, k: int, filters: Filters | None = None) -> list[ScoredChunk]:
        qe = self._qe
        q = check_query(vector, self.dim)
        if k <= 0:
            return []
        request = qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest(q.tolist()),
            filter=to_qdrant(filters, qe),
            with_payload=True,
            params=qe.SearchParams(hnsw_ef=max(self._ef, k)),
        )
        return [ScoredChunk(chunk=_chunk(p.payload), score=float(p.score)) for p in self._engine.query(request)]

    def delete_source(self, source: str) -> int:
        qe = self._qe
        flt = to_qdrant({"source": source}, qe)
        with self._lock:
            n = self._engine.count(qe.CountRequest(exact=True, filter=flt))
            if n:
                self._engine.update(qe.UpdateOperation.delete_points_by_filter(flt))
                self._pending = True
            return int(n)

    def count(self) -> int:
        return int(self._engine.count(self._qe.CountRequest(exact=True)))

    def chunks(self, filters: Filters | None = None) -> Iterator[Chunk]:
        qe = self._qe
        flt = to_qdrant(filters, qe)
        offset = None
        while True:
            records, offset = self._engine.scroll(
                qe.ScrollRequest(offset=offset, limit=_SCROLL_PAGE, filter=flt, with_payload=True)
            )
            yield from (_chunk(r.payload) for r in records)
            if offset is None:
                return

    def sources(self) -> dict[str, int]:
        qe = self._qe
        # a facet over the keyword index; counts can lag deletions at 0, so drop empty ones
        n = self.count()
        if n == 0:
            return {}
        hits = self._engine.facet(qe.FacetRequest(key="source", limit=n, exact=True)).hits
        return {str(_facet_value(h.value)): int(h.count) for h in hits if h.count > 0}

    def info(self) -> dict[str, int]:
        """Points, vectors covered by an HNSW index, segments: ``{"points": 20000, "indexed_vectors": 20000, ...}``."""
        i = self._engine.info()
        return {"points": i.points_count, "indexed_vectors": i.indexed_vectors_count, "segments": i.segments_count,
                "payload_indexes": len(i.payload_schema)}

    def optimize(self) -> None:
        """Merge segments and build the HNSW index now (``close()`` does it too). Blocks; may take minutes at 1M."""
        with self._lock:
            self._engine.optimize()
            self._engine.flush()
            self._pending = False

    def close(self) -> None:
        with self._lock:
            if self._shard is None:
                return
            if self._pending:
                self._shard.optimize()
            self._shard.flush()
            self._shard.close()
            self._shard = None


def _facet_value(value: Any) -> Any:
    # qdrant_edge returns FacetValue wrappers like Keyword("a.md") on some versions; plain str on others
    for attr in ("value", "keyword", "_0"):
        if hasattr(value, attr):
            return getattr(value, attr)
    text = str(value)
    if text.startswith('Keyword("') and text.endswith('")'):
        return text[len('Keyword("') : -2]
    return text


class QdrantClientStore:
    """``qdrant-client`` against a server (``url``) or its local mode (``path``); same API either way."""

    def __init__(self, settings: Settings, dim: int, embedding_model: str, *, path: Path | None = None) -> None:
        try:
            from qdrant_client import QdrantClient
            from qdrant_client import models as m
        except ImportError as e:
            raise StoreError(f"the qdrant store needs qdrant-client: {_INSTALL}") from e
        self._m = m
        self.dim = dim
        self.embedding_model = embedding_model
        self.collection = settings.collection
        self._ef = settings.store.hnsw_ef_search
        self._local = path is not None
        # local mode is plain Python over dicts and sqlite: one lock serialises every call to it
        self._lock = threading.RLock()
        where = str(path) if path is not None else str(settings.store.qdrant_url)
        try:
            if path is not None:
                path.mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
            else:
                self._client = QdrantClient(
                    url=settings.store.qdrant_url, api_key=_secret(settings.store.qdrant_api_key), timeout=60
                )
        except RuntimeError as e:
            if "already accessed" in str(e):
                raise StoreError(
                    f"the Qdrant local-mode folder {path} is open in another process (a running `rag ingest` or "
                    "`rag chat`?): qdrant-client's local mode locks it and has no read-only mode. Wait for it to "
                    "finish, or use a Qdrant server (RAG_STORE__QDRANT_MODE=server) for concurrent access"
                ) from e
            raise StoreError(f"cannot open Qdrant at {where}: {e}") from e
        try:
            self._ensure_collection(settings)
        except StoreError:
            self._client.close()
            raise
        except Exception as e:  # connection refused, auth, ...: translate at the seam
            self._client.close()
            raise StoreError(
                f"cannot reach Qdrant at {where}: {e}. Is the server up (docker compose up qdrant) and "
                "RAG_STORE__QDRANT_URL / RAG_STORE__QDRANT_API_KEY right?"
            ) from e

    def _ensure_collection(self, settings: Settings) -> None:
        m = self._m
        name = self.collection
        if self._client.collection_exists(name):
            config = self._client.get_collection(name).config
            size = getattr(config.params.vectors, "size", None)
            meta = config.metadata or {}
            recorded = meta.get("embedding_model")
            if size != self.dim or (recorded is not None and recorded != self.embedding_model):
                raise StoreError(
                    f"the Qdrant collection {name!r} holds vectors of model {recorded!r} (dim {size}), not "
                    f"{self.embedding_model!r} (dim {self.dim}): use the same embedding model, pick another "
                    "collection (RAG_COLLECTION), or delete it and re-ingest"
                )
            return
        kwargs: dict[str, Any] = {}
        if not self._local:
            kwargs = {
                "shard_number": settings.store.shard_number,
                "replication_factor": settings.store.replication_factor,
                "hnsw_config": m.HnswConfigDiff(
                    m=settings.store.hnsw_m, ef_construct=settings.store.hnsw_ef_construction
                ),
            }
        self._client.create_collection(
            name,
            vectors_config=m.VectorParams(size=self.dim, distance=m.Distance.COSINE),
            metadata={"embedding_model": self.embedding_model, "dim": self.dim, "created_by": "rag"},
            **kwargs,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode warns that payload indexes have no effect there
            for field, schema in (
                ("source", m.PayloadSchemaType.KEYWORD),
                ("file_type", m.PayloadSchemaType.KEYWORD),
                ("page", m.PayloadSchemaType.INTEGER),
                ("groups", m.PayloadSchemaType.KEYWORD),
            ):
                self._client.create_payload_index(name, field, schema, wait=True)

    def upsert(self, chunks: Sequence[Chunk], vectors: Vector) -> None:
        m = self._m
        arr = check_vectors(chunks, vectors, self.dim)
        chunks, arr = dedupe_batch(chunks, arr)
        with self._lock:
            for start in range(0, len(chunks), _UPSERT_BATCH):
                part = chunks[start : start + _UPSERT_BATCH]
                batch = m.Batch(
                    ids=[point_id(c.id) for c in part],
                    vectors=arr[start : start + _UPSERT_BATCH].tolist(),
                    payloads=[_payload(c) for c in part],
                )
                self._client.upsert(self.collection, points=batch, wait=True)

    def search(self, vector: Vector, k: int, filters: Filters | None = None) -> list[ScoredChunk]:
        m = self._m
        q = check_query(vector, self.dim)
        if k <= 0:
            return []
        with self._lock:
            result = self._client.query_points(
                self.collection,
                query=q.tolist(),
                limit=k,
                query_filter=to_qdrant(filters, m),
                with_payload=True,
                search_params=None if self._local else m.SearchParams(hnsw_ef=max(self._ef, k)),
            )
        return [ScoredChunk(chunk=_chunk(p.payload), score=float(p.score)) for p in result.points]

    def delete_source(self, source: str) -> int:
        m = self._m
        flt = to_qdrant({"source": source}, m)
        with self._lock:
            n = self._client.count(self.collection, count_filter=flt, exact=True).count
            if n:
                self._client.delete(self.collection, points_selector=m.FilterSelector(filter=flt), wait=True)
            return int(n)

    def count(self) -> int:
        with self._lock:
            return int(self._client.count(self.collection, exact=True).count)

    def chunks(self, filters: Filters | None = None) -> Iterator[Chunk]:
        flt = to_qdrant(filters, self._m)
        offset = None
        while True:
            with self._lock:
                records, offset = self._client.scroll(
                    self.collection, scroll_filter=flt, limit=_SCROLL_PAGE, offset=offset, with_payload=True
                )
            yield from (_chunk(r.payload) for r in records)
            if offset is None:
                return

    def sources(self) -> dict[str, int]:
        n = self.count()
        if n == 0:
            return {}
        with self._lock:
            hits = self._client.facet(self.collection, key="source", limit=n, exact=True).hits
        return {str(h.value): int(h.count) for h in hits if h.count > 0}

    def close(self) -> None:
        with self._lock:
            self._client.close()


QdrantStore = QdrantEdgeStore | QdrantClientStore


def open_qdrant_store(settings: Settings, directory: Path, dim: int, embedding_model: str) -> QdrantStore:
    """Open (or create) the collection in the configured Qdrant mode; see the module docstring.

    Raises ``StoreError`` when the collection holds another model's vectors, when its folder is locked by another
    process (in-process modes), or when the server cannot be reached.
    """
    mode = settings.store.qdrant_mode
    if mode in ("embedded", "edge"):
        return QdrantEdgeStore(directory, dim, embedding_model, settings)
    if mode == "local":
        return QdrantClientStore(settings, dim, embedding_model, path=directory)
    if mode == "server":
        if not settings.store.qdrant_url:
            raise ConfigError(
                "qdrant_mode 'server' needs a URL: set RAG_STORE__QDRANT_URL (e.g. http://localhost:6333)"
            )
        return QdrantClientStore(settings, dim, embedding_model)
    raise ConfigError(f"unknown qdrant_mode {mode!r}; use embedded, edge, local or server")
