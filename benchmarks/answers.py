"""Answer quality of the embedded LLMs side by side: the same questions, the same retrieval, one model after the
other per question (interleaved, so machine load hits every model alike), scored by the eval runner.

For each model a llama.cpp server is started on its own port (``--port`` and up), every question of every
``--set DATASET=COLLECTION`` is answered by each model in turn through ``RagPipeline.stream`` (so the time to first
token is measured), and each model's answers are then scored by ``evals.runner.run_eval`` into
``OUT/<model>/<dataset>/`` (results.jsonl, summary.json, report.html). The table printed at the end compares the
models before and after citation verification.

    $ RAG_DATA_DIR=/work/data/i11 python benchmarks/answers.py \\
        --set evals/data/gold_hard.jsonl=hard --set evals/data/gold_ci.jsonl=gold \\
        --models qwen2.5-0.5b-instruct,qwen2.5-coder-1.5b-instruct --out bench-answers

Collections must exist (``rag ingest evals/data/corpus_hard --collection hard`` ...). ``--every K`` answers every
K-th question of each set, ``--limit N`` at most N. ``--no-rerank`` answers without the cross-encoder.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROWS = [
    ("facts_in_answer_model", "facts in answer, model"),
    ("facts_in_answer", "facts in answer, verified"),
    ("cited_source_hit_model", "cited-source hit, model"),
    ("cited_source_hit", "cited-source hit, verified"),
    ("cited_source_precision_model", "cited-source precision, model"),
    ("cited_source_precision", "cited-source precision, verified"),
    ("citation_precision_model", "citation precision (ALCE), model"),
    ("citation_precision", "citation precision (ALCE), verified"),
    ("citation_recall_model", "citation recall (ALCE), model"),
    ("citation_recall", "citation recall (ALCE), verified"),
    ("declined_unanswerable_model", "unanswerable declined, model"),
    ("declined_unanswerable", "unanswerable declined, verified"),
    ("false_refusal_model", "false refusals, model"),
    ("false_refusal", "false refusals, verified"),
]


class Cached:
    """An answerer that returns answers computed earlier (``run_eval`` then only scores)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def answer(self, question: str) -> Any:
        a = self.answers[question]
        if isinstance(a, Exception):
            raise a
        return a


def _p50(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", required=True, metavar="DATASET=COLLECTION")
    parser.add_argument("--models", default="qwen2.5-0.5b-instruct,qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--port", type=int, default=int(os.environ.get("RAG_LLM__LOCAL_PORT", "8811")))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--every", type=int, default=1, help="every K-th question of each set (spread over kinds)")
    parser.add_argument("--no-rerank", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from evals.dataset import load_dataset
    from evals.runner import EvalOptions, run_eval
    from rag.config import LLMSettings, load_settings
    from rag.errors import RagError
    from rag.local_llm import start_server
    from rag.types import Answer
    from rag.wiring import Wiring

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    servers = {}
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for i, model in enumerate(models):
            llm = LLMSettings(local_model=model, local_port=args.port + i, local_threads=args.threads)
            t = time.perf_counter()
            servers[model] = start_server(llm, models_dir=load_settings().models_path,
                                          log_path=args.out / f"server-{model}.log")  # fmt: skip
            print(f"{model}: server on port {args.port + i} in {time.perf_counter() - t:.1f} s", flush=True)
        load = os.getloadavg()
        report: dict[str, Any] = {"models": models, "load_avg_start": load, "sets": {}}
        for item in args.set:
            dataset, _, collection = item.partition("=")
            examples = load_dataset(dataset)[:: args.every][: args.limit]
            pipelines = {}
            for model in models:
                overrides: dict[str, Any] = {"collection": collection, "llm": {"base_url": servers[model].url}}
                if args.no_rerank:
                    overrides["retrieval"] = {"rerank": False}
                pipelines[model] = Wiring(load_settings(**overrides)).pipeline()
            answers: dict[str, dict[str, Any]] = {m: {} for m in models}
            sub = Path(dataset).stem
            try:
                for n, ex in enumerate(examples, 1):
                    for model in models:  # interleaved: A, B, A, B ...
                        try:
                            final = None
                            for part in pipelines[model].stream(ex.question):
                                if isinstance(part, Answer):
                                    final = part
                            answers[model][ex.question] = final
                        except RagError as e:
                            answers[model][ex.question] = e
                    done = {q for q in answers[models[-1]]}
                    with open(args.out / f"answers-{sub}.pkl", "wb") as f:  # kept as we go
                        pickle.dump(answers, f)
                    print(f"{Path(dataset).name} {n}/{len(examples)}", flush=True)
            except KeyboardInterrupt:  # Ctrl+C: score the questions every model has answered
                print("interrupted: scoring the questions answered so far", flush=True)
            done = set.intersection(*(set(answers[m]) for m in models))
            examples = [ex for ex in examples if ex.question in done]
            report["sets"][sub] = {}
            for model in models:
                out = args.out / model / sub
                out.mkdir(parents=True, exist_ok=True)
                limited = out / "dataset.jsonl"  # the questions answered (all, or the first --limit)
                keep = {ex.question for ex in examples}
                lines = Path(dataset).read_text(encoding="utf-8").splitlines()
                kept = [ln for ln in lines if ln.strip() and json.loads(ln)["question"] in keep]
                limited.write_text("".join(ln + "\n" for ln in kept))
                result = run_eval(
                    limited, out, answerer=Cached(answers[model]), settings=pipelines[model].settings,
                    llm_model=model, options=EvalOptions(metrics=("retrieval", "refusal", "citations"),
                                                         concurrency=1, progress=False),
                )  # fmt: skip
                ok = [a for a in answers[model].values() if isinstance(a, Answer)]
                timing = {
                    "first_token_p50_s": _p50([a.timings["first_token"] for a in ok if "first_token" in a.timings]),
                    "total_p50_s": _p50([a.timings["total"] for a in ok]),
                    "retrieve_p50_s": _p50([a.timings["retrieve"] for a in ok if "retrieve" in a.timings]),
                    "verify_p50_s": _p50([a.timings["verify"] for a in ok if "verify" in a.timings]),
                }
                report["sets"][sub][model] = {
                    "metrics": {k: v["mean"] for k, v in result.summary["metrics"].items()},
                    "n": {k: v["n"] for k, v in result.summary["metrics"].items()},
                    "refusal": result.summary["refusal"],
                    "timing": timing,
                }
        report["load_avg_end"] = os.getloadavg()
    finally:
        for server in servers.values():
            server.stop()
    (args.out / "comparison.json").write_text(json.dumps(report, indent=2))
    for sub, per_model in report["sets"].items():
        print(f"\n## {sub}\n\n| metric | " + " | ".join(models) + " |\n|---|" + "---|" * len(models))
        for key, label in ROWS:
            cells = [per_model[m]["metrics"].get(key) for m in models]
            print(f"| {label} | " + " | ".join("—" if c is None else f"{c:.3f}" for c in cells) + " |")
        for key in ("first_token_p50_s", "total_p50_s", "retrieve_p50_s", "verify_p50_s"):
            print(f"| {key} | " + " | ".join(str(per_model[m]["timing"][key]) for m in models) + " |")
    print(f"\nload average: start {report['load_avg_start']}, end {report['load_avg_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
