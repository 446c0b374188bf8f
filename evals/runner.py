"""Run an evaluation: answer every gold question with the pipeline, score, compare, write the three artefacts.

    results.jsonl   one line per question: answer, retrieved and cited sources, timings, every metric
    summary.json    per metric: mean, bootstrap 95% CI, n; provenance; judge notes; baseline comparison; thresholds
    report.html     self-contained (plots as base64 PNG): distributions, retrieval curve, per-question table

Nothing is ingested here: the pipeline answers from the configured index. Retrieval metrics are computed on the
sources the pipeline actually put in the prompt (``Answer.retrieved``, best first), so a change of ``k`` shows up
in them; hit@k for k beyond the pipeline's k equals hit at its k.

Example::

    >>> result = run_eval("evals/data/gold_ci.jsonl", "runs/ci", answerer=RagPipeline(settings))  # doctest: +SKIP
    >>> result.failures
    []
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from evals.dataset import GoldExample, dataset_hash, load_dataset
from evals.metrics.retrieval import DEFAULT_KS
from evals.stats import mean_ci, paired_diff
from rag.errors import ConfigError, RagError
from rag.types import Answer

log = logging.getLogger(__name__)

METRIC_GROUPS = ("retrieval", "refusal", "citations", "rouge", "bertscore", "judge")
DEFAULT_METRICS = METRIC_GROUPS


class Answerer(Protocol):
    """What the runner needs from the pipeline (``rag.pipeline.RagPipeline`` satisfies it)."""

    def answer(self, question: str) -> Answer: ...


def metric_names(groups: Sequence[str], judge_criteria: Sequence[str] = ()) -> list[str]:
    """The metric names the selected groups produce (what ``--fail-under`` may name)."""
    names: list[str] = []
    for g in groups:
        if g == "retrieval":
            names += [f"hit@{k}" for k in DEFAULT_KS] + [f"recall@{k}" for k in DEFAULT_KS] + ["mrr", "ndcg@10"]
        elif g == "refusal":
            names += ["refusal_correct", "declined_unanswerable", "false_refusal", "refusal_correct_model",
                      "declined_unanswerable_model", "false_refusal_model"]  # fmt: skip
        elif g == "citations":
            names += ["citation_precision", "citation_recall", "citation_precision_model", "citation_recall_model",
                      "cited_source_hit", "cited_source_precision", "cited_source_hit_model",
                      "cited_source_precision_model", "facts_in_answer", "facts_in_answer_model"]  # fmt: skip
        elif g == "rouge":
            names += ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        elif g == "bertscore":
            names += ["bertscore_p", "bertscore_r", "bertscore_f1"]
        elif g == "judge":
            names += [f"judge_{c}" for c in judge_criteria]
        else:
            raise ConfigError(f"unknown metric group {g!r}; choose from {', '.join(METRIC_GROUPS)}")
    return names


def parse_thresholds(items: Sequence[str]) -> dict[str, float]:
    """``["recall@5=0.6", "rougeL=0.2"]`` -> {"recall@5": 0.6, "rougeL": 0.2}."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--fail-under expects METRIC=VALUE (e.g. recall@5=0.6), got {item!r}") from None
    return out


@dataclass(frozen=True)
class EvalOptions:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    concurrency: int = 2
    fail_under: Mapping[str, float] = field(default_factory=dict)
    baseline: Path | None = None
    progress: bool = True
    bertscore: Any = None  # evals.metrics.bertscore.BertScoreConfig; None: defaults


@dataclass
class EvalResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    failures: list[str]  # one line per missed threshold


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), disable=not enabled
    )


def _parallel(fn: Callable[[Any], Any], items: Sequence[Any], workers: int, progress: Any, label: str) -> list[Any]:
    """``fn`` over items with at most ``workers`` in flight, results in input order, advancing a progress bar."""
    task = progress.add_task(label, total=len(items))
    out: list[Any] = [None] * len(items)

    def run(i: int) -> None:
        out[i] = fn(items[i])
        progress.advance(task)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for f in [pool.submit(run, i) for i in range(len(items))]:
            f.result()
    return out


def _answer(answerer: Answerer, question: str) -> Answer:
    """The answer, streamed when the answerer can (its timings then hold the time to first token)."""
    stream = getattr(answerer, "stream", None)
    if stream is None:
        return answerer.answer(question)
    final = None
    for part in stream(question):
        if isinstance(part, Answer):
            final = part
    if final is None:
        raise RagError("the pipeline's stream ended without an answer")
    return final


def _answer_row(answerer: Answerer, ex: GoldExample) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": ex.id,
        "line": ex.line,
        "question": ex.question,
        "reference": ex.reference,
        "gold_sources": list(ex.sources),
        "answerable": ex.answerable,
        "facts": list(ex.facts),
        "kind": ex.kind,
    }
    t = time.perf_counter()
    try:
        a = _answer(answerer, ex.question)
    except RagError as e:
        row.update(answer=None, error=str(e), retrieved=[], cited=[], seconds=time.perf_counter() - t, metrics={})
        return row
    row.update(
        answer=a.text,
        error=None,
        retrieved=[
            {"source": h.chunk.source, "page": h.chunk.page, "score": round(float(h.score), 6), "text": h.chunk.text}
            for h in a.retrieved
        ],
        cited=[{"n": c.n, "source": c.hit.chunk.source, "page": c.hit.chunk.page} for c in a.citations],
        # what the model wrote and cited, before verification (``rag.verify``) checked it
        model_answer=a.model_text if a.model_text is not None else a.text,
        sentences=[
            {"text": s.text, "citations": list(s.citations), "model_citations": list(s.model_citations),
             "supported": s.supported, "score": s.score}
            for s in a.sentences
        ],
        timings=dict(a.timings),
        seconds=time.perf_counter() - t,
        metrics={},
    )
    return row


def _model_cited(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The sources the model itself cited (before verification), in order of first citation."""
    seen: dict[int, None] = {}
    for s in r.get("sentences") or []:
        for n in s.get("model_citations") or ():
            seen.setdefault(n, None)
    if not r.get("sentences"):  # verification off: the answer's citations are the model's
        return list(r["cited"])
    return [{"n": n, **{k: r["retrieved"][n - 1][k] for k in ("source", "page")}} for n in seen
            if 0 < n <= len(r["retrieved"])]  # fmt: skip


def _score_citations(rows: Sequence[dict[str, Any]], support_judge: Any) -> None:
    from evals.dataset import GoldSource
    from evals.metrics.citations import SupportJudge, citation_quality, cited_source_metrics, facts_in_answer
    from evals.metrics.refusal import is_refusal

    if support_judge is None:
        from rag.config import VerifySettings
        from rag.verify import Verifier

        v = VerifySettings()
        support_judge = SupportJudge(Verifier(v).scorer, min_score=v.min_score, min_evidence=v.min_evidence)
    for r in rows:
        m = r["metrics"]
        passages = [h["text"] for h in r["retrieved"]]
        if r["answerable"]:
            gold = [GoldSource.parse(g) for g in r["gold_sources"]]
            final = cited_source_metrics([] if is_refusal(r["answer"]) else r["cited"], gold)
            model = cited_source_metrics([] if is_refusal(r["model_answer"]) else _model_cited(r), gold)
            m.update(final)
            m.update({f"{k}_model": v for k, v in model.items()})
            if r["facts"]:
                m["facts_in_answer"] = 0.0 if is_refusal(r["answer"]) else facts_in_answer(r["answer"], r["facts"])
                m["facts_in_answer_model"] = (0.0 if is_refusal(r["model_answer"])
                                              else facts_in_answer(r["model_answer"], r["facts"]))  # fmt: skip
        sentences = r.get("sentences") or []
        if sentences and passages and not is_refusal(r["answer"]):
            q = citation_quality(sentences, passages, support_judge, field="citations")
            m["citation_precision"], m["citation_recall"] = q["precision"], q["recall"]
        if sentences and passages and not is_refusal(r["model_answer"]):
            q = citation_quality(sentences, passages, support_judge, field="model_citations")
            m["citation_precision_model"], m["citation_recall_model"] = q["precision"], q["recall"]


def refusal_summary(rows: Sequence[dict[str, Any]], *, field: str = "answer") -> dict[str, Any]:
    """Refusal precision and recall (a refusal is right when the question is unanswerable) and false refusals,
    overall and for in-domain unanswerable questions (``kind`` = "unanswerable_in_domain")."""
    from evals.metrics.refusal import is_refusal

    ok = [r for r in rows if r["error"] is None]
    refused = [r for r in ok if is_refusal(r[field])]
    unanswerable = [r for r in ok if not r["answerable"]]
    answerable = [r for r in ok if r["answerable"]]
    in_domain = [r for r in unanswerable if r.get("kind") == "unanswerable_in_domain"]

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        "refused": len(refused),
        "precision": share(sum(not r["answerable"] for r in refused), len(refused)),
        "recall": share(sum(is_refusal(r[field]) for r in unanswerable), len(unanswerable)),
        "in_domain_recall": share(sum(is_refusal(r[field]) for r in in_domain), len(in_domain)),
        "in_domain_n": len(in_domain),
        "false_refusal_rate": share(sum(is_refusal(r[field]) for r in answerable), len(answerable)),
        "unanswerable_n": len(unanswerable),
        "answerable_n": len(answerable),
    }


def score_rows(
    rows: list[dict[str, Any]], groups: Sequence[str], *, judge: Any = None, bertscore_config: Any = None,
    concurrency: int = 2, progress: Any = None, support_judge: Any = None,
) -> None:  # fmt: skip
    """Add every selected metric to each row's ``metrics`` (None where a metric does not apply)."""
    from evals.metrics.refusal import is_refusal, refusal_correct
    from evals.metrics.retrieval import retrieval_metrics

    ok = [r for r in rows if r["error"] is None]
    with_ref = [r for r in ok if r["answerable"]]
    if "retrieval" in groups:
        for r in ok:
            ranked = [(h["source"], h["page"]) for h in r["retrieved"]]
            r["metrics"].update(retrieval_metrics(ranked, r["gold_sources"]))
    if "refusal" in groups:
        for r in ok:
            m, model = r["metrics"], r.get("model_answer", r["answer"])
            m["refusal_correct"] = refusal_correct(r["answer"], answerable=r["answerable"])
            m["refusal_correct_model"] = refusal_correct(model, answerable=r["answerable"])
            key = "false_refusal" if r["answerable"] else "declined_unanswerable"
            m[key], m[f"{key}_model"] = float(is_refusal(r["answer"])), float(is_refusal(model))
    if "citations" in groups:
        for r in ok:
            r.setdefault("model_answer", r["answer"])
        _score_citations(ok, support_judge)
    if "rouge" in groups:
        from evals.metrics.rouge import rouge

        for r, s in zip(
            with_ref, rouge([r["answer"] for r in with_ref], [r["reference"] for r in with_ref]), strict=True
        ):
            r["metrics"].update(s)
    if "bertscore" in groups and with_ref:
        from evals.metrics.bertscore import BertScorer

        scores = BertScorer(bertscore_config).score([r["answer"] for r in with_ref], [r["reference"] for r in with_ref])
        for r, (p, rc, f) in zip(with_ref, scores, strict=True):
            r["metrics"].update(bertscore_p=p, bertscore_r=rc, bertscore_f1=f)
    if "judge" in groups and judge is not None:
        from evals.judge import format_sources

        judge_errors: list[str] = []
        for c in judge.config.criteria:
            judge.steps_for(c)  # generate (or load) the evaluation steps once, before the threads start
        jobs = []
        for r in ok:
            for c in judge.config.criteria:
                if c == "correctness" and not r["answerable"]:
                    continue  # no reference to compare with
                jobs.append((r, c))

        def run(job: tuple[dict[str, Any], str]) -> None:
            r, c = job
            fields = {
                "question": r["question"],
                "answer": r["answer"],
                "reference": r["reference"],
                "sources": format_sources([h["text"] for h in r["retrieved"]]),
            }
            try:
                j = judge.judge(c, **fields)
            except RagError as e:  # one slow or failed judgment must not throw away the whole run
                r["metrics"][f"judge_{c}"] = None
                r.setdefault("judge", {})[c] = {"score": None, "method": "error", "error": str(e)}
                judge_errors.append(str(e))
                return
            r["metrics"][f"judge_{c}"] = j.score
            r.setdefault("judge", {})[c] = {"score": j.score, "method": j.method, "distribution": dict(j.distribution)}

        _parallel(run, jobs, concurrency, progress or _progress(False), "judging")
        if judge_errors:
            log.warning("%d judgments failed (left out of the judge means); the first: %s", len(judge_errors),
                        judge_errors[0])  # fmt: skip
            judge.counts["error"] += len(judge_errors)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def index_fingerprint(collection_dir: Path) -> str | None:
    """A hash of the index files (relative path, size, mtime): changes whenever the index is rebuilt or updated."""
    import hashlib

    if not collection_dir.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(collection_dir.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(collection_dir)}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


def provenance(
    settings: Any, dataset: Path, *, llm_model: str | None, judge: Any = None, started: datetime | None = None
) -> dict[str, Any]:
    """Everything needed to know what was measured: index, models, chunking, prompts, dataset, code."""
    out: dict[str, Any] = {
        "dataset": str(dataset),
        "dataset_sha256": dataset_hash(dataset),
        "git_commit": _git_commit(),
        "llm_model": llm_model,
        "judge_model": judge.model if judge is not None else None,
        "started_utc": (started or datetime.now(UTC)).isoformat(timespec="seconds"),
    }
    try:
        from rag.prompt import PROMPT_VERSION

        out["prompt_version"] = PROMPT_VERSION
    except ImportError:
        out["prompt_version"] = None
    if judge is not None:
        from evals.judge import JUDGE_PROMPT_VERSION

        out["judge_prompt_version"] = JUDGE_PROMPT_VERSION
    if settings is not None:
        from rag.collection import collections_root

        collection_root = collections_root(settings) / settings.collection
        out.update(
            collection=settings.collection,
            collection_dir=str(collection_root),
            index_id=index_fingerprint(collection_root),
            store_backend=settings.store.backend,
            embedding_model=settings.embedding.model,
            chunk={"size_tokens": settings.chunk.size_tokens, "overlap_tokens": settings.chunk.overlap_tokens},
            retrieval=settings.retrieval.model_dump(),
            llm_base_url=settings.llm.base_url,
            llm_max_tokens=settings.llm.max_tokens,
            llm_temperature=settings.llm.temperature,
        )
    return out


def summarize(rows: list[dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Mean, 95% CI and n per metric; metrics that never applied are left out."""
    out = {}
    for name in names:
        stats = mean_ci([r["metrics"].get(name) for r in rows])
        if stats["n"]:
            out[name] = stats
    return out


def compare(rows: list[dict[str, Any]], baseline_dir: Path, names: Sequence[str]) -> dict[str, Any]:
    """Paired differences (this run - baseline) per metric over the questions both runs have, and what got worse."""
    path = Path(baseline_dir) / "results.jsonl"
    if not path.is_file():
        raise ConfigError(f"--baseline {baseline_dir}: no results.jsonl there; pass the --out folder of an earlier run")
    base = {}
    for line in path.read_text().splitlines():
        if line.strip():
            b = json.loads(line)
            base[b["id"]] = b
    paired = [(r, base[r["id"]]) for r in rows if r["id"] in base]
    diffs: dict[str, Any] = {}
    worse: list[dict[str, Any]] = []
    for name in names:
        cur = [r["metrics"].get(name) for r, _ in paired]
        old = [b.get("metrics", {}).get(name) for _, b in paired]
        d = paired_diff(cur, old)
        if d["n"]:
            diffs[name] = d | {"baseline_mean": mean_ci(old)["mean"], "current_mean": mean_ci(cur)["mean"]}
        for (r, _), c, o in zip(paired, cur, old, strict=True):
            if c is not None and o is not None and c < o - 1e-9:
                worse.append({"id": r["id"], "question": r["question"], "metric": name, "before": o, "after": c})
    worse.sort(key=lambda w: (w["id"], w["metric"]))
    return {
        "baseline_dir": str(baseline_dir),
        "paired_questions": len(paired),
        "only_in_this_run": sum(1 for r in rows if r["id"] not in base),
        "differences": diffs,
        "worse": worse,
        "questions_worse": sorted({w["question"] for w in worse}),
    }


def check_thresholds(metrics: Mapping[str, Mapping[str, Any]], thresholds: Mapping[str, float]) -> list[str]:
    """One line per missed threshold, e.g. ``FAIL recall@5 = 0.40 < 0.60 (95% CI 0.25-0.55, n=20)``."""
    failures = []
    for name, minimum in thresholds.items():
        m = metrics.get(name)
        if m is None or m.get("mean") is None:
            failures.append(f"FAIL {name}: no value in this run (no question it applies to, or every answer failed)")
        elif m["mean"] < minimum:
            failures.append(
                f"FAIL {name} = {m['mean']:.3f} < {minimum:.3f} "
                f"(95% CI {m['ci_low']:.3f}-{m['ci_high']:.3f}, n={m['n']})"
            )
    return failures


def run_eval(
    dataset: str | Path,
    out_dir: str | Path,
    *,
    answerer: Answerer,
    options: EvalOptions | None = None,
    judge: Any = None,
    settings: Any = None,
    llm_model: str | None = None,
) -> EvalResult:
    """Answer, score, compare, and write ``results.jsonl``, ``summary.json`` and ``report.html`` into ``out_dir``."""
    from evals.report import write_report

    options = options or EvalOptions()
    dataset = Path(dataset)
    examples = load_dataset(dataset)
    criteria = tuple(judge.config.criteria) if judge is not None and "judge" in options.metrics else ()
    names = metric_names(options.metrics, criteria)
    unknown = [t for t in options.fail_under if t not in names]
    if unknown:  # a typo must not pass silently: check before spending minutes answering
        raise ConfigError(f"--fail-under names unknown metric(s) {unknown}; this run computes: {', '.join(names)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with _progress(options.progress) as progress:
        rows = _parallel(lambda ex: _answer_row(answerer, ex), examples, options.concurrency, progress, "answering")
        if all(r["error"] for r in rows):
            raise RagError(f"every question failed; the first error: {rows[0]['error']}")
        t_answer = time.perf_counter() - t0
        score_rows(
            rows, options.metrics, judge=judge if criteria else None, bertscore_config=options.bertscore,
            concurrency=options.concurrency, progress=progress,
        )  # fmt: skip
    seconds = time.perf_counter() - t0

    metrics = summarize(rows, names)
    kinds = sorted({r["kind"] for r in rows if r.get("kind")})
    summary: dict[str, Any] = {
        "n": len(rows),
        "answerable": sum(r["answerable"] for r in rows),
        "unanswerable": sum(not r["answerable"] for r in rows),
        "errors": [{"question": r["question"], "error": r["error"]} for r in rows if r["error"]],
        "metrics": metrics,
        "refusal": {"after_verification": refusal_summary(rows), "model": refusal_summary(rows, field="model_answer")}
        if "refusal" in options.metrics and any(r["error"] is None for r in rows) else None,
        "by_kind": {k: summarize([r for r in rows if r.get("kind") == k], names) for k in kinds},
        "provenance": provenance(
            settings, dataset, llm_model=llm_model, judge=judge if criteria else None, started=started
        ),
        "judge": judge.stats() if criteria else None,
        "timing": {
            "seconds_total": round(seconds, 2),
            "seconds_answering": round(t_answer, 2),
            "questions_per_minute": round(60 * len(rows) / seconds, 2) if seconds else None,
            "concurrency": options.concurrency,
        },
        "notes": [
            "Means with percentile-bootstrap 95% CIs (2000 resamples). Unanswerable questions (empty reference) are "
            "kept out of ROUGE, BERTScore, judge correctness and retrieval; refusal_correct covers all questions.",
            "Retrieval metrics are computed on the sources the pipeline put in the prompt, best first.",
            "*_model metrics score what the model wrote and cited, before citation verification (rag.verify); the "
            "others score the answer the user gets. Citation precision/recall (ALCE) use rag.verify's support "
            "scorer as the judge (see evals/metrics/citations.py); cited_source_* compare with the gold sources.",
        ],
    }
    if options.baseline is not None:
        summary["baseline"] = compare(rows, options.baseline, names)
    failures = check_thresholds(metrics, options.fail_under)
    summary["thresholds"] = {"fail_under": dict(options.fail_under), "failures": failures, "passed": not failures}

    with open(out / "results.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    write_report(out / "report.html", rows, summary)
    return EvalResult(out, rows, summary, failures)
