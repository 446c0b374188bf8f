"""Does int8 keep retrieval quality? The gold sets answered with the same model at fp32 and at int8, paired.

The corpus of ``evals/data`` is ingested once per runtime (``onnx``: the fp32 export, the same vectors as torch;
``onnx-int8``: dynamic int8, per channel), then every answerable question of the gold sets is retrieved in ``dense``
mode (where the vectors decide alone) and ``hybrid`` (the default: BM25 + dense, fused). Per question: nDCG@10 and
hit@5 (``evals.metrics.retrieval``); per runtime the mean with a bootstrap 95% interval, and int8 - fp32 paired per
question with its interval (``evals.stats``). int8 "holds" when the interval of the difference lies above
``-margin`` for both metrics in both modes (non-inferiority), which is what ``--margin`` (default 0.02) sets.

    $ .venv/bin/python benchmarks/embedding_precision.py --json build/precision.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from evals.dataset import load_dataset  # noqa: E402
from evals.metrics.retrieval import retrieval_metrics  # noqa: E402
from evals.stats import mean_ci, paired_diff  # noqa: E402
from rag.config import Settings  # noqa: E402

METRICS = ("ndcg@10", "hit@5")
MODES = ("dense", "hybrid")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gold", default=",".join(str(p) for p in sorted((ROOT / "evals/data").glob("gold*.jsonl"))))
    ap.add_argument("--corpus", default=str(ROOT / "evals/data/corpus"))
    ap.add_argument("--runtimes", default="onnx,onnx-int8", help="the reference first")
    ap.add_argument("--margin", type=float, default=0.02, help="largest loss still called 'holds' (non-inferiority)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from ingest.pipeline import ingest_paths
    from rag.wiring import Wiring

    questions: dict[str, list[str]] = {}
    for gold in args.gold.split(","):
        for e in load_dataset(gold):
            if e.sources:
                questions.setdefault(e.question, list(e.sources))  # the sets share some questions: once each
    qs = list(questions)
    runtimes = args.runtimes.split(",")
    per_q: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    with tempfile.TemporaryDirectory(prefix="rag-precision-") as tmp:
        for rt in runtimes:
            settings = Settings(data_dir=Path(tmp) / rt, collection="gold", embedding={"runtime": rt, "cache": False})
            t = time.perf_counter()
            summary = ingest_paths([args.corpus], settings)
            print(f"{rt}: {summary.chunks_total} chunks in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            wiring = Wiring(settings)
            pipeline = wiring.pipeline()
            per_q[rt] = {}
            for mode in MODES:
                rows = []
                for q in qs:
                    hits = pipeline.retrieve(q, k=10, mode=mode)
                    rows.append(retrieval_metrics([(h.chunk.source, h.chunk.page) for h in hits], questions[q],
                                                  ks=(5, 10)))
                per_q[rt][mode] = {m: [r[m] for r in rows] for m in METRICS}
            wiring.close()
    ref, *others = runtimes
    out: dict[str, object] = {"questions": len(qs), "gold": args.gold, "margin": args.margin, "results": {}}
    lines = [f"{len(qs)} answerable questions ({args.gold}); bootstrap 95% intervals; paired per question", "",
             "| mode | metric | " + " | ".join(runtimes) + " | " + " | ".join(f"{o} - {ref}" for o in others) + " |",
             "|---|---|" + "---|" * (len(runtimes) + len(others))]
    holds = True
    for mode in MODES:
        for m in METRICS:
            cells = []
            for rt in runtimes:
                ci = mean_ci(per_q[rt][mode][m])
                cells.append(f"{ci['mean']:.3f} [{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]")
                out["results"][f"{mode} {m} {rt}"] = ci  # type: ignore[index]
            for o in others:
                d = paired_diff(per_q[o][mode][m], per_q[ref][mode][m])
                cells.append(f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
                out["results"][f"{mode} {m} {o}-{ref}"] = d  # type: ignore[index]
                holds = holds and d["ci_low"] > -args.margin
            lines.append(f"| {mode} | {m} | " + " | ".join(cells) + " |")
    out["int8_holds"] = holds
    lines += ["", f"non-inferior within {args.margin}: {'yes' if holds else 'no'} (lower bound of every paired "
                  "difference above -margin)"]
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
