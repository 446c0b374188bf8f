"""What the cross-encoder reranker costs and brings for answers: retrieval with and without it, interleaved per
question, on the gold sets (hit@1, hit@5, MRR against the gold sources; latency p50/p90).

    $ RAG_DATA_DIR=/work/data/i11 python benchmarks/rerank.py \\
        --set evals/data/gold.jsonl=gold --set evals/data/gold_hard.jsonl=hard --json rerank.json

Compare the rerank latency with the generation time of an answer (benchmarks/answers.py) to decide whether it pays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", required=True, metavar="DATASET=COLLECTION")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from evals.dataset import load_dataset
    from evals.metrics.retrieval import retrieval_metrics
    from rag.config import load_settings
    from rag.wiring import Wiring

    out: dict[str, Any] = {"load_avg_start": os.getloadavg(), "sets": {}}
    for item in args.set:
        dataset, _, collection = item.partition("=")
        pipeline = Wiring(load_settings(collection=collection)).pipeline()
        pipeline.retrieve("warm up", k=args.k, rerank=True)  # load both models before timing
        rows: dict[str, list[dict[str, float]]] = {"hybrid": [], "hybrid+rerank": []}
        for ex in load_dataset(dataset):
            if not ex.answerable:
                continue
            for name, rerank in (("hybrid", False), ("hybrid+rerank", True)):  # interleaved
                t = time.perf_counter()
                hits = pipeline.retrieve(ex.question, k=args.k, rerank=rerank)
                seconds = time.perf_counter() - t
                m = retrieval_metrics([(h.chunk.source, h.chunk.page) for h in hits], list(ex.sources))
                rows[name].append({"seconds": seconds, "hit@1": m["hit@1"], "hit@5": m["hit@5"], "mrr": m["mrr"]})
        summary = {}
        for name, rs in rows.items():
            secs = sorted(r["seconds"] for r in rs)
            summary[name] = {
                "n": len(rs),
                **{k: round(statistics.mean(r[k] for r in rs), 3) for k in ("hit@1", "hit@5", "mrr")},
                "p50_s": round(statistics.median(secs), 3),
                "p90_s": round(secs[int(0.9 * (len(secs) - 1))], 3),
            }
        out["sets"][Path(dataset).stem] = summary
        print(Path(dataset).stem, json.dumps(summary), flush=True)
    out["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
