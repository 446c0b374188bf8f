"""Retrieval quality and latency: dense, BM25, hybrid (RRF) and hybrid + cross-encoder rerank, side by side with
the LangChain default retriever (FAISS.from_documents + similarity_search) over the very same chunks.

Quality on the gold set (evals/data/gold.jsonl over evals/data/corpus, answerable questions only): hit@5,
recall@10, MRR and nDCG@10 as defined in evals/metrics/retrieval.py. Latency: retrieval p50 per stage and, with
the embedded LLM (llama.cpp + packaged Qwen2.5 0.5B), time to first token of `RagPipeline.stream`.

    $ .venv/bin/python benchmarks/retrieval.py                # everything (about 5 minutes on 2 cores)
    $ .venv/bin/python benchmarks/retrieval.py --no-llm       # retrieval only
    $ .venv/bin/python benchmarks/retrieval.py --latency-only # retrieval p50 per retriever, interleaved
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from evals.dataset import load_dataset  # noqa: E402
from evals.metrics.retrieval import retrieval_metrics  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.pipeline import RagPipeline  # noqa: E402

METRICS = ("hit@5", "recall@10", "mrr", "ndcg@10")


def _mean(rows: list[dict[str, float | None]], key: str) -> float:
    vals = [r[key] for r in rows if r[key] is not None]
    return sum(vals) / len(vals) if vals else float("nan")  # type: ignore[arg-type]


def evaluate(ranked_by_q: list[list[tuple[str, int | None]]], golds: list[list[str]]) -> dict[str, float]:
    rows = [retrieval_metrics(r, g, ks=(5, 10)) for r, g in zip(ranked_by_q, golds, strict=True)]
    return {m: _mean(rows, m) for m in METRICS}


Ranked = list[list[tuple[str, int | None]]]


def langchain_store(pipeline: RagPipeline):  # type: ignore[no-untyped-def]
    """What a LangChain user writes: HuggingFaceEmbeddings + FAISS.from_documents, over our very chunks."""
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings

    from rag.embedders import resolve_model_path

    docs = [Document(page_content=c.text, metadata={"source": c.source, "page": c.page})
            for c in pipeline.store.chunks()]
    emb = HuggingFaceEmbeddings(model_name=resolve_model_path(pipeline.settings.embedding.model))
    return FAISS.from_documents(docs, emb)


def latency(pipeline: RagPipeline, lc_store, questions: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Retrieval p50 (ms) per retriever, interleaved per question so each sees the same machine load."""
    lat: dict[str, list[float]] = {"dense": [], "bm25": [], "hybrid": [], "LangChain default": []}
    for q in questions:
        for mode in ("dense", "bm25", "hybrid"):
            t = time.perf_counter()
            pipeline.retrieve(q, k=10, mode=mode)
            lat[mode].append(time.perf_counter() - t)
        t = time.perf_counter()
        lc_store.similarity_search(q, k=10)
        lat["LangChain default"].append(time.perf_counter() - t)
    return {k: 1000 * statistics.median(v) for k, v in lat.items()}


def langchain_default(pipeline: RagPipeline, questions: list[str]) -> tuple[Ranked, list[float]]:
    """Rankings of LangChain's default retriever: similarity_search(k=10)."""
    store = langchain_store(pipeline)
    ranked, lat = [], []
    for q in questions:
        t = time.perf_counter()
        hits = store.similarity_search(q, k=10)
        lat.append(time.perf_counter() - t)
        ranked.append([(d.metadata["source"], d.metadata["page"]) for d in hits])
    return ranked, lat


def time_to_first_token(settings: Settings, questions: list[str]) -> dict[str, float]:
    """Start the embedded LLM on a free port, stream answers, and time the first token (retrieval included)."""
    from rag.local_llm import start_server
    from rag.types import Answer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm_settings = settings.llm.model_copy(update={"local_port": port, "max_tokens": 32})
    t = time.perf_counter()
    server = start_server(llm_settings)
    startup = time.perf_counter() - t
    try:
        s2 = settings.model_copy(update={"llm": llm_settings.model_copy(update={"base_url": server.url})})
        pipeline = RagPipeline(s2)
        pipeline.retrieve(questions[0])  # load the embedder and indexes first: TTFT of a warm process
        ttft, totals = [], []
        for q in questions:
            for part in pipeline.stream(q):
                if isinstance(part, Answer):
                    if "first_token" in part.timings:
                        ttft.append(part.timings["first_token"])
                        totals.append(part.timings["total"])
    finally:
        server.stop()
    return {"server_start_s": startup, "ttft_p50_s": statistics.median(ttft), "ttft_max_s": max(ttft),
            "answer_p50_s_32_tokens": statistics.median(totals), "questions": len(ttft)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gold", default=str(ROOT / "evals/data/gold.jsonl"))
    ap.add_argument("--corpus", default=str(ROOT / "evals/data/corpus"))
    ap.add_argument("--data-dir", default=str(ROOT / ".rag-data/bench-retrieval"))
    ap.add_argument("--no-llm", action="store_true", help="skip the time-to-first-token measurement")
    ap.add_argument("--ttft-questions", type=int, default=6)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--latency-only", action="store_true", help="only the interleaved retrieval p50 per retriever")
    args = ap.parse_args()

    from ingest.pipeline import ingest_paths

    settings = Settings(data_dir=Path(args.data_dir), collection="gold")
    t = time.perf_counter()
    summary = ingest_paths([args.corpus], settings)
    print(f"ingest: {summary.files_seen} files, {summary.chunks_total} chunks ({time.perf_counter() - t:.1f} s)",
          file=sys.stderr)
    examples = [e for e in load_dataset(args.gold) if e.sources]
    questions = [e.question for e in examples]
    golds = [list(e.sources) for e in examples]
    pipeline = RagPipeline(settings)
    if args.latency_only:
        pipeline.retrieve("warm up", mode="hybrid")
        print(json.dumps({k: round(v, 1) for k, v in latency(pipeline, langchain_store(pipeline), questions).items()}))
        return
    pipeline.retrieve("warm up", mode="hybrid", rerank=True)  # load the embedder, BM25 index and reranker once

    results: dict[str, dict[str, float]] = {}
    stages = {"dense": ("dense", False), "bm25": ("bm25", False), "hybrid": ("hybrid", False),
              "hybrid + rerank": ("hybrid", True)}
    for name, (mode, rerank) in stages.items():
        ranked, lat = [], []
        for q in questions:
            t = time.perf_counter()
            hits = pipeline.retrieve(q, k=10, mode=mode, rerank=rerank)
            lat.append(time.perf_counter() - t)
            ranked.append([(h.chunk.source, h.chunk.page) for h in hits])
        results[name] = {**evaluate(ranked, golds), "p50_ms": 1000 * statistics.median(lat)}
        print(f"{name}: {results[name]}", file=sys.stderr)
    ranked, lat = langchain_default(pipeline, questions)
    results["LangChain default (FAISS similarity_search)"] = {**evaluate(ranked, golds),
                                                               "p50_ms": 1000 * statistics.median(lat)}

    # The quality loop's timings suffer whatever else runs; these are interleaved, so the retrievers compare fairly.
    fair = latency(pipeline, langchain_store(pipeline), questions)
    for name, key in (("dense", "dense"), ("bm25", "bm25"), ("hybrid", "hybrid"),
                      ("LangChain default (FAISS similarity_search)", "LangChain default")):
        results[name]["p50_ms"] = fair[key]
    base = results["LangChain default (FAISS similarity_search)"]["ndcg@10"]
    lines = [
        f"gold set: {len(questions)} answerable questions, {summary.chunks_total} chunks "
        f"(chunk {settings.chunk.size_tokens} tokens, candidates {settings.retrieval.candidates}, "
        f"rrf_k {settings.retrieval.rrf_k})",
        "",
        "| retriever | hit@5 | recall@10 | MRR | nDCG@10 | Δ nDCG@10 vs LangChain | retrieval p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['hit@5']:.3f} | {r['recall@10']:.3f} | {r['mrr']:.3f} | {r['ndcg@10']:.3f} | "
                     f"{100 * (r['ndcg@10'] - base):+.1f} pts | {r['p50_ms']:.1f} ms |")
    out: dict[str, object] = {"retrieval": results, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                              "chunks": summary.chunks_total, "questions": len(questions)}
    if not args.no_llm:
        ttft = time_to_first_token(settings, questions[: args.ttft_questions])
        out["llm"] = ttft
        lines += ["", f"embedded LLM (llama.cpp, Qwen2.5-Coder-0.5B Q4_K_M, hybrid retrieval, k=5): server start "
                      f"{ttft['server_start_s']:.1f} s; time to first token p50 {ttft['ttft_p50_s']:.2f} s "
                      f"(max {ttft['ttft_max_s']:.2f} s) over {ttft['questions']} questions; whole 32-token answer "
                      f"p50 {ttft['answer_p50_s_32_tokens']:.2f} s"]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
