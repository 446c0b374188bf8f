"""`rag eval` end to end on fakes at our seams (fake embedder + LLM, the real pipeline, store and metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evals.judge import GEvalJudge, JudgeConfig
from evals.runner import EvalOptions, run_eval
from rag.config import Settings
from rag.errors import ConfigError
from rag.pipeline import RagPipeline
from rag.wiring import Wiring, overriding
from tests.fakes import index_chunks

DOCS = [
    ("/docs/paris.pdf", 1, "Paris is the capital of France. It lies on the Seine river."),
    ("/docs/paris.pdf", 2, "The Eiffel Tower was completed in 1889 for the World Fair."),
    ("/docs/rome.md", None, "Rome is the capital of Italy. The Colosseum is an amphitheatre in Rome."),
    ("/docs/berlin.txt", None, "Berlin is the capital of Germany. The Berlin Wall fell in 1989."),
    ("/docs/madrid.txt", None, "Madrid is the capital of Spain. The Prado is a museum in Madrid."),
]
GOLD = [
    {"question": "What is the capital of France?", "reference": "Paris is the capital of France.",
     "sources": ["paris.pdf#1"]},
    {"question": "When was the Eiffel Tower completed?", "reference": "The Eiffel Tower was completed in 1889.",
     "sources": ["paris.pdf#2"]},
    {"question": "What is the capital of Italy?", "reference": "Rome is the capital of Italy.", "sources": ["rome.md"]},
    {"question": "When did the Berlin Wall fall?", "reference": "The Berlin Wall fell in 1989.",
     "sources": ["berlin.txt"]},
    {"question": "What is the airspeed of a swallow?", "reference": "", "sources": []},
]  # fmt: skip


@pytest.fixture
def gold(tmp_path: Path) -> Path:
    p = tmp_path / "gold.jsonl"
    p.write_text("".join(json.dumps(g) + "\n" for g in GOLD))
    return p


def make_pipeline(fakes, fake_embedder, *, k: int = 3, broken: bool = False) -> RagPipeline:
    """The real pipeline over a real (memory-backend) collection in this test's data dir, with fakes at the seams."""
    settings = Settings(store={"backend": "memory"}, retrieval={"mode": "dense", "k": k})
    index_chunks(settings, fake_embedder, [fakes.chunk(src, text, page, i) for i, (src, page, text) in enumerate(DOCS)])
    llm = fakes.AnsweringLLM([t for _, _, t in DOCS], broken=broken)
    return Wiring(settings, embedder=fake_embedder, llm=llm).pipeline()


def options(**kw) -> EvalOptions:
    kw.setdefault("metrics", ("retrieval", "refusal", "rouge", "bertscore", "judge"))
    return EvalOptions(progress=False, **kw)


def test_run_writes_three_artefacts_with_plots(fakes, fake_embedder, gold, tmp_path):
    judge = GEvalJudge(fakes.JudgeLLM({"5": 0.7, "4": 0.3}), JudgeConfig(cache_dir=tmp_path / "jc"))
    result = run_eval(gold, tmp_path / "run", answerer=make_pipeline(fakes, fake_embedder), options=options(),
                      judge=judge, settings=Settings(), llm_model="fake-answerer")  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    paris = rows[0]
    assert paris["answer"].startswith("Paris is the capital of France")
    assert paris["metrics"]["hit@1"] == 1.0 and paris["metrics"]["rouge1"] > 0.8
    assert paris["metrics"]["bertscore_f1"] > 0.85
    assert paris["metrics"]["judge_faithfulness"] == pytest.approx(4.7)
    swallow = rows[4]
    assert swallow["metrics"]["refusal_correct"] == 1.0
    assert "rouge1" not in swallow["metrics"] and swallow["metrics"]["hit@1"] is None  # kept out of the means
    assert "judge_correctness" not in swallow["metrics"]

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metrics"]["rouge1"]["n"] == 4 and summary["metrics"]["refusal_correct"]["n"] == 5
    m = summary["metrics"]["recall@3"]
    assert m["ci_low"] <= m["mean"] <= m["ci_high"]
    prov = summary["provenance"]
    for key in ("index_id", "collection", "embedding_model", "chunk", "llm_model", "judge_model", "prompt_version",
                "dataset_sha256", "git_commit"):  # fmt: skip
        assert key in prov
    assert prov["judge_model"] == "fake-judge" and summary["judge"]["method"] == "logprobs"

    report = (tmp_path / "run" / "report.html").read_text()
    assert report.count('<img alt="plot" src="data:image/png;base64,') >= 2  # retrieval curve + distributions
    assert "What is the airspeed of a swallow?" in report and "http" not in report.split("<body>")[0]
    assert result.failures == []


def test_planted_regression_fails_thresholds_and_baseline_lists_worse(fakes, fake_embedder, gold, tmp_path):
    good = run_eval(gold, tmp_path / "good", answerer=make_pipeline(fakes, fake_embedder, k=3),
                    options=options(metrics=("retrieval", "refusal", "rouge")))  # fmt: skip
    assert good.summary["metrics"]["recall@3"]["mean"] == 1.0
    thresholds = {"recall@3": 0.9, "rougeL": 0.5, "refusal_correct": 0.9}
    bad = run_eval(
        gold, tmp_path / "bad", answerer=make_pipeline(fakes, fake_embedder, k=1, broken=True),
        options=options(metrics=("retrieval", "refusal", "rouge"), fail_under=thresholds, baseline=tmp_path / "good"),
    )  # fmt: skip
    assert any(f.startswith("FAIL rougeL = ") and "< 0.500 (95% CI" in f for f in bad.failures)
    assert any(f.startswith("FAIL refusal_correct = ") for f in bad.failures)
    diff = bad.summary["baseline"]["differences"]["rougeL"]
    assert diff["mean"] < 0 and diff["ci_high"] < 0 and diff["significant"]
    assert "What is the capital of France?" in bad.summary["baseline"]["questions_worse"]
    assert "Comparison with the baseline" in (tmp_path / "bad" / "report.html").read_text()


def test_unknown_threshold_metric_fails_before_answering(fakes, fake_embedder, gold, tmp_path):
    pipeline = make_pipeline(fakes, fake_embedder)
    with pytest.raises(ConfigError, match="unknown metric"):
        run_eval(
            gold, tmp_path / "x", answerer=pipeline, options=options(metrics=("rouge",), fail_under={"recal@5": 1})
        )
    assert pipeline.llm.calls == 0


def test_cli_exit_codes_and_one_line_reasons(fakes, fake_embedder, gold, tmp_path, monkeypatch):
    from rag.cli import app

    make_pipeline(fakes, fake_embedder)  # the index the command answers from
    for name, value in {"STORE__BACKEND": "memory", "RETRIEVAL__K": "1", "RETRIEVAL__MODE": "dense"}.items():
        monkeypatch.setenv(f"RAG_{name}", value)
    broken = fakes.AnsweringLLM([t for _, _, t in DOCS], broken=True)
    runner = CliRunner()
    args = ["eval", str(gold), "--out", str(tmp_path / "cli"), "--metrics", "retrieval,refusal,rouge",
            "--no-progress"]  # fmt: skip
    with overriding(embedder=fake_embedder, llm=broken):
        r = runner.invoke(app, [*args, "--fail-under", "rougeL=0.5", "--fail-under", "hit@1=0.1"])
        assert r.exit_code == 1, r.output
        assert "FAIL rougeL = " in r.output and "FAIL hit@1" not in r.output
        assert (tmp_path / "cli" / "report.html").exists()
        r = runner.invoke(app, [*args, "--fail-under", "hit@1=0.1"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, [*args, "--fail-under", "rougeL"])
        assert r.exit_code == 2 and "METRIC=VALUE" in r.output
        r = runner.invoke(app, [*args, "--metrics", "rouge,magic"])
        assert r.exit_code == 2 and "unknown metric group(s) magic" in r.output
        r = runner.invoke(app, [*args, "--metrics", "judge", "--judge-criterion", "helpfulness"])
        assert r.exit_code == 2 and "unknown judge criteria" in r.output and "Traceback" not in r.output
        r = runner.invoke(app, [*args, "--collection", "nosuch"])
        assert r.exit_code == 2 and "no collection 'nosuch'" in r.output


def test_a_failed_judgment_is_recorded_not_fatal(fakes, fake_embedder, gold, tmp_path):
    from rag.errors import LLMError

    class FlakyJudge(fakes.JudgeLLM):
        def complete(self, messages, **kw):
            if "Answer relevance (1-5) -" in messages[-1].content and kw.get("top_logprobs"):
                raise LLMError("the LLM did not answer within 120 s")
            return super().complete(messages, **kw)

    judge = GEvalJudge(FlakyJudge(), JudgeConfig())
    result = run_eval(gold, tmp_path / "run", answerer=make_pipeline(fakes, fake_embedder), judge=judge,
                      options=options(metrics=("refusal", "judge")))  # fmt: skip
    assert "judge_relevance" not in result.summary["metrics"]  # no value: left out, not zero
    assert result.summary["metrics"]["judge_faithfulness"]["n"] == 5
    assert result.summary["judge"]["errors"] == 5
    assert result.rows[0]["judge"]["relevance"]["method"] == "error"
