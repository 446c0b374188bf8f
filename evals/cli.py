"""``rag eval`` and ``rag judge-meta``: parse options, build the parts, call the runner, render the result.

$ rag eval evals/data/gold.jsonl --out runs/today --fail-under recall@5=0.6 --fail-under rougeL=0.2
$ RAG_RETRIEVAL__K=1 rag eval evals/data/gold.jsonl --baseline runs/today     # what does k=1 cost?
$ rag judge-meta --pairs 30        # the judge's correlation with human judgments
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from rag.errors import UsageError


def _wiring(collection: str | None) -> Any:
    from rag.config import load_settings
    from rag.wiring import Wiring

    return Wiring(load_settings(**({"collection": collection} if collection else {})))


def _judge(wiring: Any, *, url: str | None, model: str | None, samples: int, steps_file: Path | None,
           criteria: list[str] | None, no_cache: bool) -> Any:  # fmt: skip
    from evals.judge import GEvalJudge, JudgeConfig

    settings = wiring.settings
    if url or model:
        judge_llm = settings.llm.model_copy(update={"base_url": url or settings.llm.base_url, "model": model})
        llm = wiring.llm_client(judge_llm)
    else:
        llm = wiring.llm()
    steps = json.loads(steps_file.read_text()) if steps_file else {}
    config = JudgeConfig(
        criteria=tuple(criteria) if criteria else JudgeConfig.criteria,
        samples=samples,
        cache_dir=None if no_cache else settings.judge_cache_path,
        steps=steps,
    )
    return GEvalJudge(llm, config)


def eval_command(
    dataset: Annotated[Path, typer.Argument(help="gold JSONL: {question, reference, sources} per line")],
    out: Annotated[Path | None, typer.Option(help="output folder (default eval-runs/<dataset>-<time>)")] = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            "--metrics",
            help="groups: retrieval, refusal, rouge, bertscore, judge (repeat or comma-separate; default all)",
        ),
    ] = None,  # fmt: skip
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under", help="METRIC=VALUE; exit 1 when the mean is lower (repeatable), e.g. recall@5=0.6"
        ),
    ] = None,  # fmt: skip
    baseline: Annotated[Path | None, typer.Option(help="an earlier run's --out folder to compare with")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="questions answered/judged at once")] = 2,
    collection: Annotated[str | None, typer.Option(help="collection to answer from (default: configured)")] = None,
    judge_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible judge endpoint (default: the answering LLM)")
    ] = None,  # fmt: skip
    judge_model: Annotated[str | None, typer.Option(help="judge model name on that endpoint")] = None,
    judge_samples: Annotated[
        int, typer.Option(min=1, help="sampled scores per judgment when the judge server gives no logprobs")
    ] = 10,  # fmt: skip
    judge_steps: Annotated[Path | None, typer.Option(help="JSON {criterion: evaluation steps} written by you")] = None,
    judge_criteria: Annotated[
        list[str] | None,
        typer.Option("--judge-criterion", help="faithfulness, relevance, correctness (repeatable; default all three)"),
    ] = None,  # fmt: skip
    no_judge_cache: Annotated[bool, typer.Option(help="do not reuse cached judge replies")] = False,
    no_progress: Annotated[bool, typer.Option(help="no progress bar (CI logs)")] = False,
) -> None:
    """Answer every question of DATASET from the configured index, score the answers, write results.jsonl,
    summary.json and report.html; exit 1 when a --fail-under threshold is missed."""
    from evals.runner import METRIC_GROUPS, EvalOptions, parse_thresholds, run_eval

    wiring = _wiring(collection)
    groups = tuple(g.strip() for item in (metrics or list(METRIC_GROUPS)) for g in item.split(",") if g.strip())
    unknown = sorted(set(groups) - set(METRIC_GROUPS))
    if unknown:
        raise UsageError(f"unknown metric group(s) {', '.join(unknown)}; use {', '.join(METRIC_GROUPS)}")
    pipeline = wiring.pipeline()  # CollectionNotFound when there is no index: `rag eval` ingests nothing
    judge = None
    if "judge" in groups:
        judge = _judge(wiring, url=judge_url, model=judge_model, samples=judge_samples, steps_file=judge_steps,
                       criteria=judge_criteria, no_cache=no_judge_cache)  # fmt: skip
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out = Path("eval-runs") / f"{dataset.stem}-{stamp}"
    options = EvalOptions(
        metrics=groups,
        concurrency=concurrency,
        fail_under=parse_thresholds(fail_under or []),
        baseline=baseline,
        progress=not no_progress and sys.stderr.isatty(),
    )
    result = run_eval(
        dataset, out, answerer=pipeline, options=options, judge=judge, settings=wiring.settings,
        llm_model=pipeline.llm.model,
    )  # fmt: skip
    _render(result)
    if result.failures:
        for line in result.failures:
            typer.echo(line, err=True)
        raise typer.Exit(1)


def _render(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result.summary
    table = Table(title=f"{s['n']} questions, {s['timing']['questions_per_minute']} questions/minute")
    for col in ("metric", "mean", "95% CI", "n") + (("vs baseline",) if s.get("baseline") else ()):
        table.add_column(col)
    diffs = (s.get("baseline") or {}).get("differences", {})
    for name, m in s["metrics"].items():
        if name.startswith(("hit@", "recall@")) and name not in ("hit@1", "hit@5", "recall@5", "recall@10"):
            continue
        row = [name, f"{m['mean']:.3f}", f"{m['ci_low']:.3f}-{m['ci_high']:.3f}", str(m["n"])]
        if diffs:
            d = diffs.get(name)
            row.append(f"{d['mean']:+.3f} ({d['ci_low']:+.3f}..{d['ci_high']:+.3f})" if d else "")
        table.add_row(*row)
    console = Console(stderr=False)
    console.print(table)
    if s["errors"]:
        console.print(f"[red]{len(s['errors'])} questions failed[/red]: {s['errors'][0]['error']}")
    if s.get("judge") and s["judge"].get("unparsable"):
        console.print(f"[yellow]{s['judge']['unparsable']} judge replies were unparsable[/yellow]")
    console.print(f"wrote {result.out_dir}/results.jsonl, summary.json, report.html")


def judge_meta_command(
    pairs: Annotated[int, typer.Option(min=3, help="Lee document pairs to judge (stratified sample)")] = 30,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    judge_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible judge endpoint (default: the configured/embedded LLM)")
    ] = None,  # fmt: skip
    judge_model: Annotated[str | None, typer.Option(help="judge model name on that endpoint")] = None,
    judge_samples: Annotated[int, typer.Option(min=1, help="sampled scores when no logprobs")] = 10,
    out: Annotated[Path | None, typer.Option(help="write the result as JSON here too")] = None,
    no_embedding: Annotated[bool, typer.Option(help="skip the embedding-model reference")] = False,
) -> None:
    """Correlate the judge with human similarity judgments (Lee et al., shipped in gensim): Spearman/Kendall."""
    from evals.meta import judge_meta

    wiring = _wiring(None)
    judge = _judge(wiring, url=judge_url, model=judge_model, samples=judge_samples, steps_file=None,
                   criteria=["similarity"], no_cache=False)  # fmt: skip
    embedder = None if no_embedding else wiring.embedder()
    result = judge_meta(judge, pairs=pairs, seed=seed, embedder=embedder, progress=sys.stderr.isatty())
    text = json.dumps({k: v for k, v in result.items() if k != "judge"} | {"judge_method": result["judge"]["method"]},
                      indent=2)  # fmt: skip
    typer.echo(text)
    if out:
        out.write_text(json.dumps(result, indent=2))
