"""FAISS on disk: vectors in a FAISS index (exact ``IndexFlatIP`` or HNSW), chunks and metadata in SQLite beside it.

Layout of ``<collection>/faiss/`` (the folder is decided by ``rag.collection.Collection``)::

    chunks.sqlite        chunk text, provenance, and each chunk's vector (the source of truth; WAL mode)
    index-<gen>.faiss    the FAISS index as of commit number <gen> (a cache that can always be rebuilt)
    writer.lock          held by the one process that writes

Why this shape:

* **Atomic, crash-safe.** Every ``upsert``/``delete_source`` is one SQLite transaction that also bumps a generation
  number. The FAISS index is written to a temp file and ``os.replace``d to ``index-<gen>.faiss`` (at ``close()`` and
  every ``checkpoint_s`` seconds), so a crash never leaves a half-written index. On open, an index file that does not
  match the committed generation, or holds other ids than SQLite, is ignored and the index is rebuilt from the
  vectors in SQLite, without re-embedding anything.
* **Readers during a write.** Readers take no lock; WAL gives them the last committed snapshot, and a reader whose
  in-memory index is behind the committed generation reloads it before searching.
* **Deletes on HNSW.** HNSW cannot remove vectors, so deleted ids become tombstones excluded from every search with
  an ``IDSelector``; when they pass 25% of the index, the index is rebuilt from SQLite at the next checkpoint.
* **Filters** (``rag.filters``) run in SQLite; a small allowed set is scored exactly in numpy, a large one is
  searched in FAISS restricted to the allowed ids.
* **Every field of ``Chunk``** has a column, derived from the dataclass: a field added to ``Chunk`` (with a default)
  is added to an existing database on open (``ALTER TABLE``), so no store code changes with the chunk's provenance.

Example::

    >>> store = FaissStore(Path(tmp), dim=384, embedding_model="all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> store.upsert(chunks, vectors); store.close()  # doctest: +SKIP
    >>> FaissStore(Path(tmp), 384, "all-MiniLM-L6-v2").search(query_vector, k=3)[0].score  # doctest: +SKIP
    0.83
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings, StoreSettings
from rag.errors import StoreError
from rag.filters import to_sql
from rag.stores.common import check_query, check_vectors, dedupe_batch
from rag.transactions import transaction
from rag.types import Chunk, Filters, ScoredChunk, Vector

_log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
EXACT_FILTER_LIMIT = 8192  # filtered searches over at most this many chunks are scored exactly in numpy
TOMBSTONE_REBUILD_FRACTION = 0.25

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    vid          INTEGER PRIMARY KEY AUTOINCREMENT,  -- the FAISS id; never reused, so tombstones stay unambiguous
    id           TEXT NOT NULL UNIQUE,
    text         TEXT NOT NULL,
    source       TEXT NOT NULL,
    page         INTEGER,
    start        INTEGER NOT NULL,
    end          INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    file_hash    TEXT NOT NULL,
    file_type    TEXT NOT NULL,
    vector       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE INDEX IF NOT EXISTS chunks_file_type ON chunks(file_type);
"""
_FIELDS = tuple(dataclasses.fields(Chunk))
_CHUNK_COLS = ", ".join(f.name for f in _FIELDS)


def _sql_type(annotation: object) -> str:
    """The column type of a ``Chunk`` field from its annotation (a string under ``from __future__ import``)."""
    text = str(annotation)
    if text.startswith(("tuple", "list", "dict", "Mapping", "Sequence")):
        return "TEXT"  # JSON
    if text.startswith(("int", "bool")):
        return "INTEGER"
    if text.startswith("float"):
        return "REAL"
    return "TEXT"


_JSON_FIELDS = frozenset(f.name for f in _FIELDS if str(f.type).startswith(("tuple", "list", "dict", "Mapping")))
_BOOL_FIELDS = frozenset(f.name for f in _FIELDS if str(f.type).startswith("bool"))


def _encode(chunk: Chunk) -> list[Any]:
    out: list[Any] = []
    for f in _FIELDS:
        value = getattr(chunk, f.name)
        out.append(json.dumps(value, ensure_ascii=False) if f.name in _JSON_FIELDS and value is not None else value)
    return out


def _row_to_chunk(row: Sequence[Any]) -> Chunk:
    values: dict[str, Any] = {}
    for f, value in zip(_FIELDS, row, strict=True):
        if value is None and f.default is not dataclasses.MISSING:
            value = f.default  # a column added after this row was written
        elif f.name in _JSON_FIELDS and isinstance(value, str):
            loaded = json.loads(value)
            value = tuple(loaded) if str(f.type).startswith("tuple") else loaded
        elif f.name in _BOOL_FIELDS and value is not None:
            value = bool(value)
        values[f.name] = value
    return Chunk(**values)


@dataclasses.dataclass(frozen=True)
class IvfPqParams:
    """How the ``ivfpq`` index is shaped and searched (``RAG_STORE__IVF_*``, ``RAG_STORE__PQ_M``).

    ``nlist`` / ``pq_m`` of 0 are chosen from the collection when the index is trained: about 4 * sqrt(n) lists
    (at most n / 40, so each list centroid has enough training points) and one 8-bit sub-quantizer per 4 dimensions
    (96 bytes per 384-d vector instead of 1,536). Measured on 1M clustered MiniLM-like vectors (docs/scaling.md):
    48 bytes found 0.61 of the exact top 10 even after re-scoring 4x the candidates, 96 bytes with 16x re-scored
    found 0.99, so those are the defaults.

    >>> IvfPqParams().shape(10_000_000, 384)
    (12649, 96)
    """

    nlist: int = 0
    pq_m: int = 0
    nprobe: int = 32
    refine: int = 16  # candidates re-scored exactly from the stored vectors: k * refine (0: PQ scores as they are)
    train_min: int = 20_000  # below this many vectors the index stays exact (flat); IVF-PQ is trained at a checkpoint
    train_sample: int = 200_000

    def shape(self, n: int, dim: int) -> tuple[int, int]:
        nlist = self.nlist or int(min(65536, max(16, 4 * n**0.5, 1), max(16, n // 40)))
        m = self.pq_m or next(d for d in range(max(1, dim // 4), 0, -1) if dim % d == 0)
        return nlist, m


class FaissStore:
    """A persistent FAISS collection (see the module docstring). Implements ``rag.types.VectorStore``."""

    def __init__(
        self,
        directory: Path,
        dim: int,
        embedding_model: str,
        *,
        index_kind: str = "flat",
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 200,
        hnsw_ef_search: int = StoreSettings().hnsw_ef_search,
        ivf: IvfPqParams | None = None,
        use_gpu: str = "auto",
        checkpoint_s: float = 60.0,
        lock_timeout_s: float = 10.0,
    ) -> None:
        if index_kind not in ("flat", "hnsw", "ivfpq"):
            raise StoreError(f"unknown FAISS index kind {index_kind!r}; use 'flat', 'hnsw' or 'ivfpq'")
        self.directory = Path(directory)
        self.dim = dim
        self.embedding_model = embedding_model
        self.index_kind = index_kind
        self._hnsw = (hnsw_m, hnsw_ef_construction, hnsw_ef_search)
        self._ivf = ivf or IvfPqParams()
        self._use_gpu = use_gpu
        self._checkpoint_s = checkpoint_s
        self._lock_timeout_s = lock_timeout_s
        self._mutex = threading.RLock()
        self._index: Any = None  # the CPU index, ids = chunks.vid
        self._gpu_index: Any = None
        self._index_gen = -1  # the committed generation the in-memory index reflects
        self._dead: set[int] = set()  # HNSW / IVF-PQ tombstones: ids in the index that SQLite no longer has
        self._dirty = False  # in-memory index newer than the file on disk
        self._last_save = time.monotonic()
        self._lock_fd: int | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.directory / "chunks.sqlite", timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")  # readers see the last commit while a writer writes
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._add_new_columns()
            self._check_meta()
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the FAISS store in {self.directory}: {e}; is the directory writable?") from e
        except OSError as e:
            raise StoreError(f"cannot create the FAISS store in {self.directory}: {e}") from e

    # ------------------------------------------------------------------------------------------------ metadata
    def _add_new_columns(self) -> None:
        """Columns for ``Chunk`` fields this database predates (their rows read back as the field's default)."""
        have = {r[1] for r in self._db.execute("PRAGMA table_info(chunks)")}
        for f in _FIELDS:
            if f.name not in have:
                self._db.execute(f"ALTER TABLE chunks ADD COLUMN {f.name} {_sql_type(f.type)}")

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _check_meta(self) -> None:
        meta = self._meta()
        if not meta:
            with self._transaction():
                self._db.executemany(
                    "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                    [("schema", SCHEMA_VERSION), ("embedding_model", self.embedding_model),
                     ("dim", str(self.dim)), ("generation", "0")],
                )
            meta = self._meta()
        if meta.get("embedding_model") != self.embedding_model or int(meta.get("dim", -1)) != self.dim:
            raise StoreError(
                f"the collection in {self.directory} was built with embedding model {meta.get('embedding_model')!r} "
                f"({meta.get('dim')}-d), not {self.embedding_model!r} ({self.dim}-d): use that model "
                "(RAG_EMBEDDING__MODEL), another --collection, or delete the collection and ingest again"
            )

    def _generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with transaction(self._db):
            yield

    # ---------------------------------------------------------------------------------------------------- locks
    def _acquire_writer(self) -> None:
        if self._lock_fd is not None:
            return
        import fcntl

        try:
            fd = os.open(self.directory / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            msg = f"cannot write to the collection in {self.directory}: {e.strerror}; check its permissions"
            raise StoreError(msg) from e
        deadline = time.monotonic() + self._lock_timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise StoreError(
                        f"another process is writing to {self.directory} (a running 'rag ingest'?): "
                        "wait for it to finish and try again"
                    ) from None
                time.sleep(0.1)
        self._lock_fd = fd

    def _release_writer(self) -> None:
        if self._lock_fd is not None:
            import fcntl

            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---------------------------------------------------------------------------------------------------- index
    def _faiss(self) -> Any:
        try:
            import faiss
        except ImportError as e:
            raise StoreError("the FAISS store needs faiss: pip install faiss-cpu (or faiss-gpu)") from e
        return faiss

    @property
    def _tombstones(self) -> bool:
        """HNSW cannot remove vectors, and removing from IVF lists scans them all: both mark deletions instead."""
        return self.index_kind in ("hnsw", "ivfpq")

    def _new_index(self, live: int = 0) -> Any:
        """An empty index; for ``ivfpq`` a trained one once ``live`` reaches ``ivf.train_min`` (exact before)."""
        faiss = self._faiss()
        if self.index_kind == "ivfpq" and live >= self._ivf.train_min:
            return self._trained_ivfpq(live)
        if self.index_kind == "hnsw":
            m, ef_construction, ef_search = self._hnsw
            inner = faiss.IndexHNSWFlat(self.dim, m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = ef_construction
            inner.hnsw.efSearch = ef_search
            index = faiss.IndexIDMap(inner)
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        return index  # faiss' Python layer keeps the inner index alive as long as the wrapper

    def _trained_ivfpq(self, live: int) -> Any:
        """IVF-PQ trained on a sample of the collection's vectors (read from SQLite in one snapshot)."""
        faiss = self._faiss()
        nlist, m = self._ivf.shape(live, self.dim)
        quantizer = faiss.IndexFlatIP(self.dim)
        sample_n = min(live, max(nlist * 40, 256 * 40, self._ivf.train_sample))
        step = max(1, live // sample_n)
        rows = self._db.execute("SELECT vector FROM chunks WHERE vid % ? = 0 LIMIT ?", (step, sample_n)).fetchall()
        sample = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
        nbits = min(8, max(1, int(np.log2(max(len(rows), 2)))))  # 8 once there are 256 points to train each code
        index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)  # keeps quantizer
        _log.info("training IVF-PQ (nlist %d, %d sub-quantizers) on %d of %d vectors", nlist, m, len(rows), live)
        index.cp.niter = 10  # k-means iterations of the coarse quantizer (faiss' 25 cost 2.5x for no recall here)
        index.train(np.ascontiguousarray(sample))
        index.nprobe = self._ivf.nprobe
        return index

    def _index_ids(self, index: Any) -> np.ndarray:
        faiss = self._faiss()
        if hasattr(index, "id_map"):
            return faiss.vector_to_array(index.id_map).astype(np.int64)
        ivf = faiss.extract_index_ivf(index)
        invlists, parts = ivf.invlists, []
        for i in range(ivf.nlist):
            n = invlists.list_size(i)
            if n:
                parts.append(faiss.rev_swig_ptr(invlists.get_ids(i), n).astype(np.int64).copy())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @property
    def _is_ivf(self) -> bool:
        return self._index is not None and not hasattr(self._index, "id_map")

    def _index_path(self, generation: int) -> Path:
        return self.directory / f"index-{self.index_kind}-{generation}.faiss"

    def _ensure_index(self) -> Any:
        """Bring the in-memory index up to the committed generation: load its file, or rebuild from SQLite."""
        generation = self._generation()
        if self._index is not None and self._index_gen == generation:
            return self._index
        path = self._index_path(generation)
        if path.exists():
            try:
                loaded = self._faiss().read_index(str(path))
                if self._consistent(loaded):
                    self._set_index(loaded, generation, dirty=False)
                    return self._index
                _log.warning("FAISS index %s does not match the chunk database; rebuilding it", path)
            except RuntimeError as e:  # unreadable (vanished under a reader, or damaged): rebuild
                _log.warning("cannot read FAISS index %s (%s); rebuilding it from the chunk database", path, e)
        self._rebuild()
        return self._index

    def _live_ids(self) -> np.ndarray:
        rows = self._db.execute("SELECT vid FROM chunks").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _consistent(self, index: Any) -> bool:
        if index.d != self.dim:
            return False
        ids = self._index_ids(index)
        live = self._live_ids()
        if np.setdiff1d(live, ids, assume_unique=True).size:
            return False  # chunks the index lacks
        self._pending_dead = set(np.setdiff1d(ids, live, assume_unique=True).tolist())
        return not self._pending_dead or self._tombstones

    def _set_index(self, index: Any, generation: int, *, dirty: bool) -> None:
        if self.index_kind == "hnsw":
            self._faiss().downcast_index(index.index).hnsw.efSearch = self._hnsw[2]
        if not hasattr(index, "id_map"):
            index.nprobe = self._ivf.nprobe
        self._dead = set(getattr(self, "_pending_dead", set())) if self._tombstones else set()
        self._pending_dead = set()
        self._index, self._index_gen, self._dirty, self._gpu_index = index, generation, dirty, None

    def _rebuild(self) -> None:
        """A fresh index from the vectors in SQLite, read in one snapshot (no re-embedding)."""
        self._db.execute("BEGIN")
        try:
            generation = self._generation()
            live = int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
            index = self._new_index(live)
            cursor = self._db.execute("SELECT vid, vector FROM chunks ORDER BY vid")
            while rows := cursor.fetchmany(4096):
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
                index.add_with_ids(vectors, ids)
        finally:
            self._db.execute("COMMIT")
        self._pending_dead = set()
        self._set_index(index, generation, dirty=True)

    def _search_index(self) -> Any:
        """The index to search: a GPU copy of the exact index when GPU FAISS and a GPU are both present."""
        if self._use_gpu == "never" or self.index_kind != "flat":
            return self._index
        if self._gpu_index is None:
            faiss = self._faiss()
            if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
                self._use_gpu = "never"  # checked once: this faiss or machine has no GPU
                return self._index
            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
            except RuntimeError as e:  # pragma: no cover - needs a GPU
                _log.warning("GPU FAISS unavailable (%s); searching on CPU", e)
                self._use_gpu = "never"
                return self._index
        return self._gpu_index

    def checkpoint(self) -> None:
        """Write the in-memory index to disk atomically (temp file + ``os.replace``) if it changed."""
        with self._mutex:
            if self._index is None or not self._dirty:
                return
            if self._dead and len(self._dead) > TOMBSTONE_REBUILD_FRACTION * self._index.ntotal:
                self._rebuild()  # tombstones took over: start from the live vectors only
            elif (self.index_kind == "ivfpq" and not self._is_ivf
                  and self._index.ntotal - len(self._dead) >= self._ivf.train_min):
                self._rebuild()  # enough vectors to train IVF-PQ: it replaces the exact index
            final = self._index_path(self._index_gen)
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            try:
                self._faiss().write_index(self._index, str(tmp))
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            except (OSError, RuntimeError) as e:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise StoreError(f"cannot write the FAISS index to {final}: {e}; is the disk full or read-only?") from e
            # Older generations, and temp files a crashed writer left behind (we hold the writer lock).
            for old in [*self.directory.glob("index-*.faiss"), *self.directory.glob(".index-*.tmp")]:
                if old != final:
                    with contextlib.suppress(OSError):
                        old.unlink()
            self._dirty = False
            self._last_save = time.monotonic()

    # ---------------------------------------------------------------------------------------------- VectorStore
    def upsert(self, chunks: Sequence[Chunk], vectors: Vector) -> None:
        """Insert chunks (replacing any with the same id) with their vectors, in one committed transaction."""
        normed = check_vectors(chunks, vectors, self.dim)  # the shape checked, rows L2-normalised
        if not len(chunks):
            return
        chunks, normed = dedupe_batch(chunks, normed)
        vectors = np.ascontiguousarray(normed, dtype=np.float32)
        with self._mutex:
            self._acquire_writer()
            self._ensure_index()
            ids = [c.id for c in chunks]
            with self._transaction():
                old: list[int] = []
                for i in range(0, len(ids), 500):
                    part = ids[i : i + 500]
                    old += [r[0] for r in self._db.execute(
                        f"SELECT vid FROM chunks WHERE id IN ({','.join('?' * len(part))})", part)]
                if old:
                    self._db.executemany("DELETE FROM chunks WHERE vid = ?", [(v,) for v in old])
                new_ids = np.empty(len(chunks), dtype=np.int64)
                for i, (c, v) in enumerate(zip(chunks, vectors, strict=True)):
                    cur = self._db.execute(
                        f"INSERT INTO chunks ({_CHUNK_COLS}, vector) VALUES ({', '.join('?' * (len(_FIELDS) + 1))})",
                        (*_encode(c), v.tobytes()),
                    )
                    new_ids[i] = int(cur.lastrowid or 0)
                generation = self._bump_generation()
            self._remove_from_index(old)
            self._index.add_with_ids(vectors, new_ids)
            self._after_write(generation)

    def delete_source(self, source: str) -> int:
        """Remove every chunk of ``source``; returns how many were removed."""
        with self._mutex:
            self._acquire_writer()
            self._ensure_index()
            with self._transaction():
                vids = [r[0] for r in self._db.execute("SELECT vid FROM chunks WHERE source = ?", (source,))]
                if not vids:
                    return 0
                self._db.execute("DELETE FROM chunks WHERE source = ?", (source,))
                generation = self._bump_generation()
            self._remove_from_index(vids)
            self._after_write(generation)
            return len(vids)

    def _bump_generation(self) -> int:
        generation = self._generation() + 1
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
        return generation

    def _remove_from_index(self, vids: list[int]) -> None:
        if not vids:
            return
        if self._tombstones:
            self._dead.update(vids)
        else:
            self._index.remove_ids(np.asarray(vids, dtype=np.int64))

    def _after_write(self, generation: int) -> None:
        self._index_gen, self._dirty, self._gpu_index = generation, True, None
        if time.monotonic() - self._last_save > self._checkpoint_s:
            self.checkpoint()

    def search(self, vector: Vector, k: int, filters: Filters | None = None) -> list[ScoredChunk]:
        query = np.ascontiguousarray(check_query(vector, self.dim).reshape(1, -1))
        if k <= 0:
            return []
        with self._mutex:
            self._ensure_index()
            where, params = to_sql(filters)
            if where:
                allowed = np.fromiter(
                    (r[0] for r in self._db.execute(f"SELECT vid FROM chunks{where}", params)), dtype=np.int64
                )
                if allowed.size == 0:
                    return []
                if allowed.size <= EXACT_FILTER_LIMIT:
                    return self._exact_subset(query[0], allowed, k)
            else:
                allowed = None
            if self._is_ivf and self._ivf.refine:
                # PQ codes only rank candidates: the best k * refine are scored exactly from their stored vectors
                _, ids = self._faiss_search(query, k * self._ivf.refine, allowed)
                candidates = ids[ids >= 0]
                return self._exact_subset(query[0], candidates, k) if candidates.size else []
            scores, ids = self._faiss_search(query, k, allowed)
            return self._hits(scores, ids, k)

    def _faiss_search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        faiss = self._faiss()
        index = self._index
        if index.ntotal == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        # One query is too little work to share: OpenMP's spinning threads made single-query latency 20x worse
        # on a busy 2-core machine (benchmarks/vector_stores.py), so searches run on one thread.
        with _single_omp_thread(faiss):
            return self._faiss_search_locked(faiss, index, query, k, allowed)

    def _faiss_search_locked(
        self, faiss: Any, index: Any, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        selector = batch = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(allowed)
        elif self._dead:
            batch = faiss.IDSelectorBatch(np.fromiter(self._dead, dtype=np.int64))  # referenced until we return
            selector = faiss.IDSelectorNot(batch)
        if selector is None:
            scores, ids = self._search_index().search(query, min(k, index.ntotal))
        elif self.index_kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self._hnsw[2], k))
            scores, ids = index.search(query, min(k, index.ntotal), params=params)
        elif self._is_ivf:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=self._ivf.nprobe)
            scores, ids = index.search(query, min(k, index.ntotal), params=params)
        else:
            scores, ids = index.search(query, min(k, index.ntotal), params=faiss.SearchParameters(sel=selector))
        return scores[0], ids[0]

    def _exact_subset(self, query: np.ndarray, allowed: np.ndarray, k: int) -> list[ScoredChunk]:
        rows: list[tuple[Any, ...]] = []
        ids = allowed.tolist()
        for i in range(0, len(ids), 900):
            part = ids[i : i + 900]
            rows += self._db.execute(
                f"SELECT vid, vector FROM chunks WHERE vid IN ({','.join('?' * len(part))})", part
            ).fetchall()
        if not rows:
            return []
        vids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
        scores = matrix @ query
        top = np.argsort(-scores, kind="stable")[:k]
        return self._hits(scores[top], vids[top], k)

    def _hits(self, scores: np.ndarray, ids: np.ndarray, k: int) -> list[ScoredChunk]:
        wanted = [(int(i), float(s)) for s, i in zip(scores, ids, strict=True) if i >= 0 and int(i) not in self._dead]
        if not wanted:
            return []
        vids = [i for i, _ in wanted]
        rows = self._db.execute(
            f"SELECT vid, {_CHUNK_COLS} FROM chunks WHERE vid IN ({','.join('?' * len(vids))})", vids
        ).fetchall()
        by_vid = {r[0]: _row_to_chunk(r[1:]) for r in rows}
        hits = [ScoredChunk(chunk=by_vid[v], score=s) for v, s in wanted if v in by_vid]
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def count(self) -> int:
        with self._mutex:
            return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def chunks(self, filters: Filters | None = None) -> Iterator[Chunk]:
        """Every chunk (optionally filtered) in insertion order, read in one snapshot with a separate connection."""
        where, params = to_sql(filters)
        db = sqlite3.connect(self.directory / "chunks.sqlite", timeout=30.0, isolation_level=None)
        try:
            db.execute("BEGIN")
            cursor = db.execute(f"SELECT {_CHUNK_COLS} FROM chunks{where} ORDER BY vid", params)
            while rows := cursor.fetchmany(2048):
                for row in rows:
                    yield _row_to_chunk(row)
            db.execute("COMMIT")
        finally:
            db.close()

    def sources(self) -> dict[str, int]:
        with self._mutex:
            return dict(self._db.execute("SELECT source, COUNT(*) FROM chunks GROUP BY source ORDER BY source"))

    def close(self) -> None:
        """Write the index if it changed, release the writer lock and the database."""
        with self._mutex:
            try:
                if self._lock_fd is not None:
                    self.checkpoint()
            finally:
                self._release_writer()
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()

    def __enter__(self) -> FaissStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_faiss_store(settings: Settings, directory: Path, dim: int, embedding_model: str) -> FaissStore:
    """The builder registered in ``rag.stores.STORES["faiss"]``."""
    s = settings.store
    return FaissStore(
        directory,
        dim,
        embedding_model,
        index_kind=s.faiss_index,
        hnsw_m=s.hnsw_m,
        hnsw_ef_construction=s.hnsw_ef_construction,
        hnsw_ef_search=s.hnsw_ef_search,
        ivf=IvfPqParams(nlist=s.ivf_nlist, pq_m=s.pq_m, nprobe=s.ivf_nprobe, refine=s.ivf_refine,
                        train_min=s.ivf_train_min),
        use_gpu=s.use_gpu,
        lock_timeout_s=s.lock_timeout_s,
    )


@contextlib.contextmanager
def _single_omp_thread(faiss: Any) -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
