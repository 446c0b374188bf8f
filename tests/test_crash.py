"""Crashes and races with real processes: ``kill -9`` of ``rag ingest`` at random points, two writers on one
collection, a file killed half-way; after each, ``rag doctor`` must find manifest, store and keyword index in step.

The machinery is in ``tests/reliability.py`` so any ingestion path can be put through the same: the parse processes
(``--workers 2``) and Ray (``--ray``) are, in ``tests/ingest/test_parallel_ingest.py`` and ``test_ray_ingest.py``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path

import pytest

from tests.reliability import (
    RagRunner,
    assert_survives_random_kills,
    kill_at_random_points,
    run_concurrently,
    write_corpus,
)

STORES = {
    "faiss": {"RAG_STORE__BACKEND": "faiss"},
    "qdrant-embedded": {"RAG_STORE__BACKEND": "qdrant", "RAG_STORE__QDRANT_MODE": "embedded"},
}


@pytest.fixture(params=list(STORES))
def runner(request: pytest.FixtureRequest, tmp_path: Path) -> RagRunner:
    if request.param.startswith("qdrant"):
        pytest.importorskip("qdrant_edge")
    data = tmp_path / "data"
    data.mkdir()
    return RagRunner(data, store=STORES[request.param])


def test_kill_9_at_random_points_then_resume_equals_a_clean_run(runner: RagRunner, tmp_path: Path) -> None:
    """The check any ingestion path can reuse (a parallel or a Ray one passes its own arguments)."""
    docs = write_corpus(tmp_path / "docs", 150)
    assert_survives_random_kills(runner, ["ingest", str(docs)], seed=13, times=3)


def test_the_real_rag_ingest_killed_and_resumed_with_the_packaged_model(tmp_path: Path) -> None:
    """The installed entry point and the real embedding model, on FAISS."""
    docs = write_corpus(tmp_path / "docs", 20, words_per_file=300)
    data = tmp_path / "data"
    data.mkdir()
    runner = RagRunner(data, real_model=True)
    assert_survives_random_kills(runner, ["ingest", str(docs)], seed=7, times=2)


def _writing(runner: RagRunner) -> bool:
    lock = runner.data_dir / "collections" / runner.collection / "writer.lock"
    return lock.exists() and lock.read_text().strip() != ""


def test_two_writers_both_land_in_the_keyword_index(runner: RagRunner, tmp_path: Path) -> None:
    """Before, the BM25 stale marker was set before the writer lock was taken and cleared by whichever writer
    finished first: the waiting writer's chunks reached the vector store but never the keyword index."""
    big = write_corpus(tmp_path / "big", 800, prefix="big")  # long enough for the second writer to wait on it
    small = write_corpus(tmp_path / "small", 5, prefix="small", seed=1)
    first = runner.start("ingest", str(big))
    deadline = time.monotonic() + 120
    while not _writing(runner) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second_proc = runner.start("ingest", str(small))  # waits for the writer lock, then writes
    assert first.poll() is None, "the first writer ended before the second started: no race was tested"
    _, second_err = second_proc.communicate(timeout=600)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second_proc.returncode == 0, second_err
    runner.assert_consistent()
    for marker, name in (("markersmall0003", "small0003.md"), ("markerbig0042", "big0042.md")):
        hits = runner.search_sources(marker, "bm25")  # each writer's words are in the keyword index
        assert hits and Path(hits[0]).name == name, (marker, hits[:3])


def test_random_kills_and_concurrent_writers_leave_the_collection_consistent(runner: RagRunner, tmp_path: Path) -> None:
    a = write_corpus(tmp_path / "a", 80, prefix="a")
    b = write_corpus(tmp_path / "b", 40, prefix="b", seed=2)
    rng = random.Random(5)
    outcomes = run_concurrently(runner, [["ingest", str(a)], ["ingest", str(b)], ["ingest", str(a), "--prune"]],
                                stagger=0.4)  # fmt: skip
    for o in outcomes:
        assert o.returncode == 0 or o.one_line_error, o.stderr
    for _ in kill_at_random_points(runner, ["ingest", str(b)], rng, times=2, max_delay=3.0):
        runner.run("ingest", str(a))  # a writer after each crash: cleans up, never trips over the leftovers
    runner.check("ingest", str(a))
    runner.check("ingest", str(b))
    runner.assert_consistent()
    assert len(runner.chunk_ids()) == len(set(runner.chunk_ids()))


# ------------------------------------------------------------------------------------------ a file killed half-way
def _stored_chunks_of(store_db: Path, source: str) -> int:
    try:
        with sqlite3.connect(f"file:{store_db}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM chunks WHERE source = ?", (source,)).fetchone()[0])
    except sqlite3.Error:
        return 0


def test_a_file_killed_half_way_is_never_searchable_in_part_and_the_next_run_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    runner = RagRunner(data)
    small = write_corpus(tmp_path / "small", 3, prefix="small")
    runner.check("ingest", str(small))
    huge = tmp_path / "huge"
    huge.mkdir()
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "lambda"]
    with open(huge / "huge.txt", "w") as f:  # over STREAM_BYTES: loaded, embedded and stored piece by piece
        f.write("zanzibarquartz opens the huge file.\n\n")
        for _ in range(60_000):
            f.write(" ".join(rng.choice(words) for _ in range(50)) + ".\n\n")
    source = str((huge / "huge.txt").resolve())
    store_db = data / "collections" / runner.collection / "faiss" / "chunks.sqlite"
    proc = runner.start("ingest", str(huge))
    deadline = time.monotonic() + 300
    while _stored_chunks_of(store_db, source) < 600 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the huge file finished before it could be killed half-way"
    proc.kill()
    proc.communicate(timeout=60)
    partial = _stored_chunks_of(store_db, source)
    assert partial > 0  # the half-written chunks are in the store...
    for mode in ("bm25", "dense", "hybrid"):  # ...but no search shows them
        assert source not in runner.search_sources("zanzibarquartz opens the huge file", mode), mode
    code, report = runner.doctor()
    assert code == 1 and report["pending"] == [source]
    # the next run, of another folder, removes them and says so
    summary = runner.check("ingest", str(small), "--json").stdout
    cleaned = json.loads(summary)["cleaned_up"]
    assert [c["path"] for c in cleaned] == [source] and f"{partial} partial chunks" in cleaned[0]["reason"]
    assert _stored_chunks_of(store_db, source) == 0
    runner.assert_consistent()
