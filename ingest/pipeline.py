"""Ingestion: discover -> hash -> load -> chunk -> embed (batched across files) -> upsert, with a manifest.

``ingest_paths`` is what ``rag ingest`` runs. Files are parsed and chunked by a small thread pool while the main
thread embeds the previous batch (pypdf is pure Python; the model's matrix maths releases the GIL, so the two
overlap). Each file is committed on its own: the manifest marks it ``pending`` before its old chunks are touched and
``done`` after its new ones are in the store, so a crash or Ctrl-C loses nothing committed and the next run resumes
where this one stopped. Unchanged files (same size and mtime, or same content hash) are skipped without loading the
embedding model; a changed file replaces exactly its own chunks; ``prune=True`` drops files that no longer exist.

Example::

    >>> summary = ingest_paths(["~/papers"], Settings(collection="papers"))  # doctest: +SKIP
    >>> summary.new, summary.chunks_added, [f.reason for f in summary.failed]  # doctest: +SKIP
    (41, 2210, ['encrypted PDF (password protected): decrypt it first, e.g. qpdf --decrypt'])
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ingest.chunk import Chunker
from ingest.discover import FailedFile, discover
from ingest.formats.common import LoadOptions
from ingest.load import load_file
from rag.collection import Collection
from rag.config import Settings
from rag.errors import IngestError
from rag.manifest import FileRecord
from rag.types import Chunk, Document, Embedder, VectorStore
from rag.wiring import Wiring

_log = logging.getLogger(__name__)

LOADER_VERSION = "2"  # bump when loaders or chunking change what a file turns into: every file is re-ingested
EMBED_BUFFER = 512  # chunks gathered across files before one embedding call (bounded memory, full batches)
PARSE_AHEAD_FILES = 16  # files parsed ahead while the model embeds: the overlap, with bounded memory
STREAM_BYTES = 16 << 20  # files larger than this are loaded, chunked and embedded piece by piece (bounded memory)


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
class _Prepared:
    cand: _Candidate
    file_hash: str = ""
    chunks: list[Chunk] = field(default_factory=list)
    stream: bool = False
    unchanged: bool = False
    error: str | None = None
    ocr_pages: int = 0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------------ pipeline
class _Run:
    """One ingestion run; the store and the model are opened only when some file needs them."""

    def __init__(self, wiring: Wiring, progress: Callable[[IngestProgress], None] | None) -> None:
        self.settings = wiring.settings
        self.wiring = wiring
        self.collection: Collection = wiring.collection()
        self._chunker: Chunker | None = None
        self.progress = progress
        self.counts = _Counts()
        self.total = 0
        self.manifest = self.collection.manifest
        self._stale_marked = False
        self.groups: dict[Path, tuple[str, ...]] = {}  # access groups per file (ingest.access)
        self.keep_open = False  # the caller shares the collection (rag serve): flush it, do not close it
        self.options = LoadOptions.from_settings(self.settings.ingest)

    @property
    def embedder(self) -> Embedder:
        return self.wiring.embedder()

    @property
    def store(self) -> VectorStore:
        return self.collection.store

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            size = self.settings.chunk.size_tokens
            max_len = getattr(self.embedder, "max_seq_length", None)
            if max_len:
                size = min(size, int(max_len) - 2)  # room for [CLS]/[SEP]: the model must read the whole chunk
            overlap = min(self.settings.chunk.overlap_tokens, size // 2)
            count = getattr(self.embedder, "count_tokens", None) or (lambda t: max(1, len(t) // 4))
            self._chunker = Chunker(count, size, overlap)
        return self._chunker

    @property
    def config_key(self) -> str:
        c = self.settings.chunk
        emb = self.wiring.embedder().name  # building an embedder loads no model: its name costs nothing
        key = f"{emb}|{c.size_tokens}|{c.overlap_tokens}|{LOADER_VERSION}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def report(self, current: str) -> None:
        """One more file is finished (committed, unchanged or failed)."""
        self.counts.done += 1
        self.note(current)

    def note(self, current: str) -> None:
        """Say what is happening now (parsing a file, embedding a batch) without finishing a file."""
        if self.progress:
            self.progress(IngestProgress(self.counts.done, self.total, current, self.counts.chunks_added))

    def fail(self, source: str, reason: str) -> None:
        self.counts.failed.append(FailedFile(source, reason))
        self.report(source)

    # -- planning --------------------------------------------------------------------------------------------
    def plan(self, files: list[Path]) -> list[_Candidate]:
        """Files that may need work; those unchanged by size and mtime are counted and dropped here."""
        records = self.manifest.all()
        limit = self.settings.ingest.max_file_mb
        todo = []
        for path in files:
            source = str(path)
            file_groups = self.groups.get(path, ())
            key = file_config_key(self.config_key, file_groups)
            try:
                st = path.stat()
            except FileNotFoundError:
                self.fail(source, "file vanished during the run (deleted or moved)")
                continue
            except OSError as e:
                self.fail(source, f"cannot read file: {e.strerror}")
                continue
            rec = records.get(source)
            if st.st_size > limit * 1024 * 1024:
                self.fail(source, f"file is {st.st_size / 2**20:.1f} MB, over the {limit:g} MB limit "
                          "(raise RAG_INGEST__MAX_FILE_MB to include it)")
                continue
            if (rec and rec.status == "done" and rec.config_key == key and rec.size == st.st_size
                    and rec.mtime_ns == st.st_mtime_ns):
                self.counts.unchanged += 1
                self.report(source)
                continue
            todo.append(_Candidate(path, source, st.st_size, st.st_mtime_ns, rec, file_groups, key))
        return todo

    # -- parsing (worker threads) ----------------------------------------------------------------------------
    def prepare(self, cand: _Candidate) -> _Prepared:
        prep = _Prepared(cand)
        try:
            prep.file_hash = file_sha256(cand.path)
            rec = cand.record
            if rec and rec.status == "done" and rec.config_key == cand.key and rec.file_hash == prep.file_hash:
                prep.unchanged = True  # touched, not changed: same bytes
                return prep
            if cand.size > STREAM_BYTES and cand.path.suffix.lower() not in (".html", ".htm"):
                prep.stream = True  # the main thread streams it: text piece by piece, PDFs page by page
                return prep
            ocr_pages: set[tuple[str, int | None, float | None]] = set()
            docs = _count_ocr(load_file(cand.path, prep.file_hash, self.options), ocr_pages)
            prep.chunks = _dedup(_with_groups(self.chunker.split_all(docs), cand.groups))
            prep.ocr_pages = len(ocr_pages)
            if not prep.chunks:
                prep.error = "no text to index"
        except FileNotFoundError:
            prep.error = "file vanished during the run (deleted or moved)"
        except IngestError as e:
            prep.error = str(e)
        except PermissionError as e:
            prep.error = f"permission denied: {e.strerror}; check the file's permissions"
        except OSError as e:
            prep.error = f"cannot read file: {e}"
        except Exception as e:  # a loader bug on one odd file must not stop the batch; the reason is kept
            _log.exception("unexpected error loading %s", cand.path)
            prep.error = f"unexpected {type(e).__name__} while loading: {e}"
        return prep

    def prepared(self, todo: list[_Candidate]) -> Iterator[_Prepared]:
        """``prepare`` over ``todo`` in a thread pool, results in order, at most ``PARSE_AHEAD_FILES`` ahead."""
        workers = max(1, self.settings.ingest.workers)
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rag-parse")
        queue: deque[Future[_Prepared]] = deque()
        it = iter(todo)
        try:
            for cand in it:
                queue.append(executor.submit(self.prepare, cand))
                if len(queue) >= PARSE_AHEAD_FILES:
                    break
            while queue:
                result = queue.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    queue.append(executor.submit(self.prepare, nxt))
                yield result
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    # -- committing ------------------------------------------------------------------------------------------
    def lexical_stale(self) -> None:
        """Mark the BM25 index out of date before the store changes (a crash before the rebuild is then seen)."""
        if not self._stale_marked:
            self.collection.mark_bm25_stale()
            self._stale_marked = True

    def commit(self, prep: _Prepared, chunks: Sequence[Chunk], vectors: Any) -> None:
        cand = prep.cand
        self.lexical_stale()
        self.manifest.mark_pending(cand.source)
        removed = self.store.delete_source(cand.source)
        self.store.upsert(chunks, vectors)
        self._done(prep, len(chunks), removed)

    def _done(self, prep: _Prepared, n_chunks: int, removed: int) -> None:
        cand = prep.cand
        self.manifest.mark_done(
            FileRecord(cand.source, prep.file_hash, cand.size, cand.mtime_ns, cand.key or self.config_key, n_chunks)
        )
        if cand.record is None or not cand.record.file_hash:
            self.counts.new += 1
        else:
            self.counts.changed += 1
        self.counts.chunks_added += n_chunks
        self.counts.chunks_removed += removed
        self.counts.ocr_pages += prep.ocr_pages
        self.report(cand.source)

    def flush(self, batch: list[_Prepared]) -> None:
        if not batch:
            return
        texts = [c.embedding_text for p in batch for c in p.chunks]
        self.note(f"embedding {len(texts)} chunks of {len(batch)} files")
        vectors = self.embedder.embed_documents(texts)
        i = 0
        for prep in batch:
            n = len(prep.chunks)
            self.commit(prep, prep.chunks, vectors[i : i + n])
            i += n
        batch.clear()

    def stream(self, prep: _Prepared) -> None:
        """A big file: load, chunk, embed and upsert in bounded pieces; marked done in the manifest at the end."""
        cand = prep.cand
        self.lexical_stale()
        self.manifest.mark_pending(cand.source)
        removed = self.store.delete_source(cand.source)
        n = 0
        buffer: list[Chunk] = []
        seen: set[str] = set()
        ocr_pages: set[tuple[str, int | None, float | None]] = set()
        try:
            docs = _count_ocr(load_file(cand.path, prep.file_hash, self.options), ocr_pages)
            for chunk in _with_groups(self.chunker.split_all(docs), cand.groups):
                if chunk.id in seen:
                    continue
                seen.add(chunk.id)
                buffer.append(chunk)
                if len(buffer) >= EMBED_BUFFER:
                    self.store.upsert(buffer, self.embedder.embed_documents([c.embedding_text for c in buffer]))
                    n += len(buffer)
                    buffer = []
            if buffer:
                self.store.upsert(buffer, self.embedder.embed_documents([c.embedding_text for c in buffer]))
                n += len(buffer)
        except (IngestError, OSError) as e:
            self.store.delete_source(cand.source)  # no half-indexed file
            self.manifest.remove(cand.source)
            self.counts.chunks_removed += removed
            reason = "file vanished during the run (deleted or moved)" if isinstance(e, FileNotFoundError) else str(e)
            self.fail(cand.source, reason)
            return
        if n == 0:
            self.manifest.remove(cand.source)
            self.fail(cand.source, "no text to index")
            return
        prep.ocr_pages = len(ocr_pages)
        self._done(prep, n, removed)

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
            shutdown_pool()  # OCR worker processes do not outlive the run


def _with_groups(chunks: Iterator[Chunk], groups: tuple[str, ...]) -> Iterator[Chunk]:
    return (replace(c, groups=groups) for c in chunks) if groups else chunks


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


def _count_ocr(docs: Iterator[Document], pages: set[tuple[str, int | None, float | None]]) -> Iterator[Document]:
    """Pass ``docs`` through, noting each OCR'd page (or image) in ``pages``."""
    for doc in docs:
        if doc.ocr:  # a page cut into sections gives several documents with the same OCR confidence
            pages.add((doc.file_type, doc.page, doc.ocr_confidence))
        yield doc


def _dedup(chunks: Iterator[Chunk]) -> list[Chunk]:
    seen: set[str] = set()
    out = []
    for c in chunks:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out


def ingest_paths(
    paths: Sequence[str | Path],
    target: Settings | Wiring,
    *,
    prune: bool = False,
    progress: Callable[[IngestProgress], None] | None = None,
    embedder: Embedder | None = None,
    groups: Sequence[str] = (),
    keep_open: bool = False,
) -> IngestSummary:
    """Ingest files and folders into the collection of ``target`` (settings, or a wiring that holds the parts);
    see the module docstring. ``embedder`` is a ready model to use (the UI passes its cached one).
    ``groups``: the access groups of every file that no ``.raggroups`` file covers (see ``ingest.access``).
    ``keep_open``: the wiring's collection stays open (flushed) for a caller that keeps serving from it.

    Raises ``UsageError`` for a path that does not exist and ``StoreError`` when the collection cannot be opened
    or written; problems with single files are reported in ``IngestSummary.failed`` instead.
    """
    t0 = time.perf_counter()
    wiring = target if isinstance(target, Wiring) else Wiring(target, embedder=embedder)
    settings = wiring.settings
    files, skipped, unreadable = discover(
        paths, settings.ingest.include, follow_symlinks_outside=settings.ingest.follow_symlinks_outside
    )
    from ingest.access import file_groups

    access = file_groups(files, paths, groups)
    run = _Run(wiring, progress)
    run.groups, run.keep_open = access, keep_open
    run.total = len(files)
    run.counts.failed.extend(unreadable)  # folders and links that could not be read
    try:
        # Files a killed run left half-done lose their partial chunks first (they are ingested again below if
        # they are among ``paths``), and the summary says so.
        cleaned = [
            FailedFile(source, f"left half-done by an interrupted run: its {n} partial chunks were removed")
            for source, n in run.collection.clean_pending()
        ]
        todo = run.plan(files)
        batch: list[_Prepared] = []
        pending_chunks = 0
        run.note("reading files")
        for prep in run.prepared(todo):
            run.note(f"read {prep.cand.path.name}")
            if prep.error:
                run.fail(prep.cand.source, prep.error)
            elif prep.unchanged:
                run.manifest.touch(prep.cand.source, prep.cand.size, prep.cand.mtime_ns)
                run.counts.unchanged += 1
                run.report(prep.cand.source)
            elif prep.stream:
                run.flush(batch)
                pending_chunks = 0
                run.stream(prep)
            else:
                batch.append(prep)
                pending_chunks += len(prep.chunks)
                if pending_chunks >= EMBED_BUFFER:
                    run.flush(batch)
                    pending_chunks = 0
        run.flush(batch)
        if prune:
            run.prune({str(f) for f in files}, frozenset(f.path for f in skipped))
        # Rebuilt (under the writer lock) when this run changed the store, when an earlier run died before
        # rebuilding it, or when its chunk count is not the collection's.
        collection = run.collection
        collection.sync_bm25()
        if collection.store_is_open:
            chunks_total: int | None = run.store.count()
        else:  # the store was never opened: the manifest knows the counts of committed files
            chunks_total = sum(r.chunks for r in run.manifest.all().values() if r.status == "done")
    finally:
        run.close()
    c = run.counts
    return IngestSummary(
        files_seen=len(files),
        new=c.new,
        changed=c.changed,
        unchanged=c.unchanged,
        failed=tuple(c.failed),
        chunks_added=c.chunks_added,
        chunks_removed=c.chunks_removed,
        pruned_files=c.pruned,
        seconds=time.perf_counter() - t0,
        skipped=tuple(skipped),
        collection=settings.collection,
        chunks_total=chunks_total,
        cleaned_up=tuple(cleaned),
        ocr_pages=c.ocr_pages,
    )


__all__ = ["FailedFile", "IngestProgress", "IngestSummary", "discover", "ingest_paths"]
