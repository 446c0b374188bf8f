"""The parse step of ingestion: one file -> its chunks, as a pure function of the file and a ``ParseSpec``.

``parse_file`` reads a file, hashes it, loads its text (``ingest.load``) and splits it into chunks
(``ingest.chunk``), labelled with the file's access groups. It touches no store, no manifest and no model, and
everything it needs travels in a small picklable ``ParseSpec`` (chunk size, overlap, the model's token counter, the
loaders' ``LoadOptions``), so the same function runs in the calling thread, in a worker process of ``rag ingest``'s
pool, or in a Ray task on another machine, with the same chunk ids.

OCR (scanned PDF pages, images) has a process pool of its own (``ingest.formats.ocr``: ``RAG_INGEST__OCR_WORKERS``,
one per core by default). When files are parsed by several processes at once, each of them OCRs with its share of
that budget (``ParseSpec.for_processes``), so N parse processes never start N pools of one worker per core.

Example::

    >>> spec = ParseSpec(size_tokens=64, overlap_tokens=8, count_tokens=TokenCounter("chars"))
    >>> parsed = parse_file(Path("notes.md"), spec)  # doctest: +SKIP
    >>> parsed.error, len(parsed.chunks), parsed.chunks[0].source  # doctest: +SKIP
    (None, 3, '/home/me/notes.md')
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ingest.chunk import Chunker
from ingest.formats.common import LoadOptions
from ingest.load import load_file
from rag.embedders import TokenCounter
from rag.errors import IngestError
from rag.types import Chunk, Document

_log = logging.getLogger(__name__)

STREAM_BYTES = 16 << 20  # files larger than this are loaded, chunked and embedded piece by piece (bounded memory)
VANISHED = "file vanished during the run (deleted or moved)"


@dataclass(frozen=True)
class ParseSpec:
    """What shapes a file's chunks. Picklable: it is sent to worker processes and Ray tasks."""

    size_tokens: int
    overlap_tokens: int
    count_tokens: Callable[[str], int]  # a picklable counter of the embedding model's tokens (rag.embedders)
    stream_bytes: int = STREAM_BYTES
    options: LoadOptions = field(default_factory=LoadOptions)  # how loaders read files (OCR engine, workers, ...)

    @classmethod
    def for_model(cls, size_tokens: int, overlap_tokens: int, embedder: Any,
                  options: LoadOptions | None = None) -> ParseSpec:  # fmt: skip
        """The spec for chunks that ``embedder`` will embed: sizes in its tokens, capped to what it reads whole."""
        max_len = getattr(embedder, "max_seq_length", None)
        if max_len:
            size_tokens = min(size_tokens, int(max_len) - 2)  # room for [CLS]/[SEP]: the model must read it all
        overlap = min(overlap_tokens, size_tokens // 2)
        count = getattr(embedder, "token_counter", None) or getattr(embedder, "count_tokens", None)
        return cls(size_tokens, overlap, count or TokenCounter("chars"), stream_bytes=STREAM_BYTES,
                   options=options or LoadOptions())  # fmt: skip

    def for_processes(self, processes: int, cores: int | None = None) -> ParseSpec:
        """The spec each of ``processes`` parse processes gets: the OCR budget (``ocr_workers`` processes, the
        machine's cores as threads) shared among them, so the machine runs at most about ``ocr_workers`` OCR
        processes and ``cores`` OCR threads however many files are parsed at once.

        >>> spec = ParseSpec(256, 32, TokenCounter("chars"), options=LoadOptions(ocr_workers=16))
        >>> o = spec.for_processes(15, cores=16).options
        >>> o.ocr_workers, o.ocr_threads   # each parse process OCRs in-process, on one thread
        (1, 1)
        >>> o = spec.for_processes(4, cores=16).options
        >>> o.ocr_workers, o.ocr_threads   # 4 OCR processes of one thread each, per parse process
        (4, 4)
        """
        if processes <= 1:
            return self  # one parse process (or thread): OCR as configured, with its own pool
        cores = cores or os.cpu_count() or 1
        o = self.options
        return replace(self, options=replace(o, ocr_workers=max(1, o.ocr_workers // processes),
                                             ocr_threads=max(1, cores // processes)))  # fmt: skip


@dataclass
class ParsedFile:
    """What parsing one file gave: its chunks, or why not. ``read_s``/``chunk_s`` are seconds spent per stage."""

    path: Path
    file_hash: str = ""
    chunks: list[Chunk] = field(default_factory=list)
    error: str | None = None
    unchanged: bool = False  # same bytes as the hash the caller already has: nothing to do
    stream: bool = False  # too large to hold whole: the caller loads, chunks and embeds it piece by piece
    read_s: float = 0.0
    chunk_s: float = 0.0
    ocr_pages: int = 0  # pages (or images) whose text was read by OCR

    @property
    def source(self) -> str:
        return str(self.path)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


_CHUNKERS: dict[tuple[int, int, str], Chunker] = {}


def chunker_for(spec: ParseSpec) -> Chunker:
    """One ``Chunker`` per spec and process (its splitters and the tokenizer load once)."""
    key = (spec.size_tokens, spec.overlap_tokens, repr(spec.count_tokens))
    chunker = _CHUNKERS.get(key)
    if chunker is None:
        chunker = _CHUNKERS[key] = Chunker(spec.count_tokens, spec.size_tokens, spec.overlap_tokens)
    return chunker


def parse_file(path: Path, spec: ParseSpec, known_hash: str | None = None,
               groups: Sequence[str] = ()) -> ParsedFile:  # fmt: skip
    """Hash, load and chunk ``path``; every chunk carries ``groups`` (its access groups). Never raises for a problem
    of the file: ``error`` says what it is.

    ``known_hash`` is the content hash on record: when the file still has it, ``unchanged`` is set and the file is
    not loaded. A file larger than ``spec.stream_bytes`` (other than HTML, which is parsed whole) comes back with
    ``stream`` set and no chunks: the caller streams it with ``iter_chunks``.
    """
    parsed = ParsedFile(path)
    t0 = time.perf_counter()
    try:
        parsed.file_hash = file_sha256(path)
        if known_hash and parsed.file_hash == known_hash:
            parsed.unchanged = True  # touched, not changed: same bytes
            return parsed
        if path.stat().st_size > spec.stream_bytes and path.suffix.lower() not in (".html", ".htm"):
            parsed.stream = True
            return parsed
        ocr_pages: set[tuple[str, int | None, float | None]] = set()
        docs = list(count_ocr(load_file(path, parsed.file_hash, spec.options), ocr_pages))
        parsed.ocr_pages = len(ocr_pages)
        t1 = time.perf_counter()
        parsed.read_s = t1 - t0
        parsed.chunks = dedup(with_groups(chunker_for(spec).split_all(docs), groups))
        parsed.chunk_s = time.perf_counter() - t1
        if not parsed.chunks:
            parsed.error = "no text to index"
    except Exception as e:
        parsed.error = describe_error(e, path)
        parsed.chunks = []
    if not parsed.read_s:
        parsed.read_s = time.perf_counter() - t0
    return parsed


def iter_chunks(path: Path, spec: ParseSpec, file_hash: str, groups: Sequence[str] = (),
                ocr_pages: set[tuple[str, int | None, float | None]] | None = None) -> Iterator[Chunk]:  # fmt: skip
    """The chunks of a (large) file, piece by piece: text files in pieces, PDFs page by page; ids de-duplicated.
    OCR'd pages are noted in ``ocr_pages`` when given."""
    seen: set[str] = set()
    docs = count_ocr(load_file(path, file_hash, spec.options), ocr_pages if ocr_pages is not None else set())
    for chunk in with_groups(chunker_for(spec).split_all(docs), groups):
        if chunk.id not in seen:
            seen.add(chunk.id)
            yield chunk


def with_groups(chunks: Iterable[Chunk], groups: Sequence[str]) -> Iterable[Chunk]:
    """``chunks`` labelled with the file's access groups (``ingest.access``); unchanged when it has none."""
    if not groups:
        return chunks
    labels = tuple(groups)
    return (replace(c, groups=labels) for c in chunks)


def count_ocr(docs: Iterable[Document], pages: set[tuple[str, int | None, float | None]]) -> Iterator[Document]:
    """Pass ``docs`` through, noting each OCR'd page (or image) in ``pages``."""
    for doc in docs:
        if doc.ocr:  # a page cut into sections gives several documents with the same OCR confidence
            pages.add((doc.file_type, doc.page, doc.ocr_confidence))
        yield doc


def describe_error(e: BaseException, path: Path) -> str:
    """The reason a user reads in the summary for an exception raised while reading ``path``."""
    if isinstance(e, FileNotFoundError):
        return VANISHED
    if isinstance(e, IngestError):
        return str(e)
    if isinstance(e, PermissionError):
        return f"permission denied: {e.strerror}; check the file's permissions"
    if isinstance(e, OSError):
        return f"cannot read file: {e}"
    # a loader bug on one odd file must not stop the batch; the reason is kept
    _log.error("unexpected error loading %s", path, exc_info=e)
    return f"unexpected {type(e).__name__} while loading: {e}"


def dedup(chunks: Iterable[Chunk]) -> list[Chunk]:
    seen: set[str] = set()
    out = []
    for c in chunks:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out


__all__ = ["ParseSpec", "ParsedFile", "count_ocr", "dedup", "file_sha256", "iter_chunks", "parse_file", "with_groups"]
