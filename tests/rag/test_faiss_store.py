"""The FAISS store on disk: persistence, atomic index files, rebuild from SQLite, HNSW deletes, filters, readers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import StoreError, UsageError
from rag.filters import matches
from rag.stores.faiss_store import FaissStore
from rag.types import Chunk
from tests.fakes import store_for

DIM = 16


def _chunks(n: int, source: str = "/docs/a.txt", file_type: str = "txt", start_id: int = 0) -> list[Chunk]:
    return [
        Chunk(id=f"{source}#{start_id + i}", text=f"chunk {start_id + i} of {source}", source=source,
              page=(i % 3) + 1 if file_type == "pdf" else None, start=i * 10, end=i * 10 + 9,
              content_hash=f"h{i}", file_hash="f", file_type=file_type)
        for i in range(n)
    ]


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=["flat", "hnsw", "ivfpq"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _open(path: Path, kind: str, **kw: object) -> FaissStore:
    return FaissStore(path, DIM, "model-x", index_kind=kind, **kw)  # type: ignore[arg-type]


def test_persists_and_finds_exact_neighbours(tmp_path: Path, kind: str) -> None:
    vecs = _vectors(200)
    with _open(tmp_path, kind) as store:
        store.upsert(_chunks(200), vecs)
    assert len(list(tmp_path.glob("index-*.faiss"))) == 1
    with _open(tmp_path, kind) as store:
        assert store.count() == 200
        hits = store.search(vecs[17], k=5)
        assert hits[0].chunk.id == "/docs/a.txt#17"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        brute = np.argsort(-(vecs @ vecs[17]))[:5]
        assert [h.chunk.id for h in hits] == [f"/docs/a.txt#{i}" for i in brute]


def test_upsert_same_id_replaces(tmp_path: Path, kind: str) -> None:
    with _open(tmp_path, kind) as store:
        store.upsert(_chunks(3), _vectors(3, seed=1))
        new_vecs = _vectors(3, seed=2)
        store.upsert(_chunks(3), new_vecs)
        assert store.count() == 3
        assert store.search(new_vecs[1], k=1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_delete_source_and_tombstones(tmp_path: Path, kind: str) -> None:
    a, b = _vectors(50, seed=1), _vectors(50, seed=2)
    with _open(tmp_path, kind) as store:
        store.upsert(_chunks(50, "/a.txt"), a)
        store.upsert(_chunks(50, "/b.txt"), b)
        assert store.delete_source("/a.txt") == 50
        assert store.delete_source("/a.txt") == 0
        hits = store.search(a[3], k=10)
        assert hits and all(h.chunk.source == "/b.txt" for h in hits)
        assert store.sources() == {"/b.txt": 50}
    with _open(tmp_path, kind) as store:  # after a reload (HNSW: tombstones found again from SQLite)
        assert all(h.chunk.source == "/b.txt" for h in store.search(a[3], k=60))
        assert len(store.search(a[3], k=60)) == 50


def test_hnsw_tombstones_are_compacted_at_checkpoint(tmp_path: Path) -> None:
    import faiss

    vecs = _vectors(40, seed=10)
    with _open(tmp_path, "hnsw") as store:
        store.upsert(_chunks(20, "/a.txt"), vecs[:20])
        store.upsert(_chunks(20, "/b.txt"), vecs[20:])
        store.delete_source("/a.txt")  # half the index is dead: over the rebuild threshold
    (index_file,) = tmp_path.glob("index-*.faiss")
    assert faiss.read_index(str(index_file)).ntotal == 20
    with _open(tmp_path, "hnsw") as store:
        assert {h.chunk.source for h in store.search(vecs[25], k=40)} == {"/b.txt"}


def test_filters_match_chunk_semantics(tmp_path: Path, kind: str) -> None:
    chunks = _chunks(30, "/a.pdf", "pdf") + _chunks(30, "/b.txt", "txt") + _chunks(30, "/c.md", "md")
    vecs = _vectors(90, seed=3)
    with _open(tmp_path, kind) as store:
        store.upsert(chunks, vecs)
        q = vecs[40]
        for filters in ({"file_type": "pdf"}, {"source": ["/b.txt", "/c.md"]}, {"page": 2},
                        {"file_type": "pdf", "page": [1, 3]}):
            hits = store.search(q, k=7, filters=filters)
            expected = sorted((c for c, v in zip(chunks, vecs, strict=True) if matches(c, filters)),
                              key=lambda c: -float(vecs[chunks.index(c)] @ q))[:7]
            assert [h.chunk.id for h in hits] == [c.id for c in expected]
        assert store.search(q, k=3, filters={"source": "/nope"}) == []
        assert {c.source for c in store.chunks({"file_type": "md"})} == {"/c.md"}
        with pytest.raises(UsageError, match="unknown filter field"):
            store.search(q, k=3, filters={"author": "x"})


def test_large_filtered_set_uses_faiss_selector(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.stores import faiss_store

    monkeypatch.setattr(faiss_store, "EXACT_FILTER_LIMIT", 10)
    chunks = _chunks(100, "/a.txt") + _chunks(100, "/b.txt")
    vecs = _vectors(200, seed=4)
    with _open(tmp_path, kind) as store:
        store.upsert(chunks, vecs)
        hits = store.search(vecs[5], k=5, filters={"source": "/b.txt"})
        assert len(hits) == 5 and all(h.chunk.source == "/b.txt" for h in hits)
        brute = sorted(range(100, 200), key=lambda i: -float(vecs[i] @ vecs[5]))[:5]
        assert hits[0].chunk.id == chunks[brute[0]].id


def test_stale_or_damaged_index_file_is_rebuilt_from_sqlite(tmp_path: Path, kind: str) -> None:
    vecs = _vectors(40, seed=5)
    store = _open(tmp_path, kind)
    store.upsert(_chunks(20), vecs[:20])
    store.close()
    (index_file,) = tmp_path.glob("index-*.faiss")
    # A "crash" after the second commit, before the index was written: SQLite is ahead of the index file.
    store = _open(tmp_path, kind, checkpoint_s=1e9)
    store.upsert(_chunks(20, start_id=20), vecs[20:])
    store._release_writer()  # simulate the process dying without close()
    with _open(tmp_path, kind) as reopened:
        assert reopened.count() == 40
        assert reopened.search(vecs[33], k=1)[0].chunk.id == "/docs/a.txt#33"
    # A damaged index file is ignored too.
    for f in tmp_path.glob("index-*.faiss"):
        f.write_bytes(b"garbage")
    with _open(tmp_path, kind) as reopened:
        assert reopened.search(vecs[3], k=1)[0].chunk.id == "/docs/a.txt#3"
    assert not list(tmp_path.glob("*.tmp"))
    assert index_file.name.startswith("index-")


def test_switching_index_kind_needs_no_reembedding(tmp_path: Path) -> None:
    vecs = _vectors(30, seed=6)
    with _open(tmp_path, "flat") as store:
        store.upsert(_chunks(30), vecs)
    with _open(tmp_path, "hnsw") as store:
        assert store.search(vecs[9], k=1)[0].chunk.id == "/docs/a.txt#9"


def test_other_model_or_dim_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store_for(settings, DIM, "model-x").close()
    with pytest.raises(StoreError, match="built with embedding model 'model-x'"):
        store_for(settings, DIM, "model-y")
    with pytest.raises(StoreError, match="16-d"):
        store_for(settings, 32, "model-x")


def test_unwritable_directory_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        FaissStore(blocker / "sub", DIM, "m")


def test_second_writer_is_refused_but_readers_see_commits(tmp_path: Path) -> None:
    vecs = _vectors(10, seed=7)
    writer = _open(tmp_path, "flat", checkpoint_s=1e9)
    writer.upsert(_chunks(5), vecs[:5])
    reader = _open(tmp_path, "flat")
    assert reader.count() == 5
    writer.upsert(_chunks(5, start_id=5), vecs[5:])  # committed, index file not yet written
    assert reader.search(vecs[8], k=1)[0].chunk.id == "/docs/a.txt#8"  # the reader catches up
    other = _open(tmp_path, "flat", lock_timeout_s=0.2)
    with pytest.raises(StoreError, match="another process is writing"):
        other.upsert(_chunks(1, start_id=99), vecs[:1])
    other.close()
    writer.close()
    reader.close()


def test_reader_in_another_process_during_writes(tmp_path: Path) -> None:
    """A separate process reads while this one writes: it always sees a committed snapshot, never an error."""
    vecs = _vectors(400, seed=8)
    code = f"""
import sys, numpy as np
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from rag.stores.faiss_store import FaissStore
q = np.ones({DIM}, dtype=np.float32) / {DIM} ** 0.5
counts = []
for _ in range(40):
    s = FaissStore(sys.argv[1], {DIM}, "model-x")
    n = s.count(); hits = s.search(q, k=3)
    assert len(hits) == min(3, n), (len(hits), n)
    assert n % 20 == 0, n  # whole batches only
    counts.append(n); s.close()
print(max(counts))
"""
    store = _open(tmp_path, "flat", checkpoint_s=0.05)
    store.upsert(_chunks(20), vecs[:20])
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for i in range(1, 20):
        store.upsert(_chunks(20, start_id=20 * i), vecs[20 * i : 20 * (i + 1)])
    out, err = proc.communicate(timeout=120)
    store.close()
    assert proc.returncode == 0, err
    assert int(out.strip()) >= 20


@pytest.mark.gpu
def test_gpu_faiss_search_matches_cpu(tmp_path: Path) -> None:
    faiss = pytest.importorskip("faiss")
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        pytest.skip("needs GPU FAISS and a CUDA GPU")
    vecs = _vectors(100, seed=9)
    with _open(tmp_path, "flat", use_gpu="auto") as gpu, _open(tmp_path / "cpu", "flat", use_gpu="never") as cpu:
        gpu.upsert(_chunks(100), vecs)
        cpu.upsert(_chunks(100), vecs)
        assert [h.chunk.id for h in gpu.search(vecs[4], k=5)] == [h.chunk.id for h in cpu.search(vecs[4], k=5)]
        assert gpu._gpu_index is not None


def _clustered(n: int, seed: int) -> np.ndarray:
    """Vectors around 40 centres (like text embeddings, unlike iid noise on which IVF/HNSW recall says little)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, DIM)).astype(np.float32)
    v = centres[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_ivfpq_trains_once_big_enough_and_keeps_results_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    from rag.stores import faiss_store

    ivf = faiss_store.IvfPqParams(train_min=1000, nlist=16, pq_m=4, nprobe=8, refine=4)
    vecs = _clustered(3000, seed=11)
    chunks = _chunks(1500, "/a.txt") + _chunks(1500, "/b.md", "md")
    with _open(tmp_path, "ivfpq", ivf=ivf) as store:
        for i in range(0, 3000, 500):
            store.upsert(chunks[i : i + 500], vecs[i : i + 500])
        assert not store._is_ivf  # exact until the checkpoint at close() trains it
    (index_file,) = tmp_path.glob("index-ivfpq-*.faiss")
    trained = faiss.read_index(str(index_file))
    assert faiss.extract_index_ivf(trained).nlist == 16 and trained.ntotal == 3000

    queries = _clustered(60, seed=12)
    with _open(tmp_path, "ivfpq", ivf=ivf) as store:
        found = 0
        for q in queries:
            hits = store.search(q, k=10)
            exact = np.argsort(-(vecs @ q))[:10]
            found += len({h.chunk.id for h in hits} & {chunks[i].id for i in exact})
            best = int(exact[0])
            if hits[0].chunk.id == chunks[best].id:  # scores are exact: re-scored from the stored vectors
                assert hits[0].score == pytest.approx(float(vecs[best] @ q), abs=1e-5)
        assert store._is_ivf  # the trained index file was loaded, not rebuilt
        assert found / (10 * len(queries)) >= 0.9

        assert store.delete_source("/a.txt") == 1500  # tombstones on the trained index
        assert all(h.chunk.source == "/b.md" for h in store.search(vecs[3], k=20))
        new = _clustered(5, seed=13)
        store.upsert(_chunks(5, "/c.txt"), new)  # added to the trained lists
        assert store.search(new[2], k=1)[0].chunk.id == "/c.txt#2"
        monkeypatch.setattr(faiss_store, "EXACT_FILTER_LIMIT", 10)
        hits = store.search(vecs[2000], k=5, filters={"file_type": "md"})  # a large allowed set: an IVF selector
        assert len(hits) == 5 and all(h.chunk.file_type == "md" for h in hits)
    with _open(tmp_path, "ivfpq", ivf=ivf) as store:  # tombstones found again from SQLite after a reopen
        assert {h.chunk.source for h in store.search(vecs[3], k=30)} <= {"/b.md", "/c.txt"}
        assert store.count() == 1505
    for f in tmp_path.glob("index-*.faiss"):
        f.write_bytes(b"garbage")
    with _open(tmp_path, "ivfpq", ivf=ivf) as store:  # damaged: trained again from SQLite
        assert store.search(new[4], k=1)[0].chunk.id == "/c.txt#4" and store._is_ivf


def test_ivfpq_is_a_setting(tmp_path: Path) -> None:
    from rag.stores import open_store

    settings = Settings(store={"faiss_index": "ivfpq", "ivf_nprobe": 5, "ivf_refine": 2, "ivf_train_min": 300})
    store = open_store(settings, tmp_path, DIM, "model-x")
    try:
        assert store._ivf.nprobe == 5 and store._ivf.refine == 2 and store._ivf.train_min == 300  # type: ignore[attr-defined]
    finally:
        store.close()
