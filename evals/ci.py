"""The CI evaluation: ingest the packaged gold corpus into a fresh collection in a temporary data dir, answer the
small CI gold set with the embedded default LLM, and fail when a metric falls below its threshold.

    $ python -m evals.ci                         # exit 1 with "FAIL metric = ..." lines on a regression
    $ python -m evals.ci --out eval-ci --judge   # keep the report; also run the (slow, weak) tiny judge

The thresholds sit below the values measured on the reference setup (see docs/benchmarks.md) with a margin for
run-to-run noise of the LLM, so a real regression in retrieval or prompting fails and noise does not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "corpus"
GOLD_CI = HERE / "data" / "gold_ci.jsonl"

# Measured on the defaults (hybrid retrieval reranked for answers, k=5, citation verification, the packaged
# Qwen2.5-Coder-0.5B Q4_K_M), 12 questions (docs/benchmarks.md, issue 11): hit@5 1.000, mrr 1.000, refusal_correct
# 0.833, rougeL 0.270 (CI 0.13-0.44), bertscore_f1 0.519 (CI 0.37-0.68), citation_precision 1.000 (n=8),
# cited_source_hit 0.800 (model alone: 0.200), facts_in_answer 0.700. Verification declines the answers no source
# supports (two wrong answers of the 0.5B model here), which costs ROUGE/BERTScore a little and is why the answer
# thresholds sit lower than before; a prompt without its sources now fails on cited_source_hit and facts instead.
# Generation is greedy (temperature 0), so a rerun of the same code gives the same answers up to floating-point
# differences between thread counts; the thresholds sit 0.07-0.2 below the measured means.
THRESHOLDS = {
    "hit@5": 0.80,
    "recall@5": 0.80,
    "mrr": 0.70,
    "refusal_correct": 0.65,
    "rougeL": 0.20,
    "bertscore_f1": 0.45,
    "citation_precision": 0.80,
    "cited_source_hit": 0.60,
    "facts_in_answer": 0.50,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.ci", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: a temp dir)")
    parser.add_argument("--judge", action="store_true", help="also run the G-Eval judge (slow; not gated)")
    parser.add_argument("--llm-url", default=None, help="an OpenAI-compatible server to use (default: the embedded)")
    # llama.cpp's server answers one request at a time: more in flight only queue up (and risk the client timeout)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)

    from evals.runner import EvalOptions, run_eval
    from ingest.pipeline import ingest_paths
    from rag.config import load_settings
    from rag.errors import RagError
    from rag.wiring import Wiring

    with tempfile.TemporaryDirectory(prefix="rag-eval-ci-") as tmp:
        try:
            base = load_settings()
            # A fresh index every time; the LLM's joined model file stays where the user's models are (joined once).
            # A shared 2-core runner can be slow: wait for the LLM rather than fail on a busy server.
            llm = {"timeout_s": max(base.llm.timeout_s, 600.0), **({"base_url": args.llm_url} if args.llm_url else {})}
            settings = load_settings(data_dir=tmp, models_dir=base.models_path, collection="eval-ci", llm=llm)
            wiring = Wiring(settings)
            out = args.out or Path(tmp) / "run"
            t = time.perf_counter()
            summary = ingest_paths([CORPUS], wiring)
            print(
                f"ingested {summary.files_seen} files, {summary.chunks_added} chunks in {time.perf_counter() - t:.0f} s"
            )
            if summary.failed:
                print(f"ingestion failed for: {[f.path for f in summary.failed]}", file=sys.stderr)
                return 1
            pipeline = wiring.pipeline()
            judge = None
            groups: tuple[str, ...] = ("retrieval", "refusal", "citations", "rouge", "bertscore")
            if args.judge:
                from evals.judge import GEvalJudge, JudgeConfig

                judge = GEvalJudge(wiring.llm(), JudgeConfig(cache_dir=base.judge_cache_path))
                groups += ("judge",)
            result = run_eval(
                GOLD_CI, out, answerer=pipeline, judge=judge, settings=settings, llm_model=pipeline.llm.model,
                options=EvalOptions(metrics=groups, fail_under=THRESHOLDS, concurrency=args.concurrency,
                                    progress=sys.stderr.isatty()),
            )  # fmt: skip
        except RagError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
        s = result.summary
        for name in [*THRESHOLDS, *(k for k in s["metrics"] if k.startswith("judge_"))]:
            m = s["metrics"].get(name)
            if m:
                bar = f" (threshold {THRESHOLDS[name]:.2f})" if name in THRESHOLDS else ""
                print(f"{name:16s} {m['mean']:.3f}  95% CI {m['ci_low']:.3f}-{m['ci_high']:.3f}  n={m['n']}{bar}")
        print(f"{s['n']} questions in {s['timing']['seconds_total']:.0f} s "
              f"({s['timing']['questions_per_minute']} questions/minute); report: {out / 'report.html'}")  # fmt: skip
        for line in result.failures:
            print(line, file=sys.stderr)
        return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
