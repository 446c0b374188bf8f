"""``rag ingest PATH --ray``: the same stages as the local pipeline, on Ray Data, for when one machine is not enough.

The driver (this process) does what needs the collection's state, the workers do the heavy parts::

    driver: discover, stat + hash against the manifest  ->  Ray Data:  parse + chunk as tasks (``parse_file``)
            -> embed in an actor pool (GPU actors when the cluster has GPUs)  ->  driver: group commits (manifest
            pending -> store delete+upsert -> manifest done, exactly the local pipeline's ``commit``)

So chunk ids, access groups and vectors are those of the local path (the same ``parse_file``, the same
``.raggroups``/``--groups`` labels computed by the driver, the same model), and the manifest is still the single
source of truth: a file is ``done`` only after the store acknowledged its chunks, and a ``kill -9`` of the driver at
any point leaves ``pending`` files that the next run (local or Ray) cleans up. The driver holds the collection's
writer lock from its first change to its end, like a local run. A parse task holds one CPU, so it OCRs scanned
pages in its own process on one thread (Ray runs as many tasks as the cluster has CPUs). Writes
go through the driver: for FAISS (a file on the driver's disk) that is the only way; for a Qdrant server or
cluster the store write is one network round trip per batch of ~512 chunks, small next to embedding them.

``address``: ``"local"`` (or None) starts a Ray instance on this machine and stops it at the end; ``"auto"`` joins
the cluster this machine belongs to; ``"ray://head:10001"`` connects to a remote cluster through Ray Client (the
project's ``rag`` and ``ingest`` packages are shipped to it with ``runtime_env``; its image needs the same
dependencies: ``pip install 'rag-private-docs[ray]'``). Files are read by the workers, so on a cluster the paths
must be the same on every node (a shared filesystem).

Example::

    >>> summary = ingest_with_ray(["/shared/corpus"], Settings(), address="ray://head:10001")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ingest.discover import discover
from ingest.parse import ParsedFile, ParseSpec, file_sha256, iter_chunks, parse_file
from ingest.pipeline import (
    EMBED_BUFFER,
    IngestProgress,
    IngestSummary,
    _Batch,
    _Candidate,
    _execute,
    _Run,
    _Writer,
)
from rag.config import Settings
from rag.errors import ConfigError
from rag.types import Chunk, Embedder
from rag.wiring import Wiring

_log = logging.getLogger(__name__)

LOCAL_OBJECT_STORE_MB = 512  # a local instance: Ray's default (30% of RAM) is far more than ingestion needs
CPU_EMBED_BATCH, GPU_EMBED_BATCH = 256, 2048  # rows per call of an embedding actor, by device


# ------------------------------------------------------------------------------------------------ the workers
def parse_rows(row: dict[str, Any], spec: ParseSpec) -> Iterator[dict[str, Any]]:
    """A Ray task: one file -> one row per chunk (``n`` = the file's chunk count on every row once known), or one
    row with ``error`` set. Large files are streamed: their rows carry ``n = -1`` until the last one. ``text`` is
    what the model embeds (``Chunk.embedding_text``); ``groups`` (JSON) are the file's access groups."""
    path = Path(row["path"])
    groups = tuple(json.loads(row["groups"]))
    parsed = parse_file(path, spec, None, groups)
    base = {"source": str(path), "file_hash": parsed.file_hash, "error": parsed.error or "",
            "read_s": parsed.read_s, "chunk_s": parsed.chunk_s, "ocr_pages": parsed.ocr_pages}
    if parsed.error:
        yield {**base, "n": 0, "seq": 0, "text": "", "chunk": ""}
        return
    if not parsed.stream:
        n = len(parsed.chunks)
        for i, c in enumerate(parsed.chunks):
            yield {**base, "n": n, "seq": i, "text": c.embedding_text, "chunk": json.dumps(dataclasses.asdict(c))}
            base["read_s"] = base["chunk_s"] = 0.0
            base["ocr_pages"] = 0
        return
    previous: Chunk | None = None
    i = 0
    ocr_pages: set[tuple[str, int | None, float | None]] = set()
    try:
        for c in iter_chunks(path, spec, parsed.file_hash, groups, ocr_pages):
            if previous is not None:
                yield {**base, "n": -1, "seq": i - 1, "text": previous.embedding_text,
                       "chunk": json.dumps(dataclasses.asdict(previous))}
            previous, i = c, i + 1
    except Exception as e:
        from ingest.parse import describe_error

        yield {**base, "n": 0, "seq": i, "error": describe_error(e, path), "text": "", "chunk": ""}
        return
    if previous is None:
        yield {**base, "n": 0, "seq": 0, "error": "no text to index", "text": "", "chunk": ""}
        return
    yield {**base, "n": i, "seq": i - 1, "text": previous.embedding_text, "ocr_pages": len(ocr_pages),
           "chunk": json.dumps(dataclasses.asdict(previous))}


class EmbedActor:
    """A Ray actor holding one model; ``__call__`` embeds a batch of rows (error rows get a zero vector)."""

    def __init__(self, make_embedder: Callable[[], Embedder]) -> None:
        self.embedder = make_embedder()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = batch["text"]
        keep = np.array([bool(t) for t in texts], dtype=bool)
        vectors = np.zeros((len(texts), self.embedder.dim), dtype=np.float32)
        embedded = np.zeros(len(texts), dtype=np.int64)
        seconds = np.zeros(len(texts), dtype=np.float64)
        if keep.any():
            before = getattr(self.embedder, "misses", None)
            t0 = time.perf_counter()
            vectors[keep] = self.embedder.embed_documents([str(text) for text in texts[keep]])
            seconds[0] = time.perf_counter() - t0
            # texts the model embedded (the rest came from the embedding cache), reported on the first row
            embedded[0] = (self.embedder.misses - before) if before is not None else int(keep.sum())  # type: ignore[attr-defined]
        batch["vector"] = vectors
        batch["embedded"] = embedded
        batch["embed_s"] = seconds  # the actor's time, on the first row: the driver adds it to the stage
        return batch


@dataclasses.dataclass(frozen=True)
class ModelFactory:
    """Builds the configured embedder inside an actor (picklable: settings travel, not the model)."""

    settings_json: str

    def __call__(self) -> Embedder:
        from rag.embed_cache import CachedEmbedder, EmbeddingCache, model_key
        from rag.embedders import load_embedder

        settings = Settings.model_validate_json(self.settings_json)
        model = load_embedder(settings.embedding, onnx_cache_dir=settings.onnx_cache_path)
        if not settings.embedding.cache:
            return model
        # each node keeps its own cache file: correct anywhere, a saving where files change and come back
        return CachedEmbedder(model, EmbeddingCache(settings.embedding_cache_path, model_key(model), model.dim))


@dataclasses.dataclass(frozen=True)
class GivenEmbedder:
    """A ready embedder sent to the actors as it is (tests, custom models)."""

    embedder: Any

    def __call__(self) -> Embedder:
        return self.embedder  # type: ignore[no-any-return]


def _embedder_factory(run: _Run, embedder: Embedder | None) -> Callable[[], Embedder]:
    """What each embedding actor builds its model with: a ready embedder handed to this run (an argument, or the
    wiring's: a test's fake, ``rag.wiring.overriding``) travels as it is when it can be pickled; otherwise every
    actor loads the configured model itself (settings travel, not the model)."""
    given = embedder or run.wiring.given_embedder
    if given is not None and _picklable(given):
        return GivenEmbedder(given)
    return ModelFactory(run.settings.model_dump_json())


def _picklable(obj: object) -> bool:
    try:
        pickle.dumps(obj)
    except Exception:
        return False
    return True


# ------------------------------------------------------------------------------------------------ the driver
def ingest_with_ray(
    paths: Sequence[str | Path],
    target: Settings | Wiring,
    *,
    address: str | None = None,
    prune: bool = False,
    progress: Callable[[IngestProgress], None] | None = None,
    embedder: Embedder | None = None,
    cancel: threading.Event | None = None,
    embed_actors: int | None = None,
    groups: Sequence[str] = (),
) -> IngestSummary:
    """Ingest like ``ingest_paths``, with parsing and embedding on Ray (see the module docstring)."""
    from ingest.access import file_groups

    t0 = time.perf_counter()
    wiring = target if isinstance(target, Wiring) else Wiring(target, embedder=embedder)
    settings = wiring.settings
    found = discover(paths, settings.ingest.include, follow_symlinks_outside=settings.ingest.follow_symlinks_outside)
    run = _Run(wiring, progress, cancel)
    run.groups = file_groups(found.files, paths, groups)
    run.total = len(found.files)
    run.counts.failed.extend(found.failed)  # folders and links that could not be read

    def on_ray(todo: list[_Candidate]) -> None:
        started = _connect(address)
        try:
            t = time.perf_counter()
            _process(run, todo, embedder, embed_actors)
            run.stages["ray"] = time.perf_counter() - t
        finally:
            if started:
                import ray

                ray.shutdown()

    return _execute(run, found, t0, prune=prune, plan=lambda files: _hash_against_manifest(run, run.plan(files)),
                    process=on_ray)


def _hash_against_manifest(run: _Run, candidates: list[_Candidate]) -> list[_Candidate]:
    """The driver hashes files whose size or mtime changed: same bytes -> unchanged (touched), else to do."""
    todo, touched = [], []
    for cand in candidates:
        known = run.known_hash(cand)
        if known:
            try:
                if file_sha256(cand.path) == known:
                    touched.append((cand, ParsedFile(cand.path, known, unchanged=True)))
                    continue
            except OSError:
                pass  # the task reports what is wrong with it
        todo.append(cand)
    if touched:
        run.collection.acquire_writer()
        run.touch(touched)
    return todo


def _connect(address: str | None) -> bool:
    """Connect to (or start) Ray; True when this call started a local instance that it must stop."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("rag ingest --ray needs Ray: pip install 'rag-private-docs[ray]'") from e
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address in (None, "", "local"):
        ray.init(num_cpus=os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE_MB << 20, **quiet)  # type: ignore[arg-type]
        return True
    import ingest
    import rag

    # the cluster gets this very code (its image provides the dependencies)
    env = {"py_modules": [os.path.dirname(rag.__file__), os.path.dirname(ingest.__file__)]}
    ray.init(address=address, runtime_env=env, **quiet)  # type: ignore[arg-type]
    return False


def _process(run: _Run, todo: list[_Candidate], embedder: Embedder | None, embed_actors: int | None) -> None:
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    actors = embed_actors or (gpus if gpus else max(1, cpus // 4))
    spec = run.spec()
    # a task holds one CPU: it OCRs in its own process, on one thread (never a pool per task)
    spec = dataclasses.replace(spec, options=dataclasses.replace(spec.options, ocr_workers=1, ocr_threads=1))
    factory = _embedder_factory(run, embedder)
    run.collection.acquire_writer()  # before the cluster does any work: a second writer waits, or fails now
    by_source = {c.source: c for c in todo}
    items = [{"path": c.source, "groups": json.dumps(list(c.groups))} for c in todo]
    ds: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=min(len(items), max(cpus * 4, 1)))
    ds = ds.flat_map(functools.partial(parse_rows, spec=spec), num_cpus=1)
    ds = ds.map_batches(
        EmbedActor, fn_constructor_args=(factory,), batch_size=GPU_EMBED_BATCH if gpus else CPU_EMBED_BATCH,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if gpus else 0,
        num_cpus=1 if not gpus else 0,
    )
    writer = _Writer(run)
    collected: dict[str, dict[int, tuple[Chunk, np.ndarray]]] = {}
    totals: dict[str, int] = {}
    hashes: dict[str, str] = {}
    ocr_pages: dict[str, int] = {}
    failed: set[str] = set()
    batch = _Batch()
    vectors: list[np.ndarray] = []
    clean = False
    try:
        run.note("parsing and embedding on Ray")
        for rows in ds.iter_batches(batch_size=256, batch_format="numpy", prefetch_batches=2):
            run.check_cancel()
            t = time.perf_counter()
            for i in range(len(rows["source"])):
                source = str(rows["source"][i])
                run.counts.embedded += int(rows["embedded"][i])
                run.stages["embed"] += float(rows["embed_s"][i])
                run.stages["read"] += float(rows["read_s"][i])
                run.stages["chunk"] += float(rows["chunk_s"][i])
                ocr_pages[source] = ocr_pages.get(source, 0) + int(rows["ocr_pages"][i])
                if source in failed:
                    continue
                if rows["error"][i]:
                    failed.add(source)
                    collected.pop(source, None)  # a large file that failed half way: none of it is kept
                    run.fail(source, str(rows["error"][i]))  # a changed file keeps its previous chunks
                    continue
                chunk = Chunk(**json.loads(str(rows["chunk"][i])))
                collected.setdefault(source, {})[int(rows["seq"][i])] = (chunk, rows["vector"][i])
                hashes[source] = str(rows["file_hash"][i])
                if int(rows["n"][i]) > 0:
                    totals[source] = int(rows["n"][i])
                if source in totals and len(collected[source]) == totals[source]:
                    parts = collected.pop(source)
                    ordered = [parts[k] for k in sorted(parts)]
                    parsed = ParsedFile(by_source[source].path, hashes.pop(source), [c for c, _ in ordered],
                                        ocr_pages=ocr_pages.pop(source, 0))  # fmt: skip
                    batch.files.append((by_source[source], parsed))
                    batch.chunks.extend(parsed.chunks)
                    vectors.extend(v for _, v in ordered)
                    if len(batch.chunks) >= EMBED_BUFFER:
                        batch.vectors = np.stack(vectors)
                        run.lexical_stale()  # in this thread, which holds the writer lock
                        writer.put(run.commit, batch)
                        batch, vectors = _Batch(), []
            run.stages["collect"] = run.stages.get("collect", 0.0) + time.perf_counter() - t
        if batch.files:
            batch.vectors = np.stack(vectors)
            run.lexical_stale()
            writer.put(run.commit, batch)
        writer.finish()
        clean = True
    finally:
        if not clean:
            writer.drain()
    incomplete = sorted(collected)
    for source in incomplete:  # cannot happen unless Ray lost rows: never commit a partial file
        run.fail(source, "incomplete results from Ray (some chunks were lost); run the command again")


__all__ = ["EmbedActor", "ingest_with_ray", "parse_rows"]
