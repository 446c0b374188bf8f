"""Ingestion: discover -> stat -> parse (a pool) -> embed (large batches) -> write (group commits), with a manifest.

``ingest_paths`` is what ``rag ingest`` runs. Three stages overlap, joined by bounded queues so memory stays flat
however many files a run has::

    parse workers (processes)  --at most `ahead` files-->  main thread: embed 512 chunks at a time  --2 batches-->
    writer thread: one group commit per batch (manifest pending -> store delete+upsert -> manifest done)

* **Parse** is ``ingest.parse.parse_file``, a pure function of a file and a small spec, run in worker processes
  (``RAG_INGEST__WORKERS``; -1 picks by the run's size: docs/benchmarks.md has the measurements behind it). The
  workers label chunks with the file's access groups (``ingest.access``) and OCR scanned pages with their share of
  the OCR budget (``ingest.parse.ParseSpec.for_processes``).
* **Embed**: chunks of many files go to the model together, through the embedding cache (``rag.embed_cache``): a
  text embedded before, by this model at this precision, is not embedded again.
* **Write**: a batch of files is one commit: the manifest marks them ``pending`` before their old chunks are
  touched and ``done`` after the store took the new ones. A crash, ``kill -9`` or Ctrl-C at any point leaves
  either ``done`` files whose chunks are all in the store, or ``pending`` ones that the next run removes first
  (``Collection.clean_pending``, reported in ``cleaned_up``) and ingests again: nothing lost, nothing duplicated
  (``Collection.check()`` proves it). The run holds the collection's writer lock (``Collection.acquire_writer``)
  from its first change to its end; the writer thread commits on the run's behalf, under that lock.
* **Cancel**: ``cancel`` (a ``threading.Event``; Ctrl-C does the same) stops the run at the next batch: what was
  committed stays, what was not is untouched (a changed file keeps its previous version), and the keyword index is
  brought up to date, so the collection is consistent and the next run resumes.

Unchanged files (same size and mtime, or same content hash) are skipped without loading the model; a changed file
replaces exactly its own chunks; ``prune=True`` drops files that no longer exist.

Example::

    >>> summary = ingest_paths(["~/papers"], Settings(collection="papers"))  # doctest: +SKIP
    >>> summary.new, summary.chunks_added, [f.reason for f in summary.failed]  # doctest: +SKIP
    (41, 2210, ['encrypted PDF (password protected): decrypt it first, e.g. qpdf --decrypt'])
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingest.discover import Discovery, FailedFile, discover
from ingest.formats.common import LoadOptions
from ingest.parse import VANISHED, ParsedFile, ParseSpec, describe_error, iter_chunks
from ingest.pool import Parser
from rag.collection import Collection
from rag.config import Settings
from rag.embed_cache import CachedEmbedder, EmbeddingCache, model_key
from rag.manifest import FileRecord
from rag.types import Chunk, Embedder, Vector, VectorStore
from rag.wiring import Wiring

_log = logging.getLogger(__name__)

LOADER_VERSION = "2"  # bump when loaders or chunking change what a file turns into: every file is re-ingested
EMBED_BUFFER = 512  # chunks gathered across files before one embedding call (bounded memory, full batches)
WRITE_QUEUE = 2  # embedded batches waiting for the writer (the overlap of embedding and writing, bounded)
POOL_MIN_FILES = 16  # fewer files to parse than this: one parse thread (a process pool costs ~1 s to start)


@dataclass(frozen=True)
class IngestProgress:
    files_done: int
    files_total: int
    current: str
    chunks_added: int


@dataclass(frozen=True)
class IngestSummary:
    files_seen: int
    new: int
    changed: int
    unchanged: int
    failed: tuple[FailedFile, ...]
    chunks_added: int
    chunks_removed: int
    pruned_files: int
    seconds: float
    skipped: tuple[FailedFile, ...] = ()  # files of a type no loader reads
    collection: str = ""
    chunks_total: int | None = None  # chunks in the collection after the run (None when the store was not opened)
    cleaned_up: tuple[FailedFile, ...] = ()  # files an interrupted run left half-done, whose chunks were removed
    ocr_pages: int = 0  # pages (and images) whose text was read by OCR in this run
    cancelled: bool = False  # stopped early (cancel or Ctrl-C): committed files stay, the rest is untouched
    embedded: int = 0  # chunk texts the model embedded (the others came from the embedding cache)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage: scan, read, chunk, embed, write, ...

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object.

        >>> IngestSummary(1, 1, 0, 0, (FailedFile("/x.pdf", "empty file"),), 3, 0, 0, 0.5).to_dict()["failed"]
        [{'path': '/x.pdf', 'reason': 'empty file'}]
        """
        d = asdict(self)
        d["failed"] = [asdict(f) for f in self.failed]
        d["skipped"] = [asdict(f) for f in self.skipped]
        d["cleaned_up"] = [asdict(f) for f in self.cleaned_up]
        d["seconds"] = round(self.seconds, 3)
        d["stages"] = {k: round(v, 3) for k, v in self.stages.items()}
        return d


@dataclass
class _Counts:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    pruned: int = 0
    failed: list[FailedFile] = field(default_factory=list)
    done: int = 0
    embedded: int = 0
    ocr_pages: int = 0


@dataclass
class _Candidate:
    path: Path
    source: str
    size: int
    mtime_ns: int
    record: FileRecord | None
    groups: tuple[str, ...] = ()  # access groups every chunk of the file carries (ingest.access)
    key: str = ""  # the config key this file is indexed under (includes its groups: a change re-indexes it)


@dataclass
class _Batch:
    """Files whose chunks were embedded together, for one group commit."""

    files: list[tuple[_Candidate, ParsedFile]] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    vectors: Vector | None = None


class Cancelled(Exception):
    """Raised inside a run when its ``cancel`` event is set; ``ingest_paths`` turns it into ``cancelled=True``."""


# ------------------------------------------------------------------------------------------------------ pipeline
class _Run:
    """One ingestion run; the store and the model are opened only when some file needs them."""

    def __init__(self, wiring: Wiring, progress: Callable[[IngestProgress], None] | None,
                 cancel: threading.Event | None) -> None:
        self.settings = wiring.settings
        self.wiring = wiring
        self.collection: Collection = wiring.collection()
        self.manifest = self.collection.manifest
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.counts = _Counts()
        self.total = 0
        self.stages: dict[str, float] = {"scan": 0.0, "read": 0.0, "chunk": 0.0, "embed": 0.0, "write": 0.0}
        self.groups: dict[Path, tuple[str, ...]] = {}  # access groups per file (ingest.access)
        self.keep_open = False  # the caller shares the collection (rag serve): flush it, do not close it
        self.options = LoadOptions.from_settings(self.settings.ingest)
        self._lock = threading.Lock()
        self._stale_marked = False
        self._embedder: Embedder | None = None
        self._cache: EmbeddingCache | None = None

    # -- parts ---------------------------------------------------------------------------------------------------
    @property
    def model(self) -> Embedder:
        return self.wiring.embedder()

    @property
    def embedder(self) -> Embedder:
        """The model behind the embedding cache (opened on the first batch: a run with nothing new opens nothing)."""
        if self._embedder is None:
            model = self.model
            if self.settings.embedding.cache:
                self._cache = EmbeddingCache(self.settings.embedding_cache_path, model_key(model), model.dim)
                self._embedder = CachedEmbedder(model, self._cache)
            else:
                self._embedder = model
        return self._embedder

    @property
    def store(self) -> VectorStore:
        return self.collection.store

    def spec(self) -> ParseSpec:
        c = self.settings.chunk
        return ParseSpec.for_model(c.size_tokens, c.overlap_tokens, self.model, self.options)

    @functools.cached_property
    def config_key(self) -> str:
        c = self.settings.chunk
        emb = self.model.name  # building an embedder loads no model: its name costs nothing
        key = f"{emb}|{c.size_tokens}|{c.overlap_tokens}|{LOADER_VERSION}"
        precision = getattr(self.model, "cache_key", "fp32")
        if precision != "fp32":  # int8 / fp16 vectors differ: switching re-embeds (fp32 keys stay as they were)
            key += f"|{precision}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    # -- progress ------------------------------------------------------------------------------------------------
    def finished(self, current: str, n: int = 1) -> None:
        """``n`` more files are finished (committed, unchanged or failed)."""
        with self._lock:
            self.counts.done += n
        self.note(current)

    def note(self, current: str) -> None:
        """Say what is happening now (parsing a file, embedding a batch) without finishing a file."""
        if self.progress:
            self.progress(IngestProgress(self.counts.done, self.total, current, self.counts.chunks_added))

    def fail(self, source: str, reason: str) -> None:
        with self._lock:
            self.counts.failed.append(FailedFile(source, reason))
        self.finished(source)

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled

    # -- planning ------------------------------------------------------------------------------------------------
    def clean_pending(self) -> tuple[FailedFile, ...]:
        """Files a killed run left half-done lose their partial chunks first (they are ingested again if they are
        among this run's files), and the summary says so. ``Collection.clean_pending`` takes the writer lock (in
        this thread) only when there is something to clean, and marks the keyword index stale."""
        cleaned = self.collection.clean_pending()
        if cleaned:
            self._stale_marked = True
        return tuple(FailedFile(source, f"left half-done by an interrupted run: its {n} partial chunks were removed")
                     for source, n in cleaned)  # fmt: skip

    def plan(self, files: list[Path]) -> list[_Candidate]:
        """Files that may need work; those unchanged by size and mtime are counted and dropped here."""
        records = self.manifest.index()  # plain tuples: this loop runs once per file of the folder
        base_key = self.config_key
        limit = self.settings.ingest.max_file_mb * 1024 * 1024
        todo = []
        unchanged = 0
        for path in files:
            source = str(path)
            file_groups = self.groups.get(path, ())
            key = file_config_key(base_key, file_groups) if file_groups else base_key
            try:
                st = os.stat(source)
            except FileNotFoundError:
                self.fail(source, VANISHED)
                continue
            except OSError as e:
                self.fail(source, f"cannot read file: {e.strerror}")
                continue
            rec = records.get(source)
            if st.st_size > limit:
                self.fail(source, f"file is {st.st_size / 2**20:.1f} MB, over the {limit / 2**20:g} MB limit "
                          "(raise RAG_INGEST__MAX_FILE_MB to include it)")
                continue
            if rec and rec[0] == "done" and rec[1] == key and rec[2] == st.st_size and rec[3] == st.st_mtime_ns:
                unchanged += 1
                continue
            record = FileRecord(source, rec[4], rec[2], rec[3], rec[1], rec[5], rec[0]) if rec else None
            todo.append(_Candidate(path, source, st.st_size, st.st_mtime_ns, record, file_groups, key))
        self.counts.unchanged += unchanged
        if unchanged:
            self.finished("unchanged files", unchanged)
        return todo

    def known_hash(self, cand: _Candidate) -> str | None:
        """The content hash on record when the file is indexed as it would be now (then the same bytes mean the
        file is unchanged, only touched)."""
        rec = cand.record
        return rec.file_hash if rec and rec.status == "done" and rec.config_key == cand.key else None

    # -- committing (the writer thread, under the run's writer lock) ---------------------------------------------
    def lexical_stale(self) -> None:
        """Mark the BM25 index out of date before the store changes (a crash before the rebuild is then seen).
        Called by the thread that holds the writer lock (it takes it if it does not hold it yet)."""
        if not self._stale_marked:
            self.collection.mark_bm25_stale()
            self._stale_marked = True

    def commit(self, batch: _Batch) -> None:
        """One group commit: pending -> old chunks out, new chunks in -> done. Atomic per file, as a batch.
        The thread that queued it marked the keyword index stale first (``lexical_stale``)."""
        t0 = time.perf_counter()
        self.manifest.mark_pending_many([cand.source for cand, _ in batch.files])
        removed = 0
        for cand, _ in batch.files:
            if cand.record is not None:  # new files have nothing to remove
                removed += self.store.delete_source(cand.source)
        if batch.chunks:
            assert batch.vectors is not None
            self.store.upsert(batch.chunks, batch.vectors)
        self._done([(cand, parsed.file_hash, len(parsed.chunks), parsed.ocr_pages) for cand, parsed in batch.files],
                   removed)  # fmt: skip
        with self._lock:
            self.stages["write"] += time.perf_counter() - t0

    def _done(self, files: list[tuple[_Candidate, str, int, int]], removed: int) -> None:
        self.manifest.mark_done_many([FileRecord(cand.source, file_hash, cand.size, cand.mtime_ns,
                                                 cand.key or self.config_key, n)
                                      for cand, file_hash, n, _ in files])  # fmt: skip
        with self._lock:
            for cand, _, n, ocr_pages in files:
                if cand.record is None or not cand.record.file_hash:
                    self.counts.new += 1
                else:
                    self.counts.changed += 1
                self.counts.chunks_added += n
                self.counts.ocr_pages += ocr_pages
            self.counts.chunks_removed += removed
        self.finished(files[-1][0].source, len(files))

    def touch(self, items: list[tuple[_Candidate, ParsedFile]]) -> None:
        """Files with a new mtime but the same bytes: remember the new size and mtime, count them unchanged."""
        self.manifest.touch_many([(c.source, c.size, c.mtime_ns) for c, _ in items])
        with self._lock:
            self.counts.unchanged += len(items)
        self.finished(items[-1][0].source, len(items))

    # -- embedding (the main thread) ---------------------------------------------------------------------------
    def embed(self, batch: _Batch) -> None:
        batch.chunks = [c for _, parsed in batch.files for c in parsed.chunks]
        if not batch.chunks:
            return
        self.note(f"embedding {len(batch.chunks)} chunks of {len(batch.files)} files")
        t0 = time.perf_counter()
        embedder = self.embedder
        before = getattr(embedder, "misses", None)
        batch.vectors = embedder.embed_documents([c.embedding_text for c in batch.chunks])
        self.stages["embed"] += time.perf_counter() - t0
        self.counts.embedded += (embedder.misses - before) if before is not None else len(batch.chunks)  # type: ignore[attr-defined]

    def stream(self, cand: _Candidate, parsed: ParsedFile, spec: ParseSpec) -> None:
        """A big file: load, chunk, embed and upsert in bounded pieces; marked done in the manifest at the end."""
        self.lexical_stale()
        self.manifest.mark_pending(cand.source)
        removed = self.store.delete_source(cand.source)
        n = 0
        buffer: list[Chunk] = []
        ocr_pages: set[tuple[str, int | None, float | None]] = set()
        try:
            for chunk in iter_chunks(cand.path, spec, parsed.file_hash, cand.groups, ocr_pages):
                buffer.append(chunk)
                if len(buffer) >= EMBED_BUFFER:
                    self.check_cancel()
                    self.store.upsert(buffer, self.embedder.embed_documents([c.embedding_text for c in buffer]))
                    n += len(buffer)
                    buffer = []
            if buffer:
                self.store.upsert(buffer, self.embedder.embed_documents([c.embedding_text for c in buffer]))
                n += len(buffer)
        except BaseException as e:  # a bad file, a cancel or Ctrl-C: no half-indexed file stays behind
            self.store.delete_source(cand.source)
            self.manifest.remove(cand.source)
            self.counts.chunks_removed += removed
            if not isinstance(e, Exception) or isinstance(e, Cancelled):
                raise
            self.fail(cand.source, describe_error(e, cand.path))
            return
        if n == 0:
            self.manifest.remove(cand.source)
            self.counts.chunks_removed += removed
            self.fail(cand.source, "no text to index")
            return
        self._done([(cand, parsed.file_hash, n, len(ocr_pages))], removed)

    def prune(self, keep: set[str], excluded: frozenset[str] = frozenset()) -> None:
        """Drop files that no longer exist, and those this run skipped by policy (e.g. a symlink not followed)."""
        for source in sorted(self.manifest.all()):
            if source not in keep and (source in excluded or _gone(source)):
                self.lexical_stale()
                self.counts.chunks_removed += self.store.delete_source(source)
                self.manifest.remove(source)
                self.counts.pruned += 1

    def close(self) -> None:
        from ingest.formats.ocr import shutdown_pool

        try:
            if self.keep_open:
                self.collection.flush()
                self.collection.release_writer()  # the collection stays open for its caller; other writers may go on
            else:
                self.collection.close()
        finally:
            try:
                shutdown_pool()  # OCR worker processes (of parsing in this process) do not outlive the run
            finally:
                if self._cache is not None:
                    self._cache.close()


class _Writer:
    """The writer thread: commits embedded batches (and touches, drops) in order while the next batch embeds."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.queue: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.Queue(WRITE_QUEUE)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="rag-ingest-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # after a failure nothing more is written; the main thread re-raises it
            func, args = item
            try:
                func(*args)
            except BaseException as e:  # handed to the main thread
                self.error = e

    def put(self, func: Callable[..., None], *args: Any) -> None:
        self.raise_error()
        while True:  # a bounded put that still notices a writer failure
            try:
                self.queue.put((func, args), timeout=0.2)
                return
            except queue.Full:
                self.raise_error()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """Commit everything queued, then stop."""
        self.queue.put(None)
        self._thread.join()
        self.raise_error()

    def drain(self) -> None:
        """After a cancel, Ctrl-C or a failure elsewhere: commit the batches already embedded (complete units of
        work: throwing their vectors away would only cost time on the next run), then stop. A writer failure is
        logged, not raised: the exception that stopped the run is the one to report."""
        self.queue.put(None)
        self._thread.join()
        if self.error is not None:
            _log.error("the ingest writer failed while stopping", exc_info=self.error)


def parse_processes(settings: Settings, files_to_parse: int) -> int:
    """How many parse processes a run uses (0: one thread in this process): ``RAG_INGEST__WORKERS``, or, when that
    is -1 (automatic), by the run's size and the machine's cores.

    Automatic: one thread beside the embedder for small runs (a pool costs about a second to start), else one
    process per core but one (the embedder's threads use the cores too; docs/benchmarks.md measured it).
    """
    workers = settings.ingest.workers
    if workers >= 0:
        return workers
    if files_to_parse < POOL_MIN_FILES:
        return 0
    return max(1, (os.cpu_count() or 2) - 1)


def ingest_paths(
    paths: Sequence[str | Path],
    target: Settings | Wiring,
    *,
    prune: bool = False,
    progress: Callable[[IngestProgress], None] | None = None,
    embedder: Embedder | None = None,
    groups: Sequence[str] = (),
    keep_open: bool = False,
    cancel: threading.Event | None = None,
    roots: Sequence[str | Path] | None = None,
) -> IngestSummary:
    """Ingest files and folders into the collection of ``target`` (settings, or a wiring that holds the parts);
    see the module docstring. ``embedder`` is a ready model to use (the UI passes its cached one); ``cancel``
    stops the run early, leaving the collection consistent (``IngestSummary.cancelled``).
    ``groups``: the access groups of every file that no ``.raggroups`` file covers (see ``ingest.access``), looked
    up below ``roots`` (default: ``paths``; ``rag ingest --watch`` passes the watched folders).
    ``keep_open``: the wiring's collection stays open (flushed) for a caller that keeps serving from it.

    Raises ``UsageError`` for a path that does not exist and ``StoreError`` when the collection cannot be opened
    or written; problems with single files are reported in ``IngestSummary.failed`` instead. Ctrl-C
    (``KeyboardInterrupt``) stops the run like ``cancel`` does, then is raised again.
    """
    t0 = time.perf_counter()
    wiring = target if isinstance(target, Wiring) else Wiring(target, embedder=embedder)
    settings = wiring.settings
    found = discover(paths, settings.ingest.include, follow_symlinks_outside=settings.ingest.follow_symlinks_outside)
    from ingest.access import file_groups

    access = file_groups(found.files, roots if roots is not None else paths, groups)
    run = _Run(wiring, progress, cancel)
    run.groups, run.keep_open = access, keep_open
    run.total = len(found.files)
    run.counts.failed.extend(found.failed)  # folders and links that could not be read
    return _execute(run, found, t0, prune=prune, plan=run.plan, process=functools.partial(_process, run))


def _execute(run: _Run, found: Discovery, t0: float, *, prune: bool,
             plan: Callable[[list[Path]], list[_Candidate]],
             process: Callable[[list[_Candidate]], None]) -> IngestSummary:  # fmt: skip
    """A run from the scan to its summary, the local and the Ray paths alike: clean what a killed run left, ``plan``
    what to do, ``process`` it (a cancel or Ctrl-C stops it, keeping what was committed), prune, bring the keyword
    index up to date, close; then Ctrl-C is raised again, or the summary returned."""
    cancelled = False
    interrupted: KeyboardInterrupt | None = None
    try:
        run.note("scanning")
        cleaned = run.clean_pending()
        todo = plan(found.files)
        run.stages["scan"] = time.perf_counter() - t0
        try:
            if todo:
                process(todo)
        except (Cancelled, KeyboardInterrupt) as e:
            cancelled = True
            interrupted = e if isinstance(e, KeyboardInterrupt) else None
        if prune and not cancelled:
            run.prune({str(f) for f in found.files}, frozenset(f.path for f in found.skipped))
        chunks_total = _finish(run)
    finally:
        run.close()
    if interrupted is not None:
        raise interrupted
    c = run.counts
    run.stages["total"] = time.perf_counter() - t0
    return IngestSummary(
        files_seen=len(found.files),
        new=c.new,
        changed=c.changed,
        unchanged=c.unchanged,
        failed=tuple(c.failed),
        chunks_added=c.chunks_added,
        chunks_removed=c.chunks_removed,
        pruned_files=c.pruned,
        seconds=time.perf_counter() - t0,
        skipped=tuple(found.skipped),
        collection=run.settings.collection,
        chunks_total=chunks_total,
        cleaned_up=cleaned,
        ocr_pages=c.ocr_pages,
        cancelled=cancelled,
        embedded=c.embedded,
        stages=dict(run.stages),
    )


def _process(run: _Run, todo: list[_Candidate]) -> None:
    """Parse, embed and commit ``todo``: the three overlapping stages (see the module docstring).

    This thread takes the collection's writer lock before anything starts (a second writer waits, or fails with a
    ``StoreError`` naming us, before any file is parsed) and marks the keyword index stale before the first commit
    it queues; the writer thread then commits under that lock, and is joined before the lock is let go."""
    run.collection.acquire_writer()
    spec = run.spec()
    by_source = {c.source: c for c in todo}
    jobs = [(c.path, run.known_hash(c), c.groups) for c in todo]
    parser = Parser(spec, parse_processes(run.settings, len(todo)))
    writer = _Writer(run)
    batch = _Batch()
    touched: list[tuple[_Candidate, ParsedFile]] = []
    pending_chunks = 0
    clean = False
    try:
        run.note("reading files")
        for parsed in parser.parsed(jobs):
            run.check_cancel()
            cand = by_source[parsed.source]
            run.stages["read"] += parsed.read_s
            run.stages["chunk"] += parsed.chunk_s
            if parsed.error:
                # nothing of it is touched: a changed file that no longer parses keeps its previous chunks
                run.fail(cand.source, parsed.error)
            elif parsed.unchanged:
                touched.append((cand, parsed))
                if len(touched) >= EMBED_BUFFER:
                    writer.put(run.touch, touched)
                    touched = []
            elif parsed.stream:
                _flush(run, writer, batch)
                batch, pending_chunks = _Batch(), 0
                writer.finish()  # the big file is written by this thread: the writer must be idle
                run.stream(cand, parsed, spec)
                writer = _Writer(run)
            else:
                batch.files.append((cand, parsed))
                pending_chunks += len(parsed.chunks)
                if pending_chunks >= EMBED_BUFFER:
                    _flush(run, writer, batch)
                    batch, pending_chunks = _Batch(), 0
        _flush(run, writer, batch)
        if touched:
            writer.put(run.touch, touched)
        writer.finish()
        clean = True
    finally:
        if not clean:
            writer.drain()
        parser.close(abort=not clean)


def _flush(run: _Run, writer: _Writer, batch: _Batch) -> None:
    if not batch.files:
        return
    run.check_cancel()
    run.embed(batch)
    run.check_cancel()
    run.lexical_stale()  # here, in the thread that holds the writer lock, before the writer thread changes the store
    writer.put(run.commit, batch)


def _finish(run: _Run) -> int | None:
    """Bring the keyword index up to date (under the writer lock, unless another writer is at work: it will, at its
    end) and count the collection's chunks."""
    collection = run.collection
    run.note("updating the keyword index")
    t = time.perf_counter()
    if collection.sync_bm25():
        run.stages["keyword_index"] = time.perf_counter() - t
    if collection.store_is_open:
        return run.store.count()
    return run.manifest.done_chunks()  # the store was never opened: the manifest knows the committed counts


def file_config_key(config_key: str, groups: Sequence[str]) -> str:
    """The manifest key of one file: the run's config key, plus its access groups when it has any (so changing a
    file's groups re-indexes it: its chunks must carry the new ones)."""
    if not groups:
        return config_key
    return hashlib.sha256(f"{config_key}|groups={','.join(sorted(groups))}".encode()).hexdigest()[:16]


def _gone(source: str) -> bool:
    """Whether a file certainly no longer exists (a folder we may not read says nothing: keep its files)."""
    try:
        os.stat(source)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def remove_files(sources: Sequence[str], target: Settings | Wiring, *, embedder: Embedder | None = None) -> int:
    """Remove files (by their absolute path) from the collection: chunks, manifest entries, keyword index; under
    the collection's writer lock. What ``rag ingest --watch`` does when a file is deleted. Returns the number of
    chunks removed.
    """
    wiring = target if isinstance(target, Wiring) else Wiring(target, embedder=embedder)
    collection = wiring.collection()
    try:
        known = collection.manifest.all()
        gone = [s for s in sources if s in known]
        if not gone:
            return 0
        collection.acquire_writer()
        collection.mark_bm25_stale()
        collection.manifest.mark_pending_many(gone)
        removed = sum(collection.store.delete_source(s) for s in gone)
        collection.manifest.remove_many(gone)
        collection.rebuild_bm25()
        return removed
    finally:
        collection.close()


def iter_summary_lines(summary: IngestSummary) -> Iterator[str]:
    """Stage timings as ``name seconds share`` lines (for ``--json`` readers and the benchmark)."""
    work = sum(v for k, v in summary.stages.items() if k in ("read", "chunk", "embed", "write"))
    for k, v in summary.stages.items():
        share = f" {v / work:.0%}" if work and k in ("read", "chunk", "embed", "write") else ""
        yield f"{k} {v:.2f} s{share}"


__all__ = ["Cancelled", "FailedFile", "IngestProgress", "IngestSummary", "discover", "ingest_paths", "remove_files"]
