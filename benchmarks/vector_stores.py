"""Vector store benchmark: build time, query latency, recall@10 against exact search, RAM and disk.

Every store runs in its own subprocess (clean RAM numbers) through the project's ``VectorStore`` seam, the way
``rag ingest`` / ``rag search`` use it: upsert in batches of 512 chunks with payloads, ``close()`` (FAISS writes
its files, Qdrant's embedded engine builds its HNSW graph), reopen, then 200 single queries of k=10.

Data (384-d, the MiniLM dimension):
- ``real``: ~4k passages from gensim's Lee background corpus and Wikipedia excerpt, embedded with the packaged
  all-MiniLM-L6-v2; 200 held-out passages are the queries.
- ``mix``: 100k / 1M vectors made from those real embeddings (``normalize(e_i + a*e_j + noise)``, a ~ U(0, 0.6),
  noise norm ~0.45): clustered like real text embeddings, unlike iid Gaussian vectors, on which HNSW recall says
  little (OFFLINE.md); queries are fresh draws from the same generator.

Usage::

    .venv/bin/python benchmarks/vector_stores.py --sizes 100000,1000000 --out test-artifacts/vector_stores.json
    .venv/bin/python benchmarks/vector_stores.py --sizes 20000 --stores faiss-flat,qdrant-edge   # a quick look
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vector_stores.py --ef-sweep mix1000000   # recall/latency vs efSearch
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIM = 384
N_QUERIES = 200
K = 10
CACHE = Path(os.environ.get("RAG_BENCH_CACHE", Path.home() / ".cache" / "rag-bench"))
STORES = ["faiss-flat", "qdrant-edge", "faiss-hnsw", "qdrant-local"]
LOCAL_MAX = 5_000  # qdrant-client local mode: pure Python, ~30 points/s to build here; 100k would take about an hour


# ---------------------------------------------------------------------------------------------- data


def _passages() -> list[str]:
    import gensim

    data = Path(gensim.__file__).parent / "test" / "test_data"
    texts = [line.strip() for line in (data / "lee_background.cor").read_text(errors="ignore").splitlines()]
    wiki = bz2.open(data / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2", "rt").read()
    for page in re.findall(r"<text[^>]*>(.*?)</text>", wiki, flags=re.S):
        page = re.sub(r"\{\{.*?\}\}|\[\[(?:[^|\]]*\|)?([^\]]*)\]\]|<[^>]+>|&[a-z]+;|'{2,}|={2,}", r"\1", page)
        texts.append(" ".join(page.split()))
    out: list[str] = []
    for text in texts:  # ~80-word windows, the size of a small chunk
        words = text.split()
        out.extend(" ".join(words[i : i + 80]) for i in range(0, len(words), 80) if len(words[i : i + 80]) >= 20)
    return out


def real_embeddings() -> np.ndarray:
    """MiniLM embeddings of the passages (cached: embedding takes ~1 minute on 2 cores)."""
    path = CACHE / "minilm_passages.npy"
    if path.exists():
        return np.load(path)
    from rag.config import EmbeddingSettings
    from rag.embedders import load_embedder

    passages = _passages()
    pick = np.random.default_rng(0).permutation(len(passages))[:4200]  # both corpora, in a fixed order
    texts = [passages[i] for i in pick]
    emb = load_embedder(EmbeddingSettings()).embed_documents(texts).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, emb)
    return emb


def mixed_blocks(n: int, seed: int, base: np.ndarray):  # type: ignore[no-untyped-def]
    """The vectors of ``mixed`` in blocks of 100,000, never all at once (10M x 384 float32 is 15 GB)."""
    rng = np.random.default_rng(seed)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        i = rng.integers(0, len(base), m)
        j = rng.integers(0, len(base), m)
        a = rng.uniform(0, 0.6, (m, 1)).astype(np.float32)
        v = base[i] + a * base[j] + rng.normal(0, 0.45 / np.sqrt(DIM), (m, DIM)).astype(np.float32)
        yield v / np.linalg.norm(v, axis=1, keepdims=True)


def mixed(n: int, seed: int, base: np.ndarray) -> np.ndarray:
    """``n`` clustered vectors built from real embeddings; deterministic in ``seed`` (the first n of a larger
    draw with the same seed are the same vectors)."""
    out = np.empty((n, DIM), dtype=np.float32)
    s = 0
    for block in mixed_blocks(n, seed, base):
        out[s : s + len(block)] = block
        s += len(block)
    return out


def dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    base = real_embeddings()
    if name == "real":
        return base[N_QUERIES:], base[:N_QUERIES]
    n = int(name.removeprefix("mix"))
    return mixed(n, 1, base[N_QUERIES:]), mixed(N_QUERIES, 2, base[:N_QUERIES])


def ground_truth(name: str, db: np.ndarray, queries: np.ndarray) -> np.ndarray:
    path = CACHE / f"gt_{name}.npy"
    if path.exists():
        return np.load(path)
    gt = np.stack([np.argsort(-(db @ q), kind="stable")[:K] for q in queries])
    np.save(path, gt)
    return gt


# ---------------------------------------------------------------------------------------------- one store


def _open(store: str, data_dir: Path, dim: int):  # type: ignore[no-untyped-def]
    from rag.config import Settings
    from rag.stores import open_store

    backend, _, variant = store.partition("-")
    if backend == "faiss":
        settings = Settings(data_dir=data_dir, store={"backend": "faiss", "faiss_index": variant, "use_gpu": "never"})
    else:
        mode = {"edge": "embedded", "local": "local"}[variant]
        settings = Settings(data_dir=data_dir, store={"backend": "qdrant", "qdrant_mode": mode})
    return open_store(settings, data_dir / "store", dim, "bench")


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class PeakRss:
    """Samples this process's RSS every 50 ms. (``ru_maxrss`` is useless here: Linux carries the parent's peak
    across fork/exec into the child's.)"""

    def __init__(self) -> None:
        import threading

        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _rss_mb())


def run_one(store: str, data: str) -> dict[str, object]:
    from rag.types import Chunk

    db, queries = dataset(data)
    gt = ground_truth(data, db, queries)
    data_dir = Path(os.environ.get("RAG_BENCH_DIR") or tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        rss0 = _rss_mb()
        peak = PeakRss()
        t0 = time.perf_counter()
        st = _open(store, data_dir, DIM)
        for s in range(0, len(db), 512):
            part = range(s, min(s + 512, len(db)))
            chunks = [
                Chunk(id=str(i), text=f"passage {i}", source=f"/bench/doc{i // 50}.txt", page=None, start=0, end=9,
                      content_hash="h", file_hash="f", file_type="txt")
                for i in part
            ]
            st.upsert(chunks, db[s : s + len(part)])
        st.close()
        build_s = time.perf_counter() - t0
        peak_build_mb = peak.stop() - rss0  # above the data itself: what the store needed to build
        disk_mb = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file()) / 2**20
        t0 = time.perf_counter()
        st = _open(store, data_dir, DIM)
        open_s = time.perf_counter() - t0
        st.search(queries[0], K)  # warm-up
        lat, recalls = [], []
        for q, truth in zip(queries, gt, strict=True):
            t = time.perf_counter()
            hits = st.search(q, K)
            lat.append(time.perf_counter() - t)
            recalls.append(len({int(h.chunk.id) for h in hits} & set(truth.tolist())) / K)
        serve_mb = _rss_mb() - rss0
        st.close()
        lat_ms = np.array(lat) * 1000
        return {
            "store": store, "data": data, "n": len(db), "build_s": round(build_s, 1), "open_s": round(open_s, 2),
            "p50_ms": round(float(np.percentile(lat_ms, 50)), 3), "p95_ms": round(float(np.percentile(lat_ms, 95)), 3),
            "recall_at_10": round(float(np.mean(recalls)), 4), "ram_serving_mb": round(serve_mb),
            "peak_build_mb": round(peak_build_mb), "disk_mb": round(disk_mb, 1),
        }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _single_queries(index, queries: np.ndarray, gt: np.ndarray) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Each query alone on a raw FAISS index: its latency (seconds) and its recall@K against ``gt``."""
    lat, found = [], []
    for q, truth in zip(queries, gt, strict=True):
        t = time.perf_counter()
        _, ids = index.search(q[None, :], K)
        lat.append(time.perf_counter() - t)
        found.append(len(set(ids[0].tolist()) & set(truth.tolist())) / K)
    return lat, found


def ef_sweep(data: str, efs: list[int]) -> list[dict[str, object]]:
    """Raw FAISS HNSW with the default m / ef_construction: recall@10 and p50 per ``efSearch`` (one build)."""
    import faiss

    from rag.config import StoreSettings

    defaults = StoreSettings()
    db, queries = dataset(data)
    gt = ground_truth(data, db, queries)
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(DIM, defaults.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = defaults.hnsw_ef_construction
    index.add(db)
    build_s = time.perf_counter() - t0
    rows = []
    for ef in efs:
        index.hnsw.efSearch = ef
        lat, found = _single_queries(index, queries, gt)
        rows.append({"data": data, "n": len(db), "ef_search": ef, "build_s": round(build_s, 1),
                     "p50_ms": round(float(np.percentile(np.array(lat) * 1000, 50)), 3),
                     "p95_ms": round(float(np.percentile(np.array(lat) * 1000, 95)), 3),
                     "recall_at_10": round(float(np.mean(found)), 4)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


# ---------------------------------------------------------------------------------------------- IVF-PQ at scale


def ivfpq_scale(n: int, work: Path, nprobes: list[int], refine: int, nlist: int | None = None,
                m: int = 96) -> list[dict[str, object]]:
    """Raw FAISS IVF-PQ over ``n`` generated vectors, without ever holding them all in RAM.

    The vectors are generated block by block and written to a float32 file on disk (they play the part of the
    FAISS store's SQLite: the truth, on disk); the exact top 10 of 200 queries comes from one streamed pass over it;
    the index is trained on a sample and filled block by block. Reported per nprobe: recall@10 and single-query
    p50 of the PQ ranking alone, and with the best ``k * refine`` candidates re-scored from the vectors on disk
    (what ``RAG_STORE__FAISS_INDEX=ivfpq`` does, from SQLite). Memory is the index's own size (what it holds in
    RAM: codes, ids, centroids), measured by serialising it.
    """
    import faiss

    base = real_embeddings()
    queries = mixed(N_QUERIES, 2, base[:N_QUERIES])
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"mix{n}.f32"
    if not path.exists() or path.stat().st_size != n * DIM * 4:
        t = time.perf_counter()
        with open(path, "wb") as f:
            for block in mixed_blocks(n, 1, base[N_QUERIES:]):
                f.write(block.tobytes())
        print(json.dumps({"n": n, "generated_s": round(time.perf_counter() - t, 1)}), flush=True)
    vectors = np.memmap(path, dtype=np.float32, mode="r", shape=(n, DIM))
    gt_path = work / f"gt{n}.npy"
    if gt_path.exists():
        gt = np.load(gt_path)
    else:  # exact top 10, streamed: running best per query
        t = time.perf_counter()
        best_s = np.full((N_QUERIES, K), -np.inf, dtype=np.float32)
        best_i = np.zeros((N_QUERIES, K), dtype=np.int64)
        for s in range(0, n, 500_000):
            scores = queries @ np.asarray(vectors[s : s + 500_000]).T
            top = np.argpartition(-scores, K, axis=1)[:, :K]
            cand_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], axis=1)
            cand_i = np.concatenate([best_i, top + s], axis=1)
            keep = np.argsort(-cand_s, axis=1)[:, :K]
            best_s, best_i = np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1)
        gt = best_i
        np.save(gt_path, gt)
        print(json.dumps({"n": n, "ground_truth_s": round(time.perf_counter() - t, 1)}), flush=True)
    nlist = nlist or int(min(4096, 4 * n**0.5))  # 4 * sqrt(10M) = 12,649 lists would take hours to fill here
    t0 = time.perf_counter()
    sample_n = min(n, max(40 * nlist, 256 * 40))
    sample = np.ascontiguousarray(vectors[:: max(1, n // sample_n)][:sample_n])
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(DIM), DIM, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10  # as the store trains it
    index.train(sample)
    del sample
    train_s = time.perf_counter() - t0
    for s in range(0, n, 250_000):
        index.add(np.ascontiguousarray(vectors[s : s + 250_000]))
    build_s = time.perf_counter() - t0
    ram_mb = faiss.serialize_index(index).nbytes / 2**20
    rows = []
    faiss.omp_set_num_threads(1)  # single queries on one thread, as the store searches
    for nprobe in nprobes:
        index.nprobe = nprobe
        for re_k in (0, refine):
            lat, found = [], []
            for q, truth in zip(queries, gt, strict=True):
                t = time.perf_counter()
                _, ids = index.search(q[None, :], K * max(re_k, 1))
                ids = ids[0][ids[0] >= 0]
                if re_k:  # exact scores for the candidates, read from the vectors on disk
                    order = np.sort(ids)
                    exact = np.asarray(vectors[order]) @ q
                    ids = order[np.argsort(-exact)[:K]]
                lat.append(time.perf_counter() - t)
                found.append(len(set(ids[:K].tolist()) & set(truth.tolist())) / K)
            rows.append({"n": n, "index": f"IVF{nlist},PQ{m}", "nprobe": nprobe, "refine": re_k,
                         "train_s": round(train_s, 1), "build_s": round(build_s, 1), "ram_mb": round(ram_mb),
                         "disk_vectors_mb": round(n * DIM * 4 / 2**20),
                         "p50_ms": round(float(np.percentile(np.array(lat) * 1000, 50)), 3),
                         "p95_ms": round(float(np.percentile(np.array(lat) * 1000, 95)), 3),
                         "recall_at_10": round(float(np.mean(found)), 4), "load_avg_1m": round(os.getloadavg()[0], 1)})
            print(json.dumps(rows[-1]), flush=True)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return rows


def flat_scale(n: int, work: Path) -> dict[str, object]:
    """Exact (flat) search over the same generated vectors held in RAM, for the comparison at 1M."""
    import faiss

    path = work / f"mix{n}.f32"
    queries = mixed(N_QUERIES, 2, real_embeddings()[:N_QUERIES])
    gt = np.load(work / f"gt{n}.npy")
    t0 = time.perf_counter()
    index = faiss.IndexFlatIP(DIM)
    vectors = np.memmap(path, dtype=np.float32, mode="r", shape=(n, DIM))
    for s in range(0, n, 250_000):
        index.add(np.ascontiguousarray(vectors[s : s + 250_000]))
    build_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    lat, found = _single_queries(index, queries, gt)
    row = {"n": n, "index": "Flat", "build_s": round(build_s, 1), "ram_mb": round(index.ntotal * DIM * 4 / 2**20),
           "p50_ms": round(float(np.percentile(np.array(lat) * 1000, 50)), 3),
           "recall_at_10": round(float(np.mean(found)), 4), "load_avg_1m": round(os.getloadavg()[0], 1)}
    print(json.dumps(row), flush=True)
    return row


# ---------------------------------------------------------------------------------------------- driver


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated collection sizes of the mix data")
    p.add_argument("--stores", default=",".join(STORES))
    p.add_argument("--no-real", action="store_true", help="skip the ~4k real-embedding run")
    p.add_argument("--timeout", type=int, default=1200, help="seconds per store run")
    p.add_argument("--out", type=Path, default=ROOT / "test-artifacts" / "vector_stores.json")
    p.add_argument("--one", nargs=2, metavar=("STORE", "DATA"), help=argparse.SUPPRESS)
    p.add_argument("--ef-sweep", metavar="DATA", help="raw FAISS HNSW on DATA (e.g. mix1000000), several efSearch")
    p.add_argument("--efs", default="64,128,192,256,384")
    p.add_argument("--ivfpq-scale", metavar="SIZES", help="raw IVF-PQ at these sizes (e.g. 1000000,10000000)")
    p.add_argument("--nprobes", default="16,32,64")
    p.add_argument("--refine", type=int, default=16)
    p.add_argument("--work", type=Path, default=CACHE / "ivfpq", help="where the generated vectors are written")
    p.add_argument("--flat-too", action="store_true", help="with --ivfpq-scale: exact search over the same data")
    args = p.parse_args()
    if args.ivfpq_scale:
        rows: list[dict[str, object]] = []
        for n in [int(x) for x in args.ivfpq_scale.split(",")]:
            rows += ivfpq_scale(n, args.work, [int(x) for x in args.nprobes.split(",")], args.refine)
            if args.flat_too and n <= 2_000_000:  # exact search holds every vector in RAM: 15 GB at 10M
                rows.append(flat_scale(n, args.work))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
        return
    if args.ef_sweep:
        ef_sweep(args.ef_sweep, [int(e) for e in args.efs.split(",")])
        return
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    datas = ([] if args.no_real else ["real"]) + [f"mix{int(s)}" for s in args.sizes.split(",") if s]
    for d in datas:  # embed + ground truth once, outside the timed runs
        ground_truth(d, *dataset(d))
    print(f"data ready; load average {os.getloadavg()}", flush=True)
    results = []
    for d in datas:
        for store in args.stores.split(","):
            if store == "qdrant-local" and d.startswith("mix") and int(d[3:]) > LOCAL_MAX:
                results.append({"store": store, "data": d, "skipped": f"pure-Python scan; run at <= {LOCAL_MAX}"})
                continue
            t0 = time.perf_counter()
            work = tempfile.mkdtemp(prefix="rag-bench-")  # removed here too: a run killed at its timeout cannot
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", store, d], capture_output=True, text=True, timeout=args.timeout,
                    env={**os.environ, "RAG_BENCH_DIR": work},
                )
                row = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {
                    "store": store, "data": d, "error": proc.stderr.strip().splitlines()[-1:]}
            except subprocess.TimeoutExpired:
                row = {"store": store, "data": d, "skipped": f"over the {args.timeout}s budget"}
            finally:
                shutil.rmtree(work, ignore_errors=True)
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            row["load_avg_1m"] = round(os.getloadavg()[0], 1)
            print(json.dumps(row), flush=True)
            results.append(row)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))
    print(table(results))


def table(rows: list[dict[str, object]]) -> str:
    head = ("| data | n | store | build s | open s | p50 ms | p95 ms | recall@10 | RAM MB (serving) | peak MB (build) "
            "| disk MB |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        if "skipped" in r or "error" in r:
            lines.append(f"| {r['data']} | | {r['store']} | {r.get('skipped') or r.get('error')} |||||||")
            continue
        lines.append(
            f"| {r['data']} | {r['n']:,} | {r['store']} | {r['build_s']} | {r['open_s']} | {r['p50_ms']} "
            f"| {r['p95_ms']} | {r['recall_at_10']} | {r['ram_serving_mb']} | {r.get('peak_build_mb', 'n/a')} "
            f"| {r['disk_mb']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
