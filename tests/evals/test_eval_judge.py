"""G-Eval judge: logprob weighting, the no-logprob fallback, parsing, and the cache (fakes at the LLMClient seam)."""

from __future__ import annotations

import logging
import math

import pytest

from evals.judge import GEvalJudge, JudgeConfig, parse_score, score_from_logprobs, score_position
from rag.errors import UsageError
from rag.types import TokenLogprob

FIELDS = {"question": "Who wrote it?", "answer": "Ada wrote it [1].", "sources": "[1] Ada wrote it."}


def test_score_is_probability_weighted_and_renormalised_over_score_tokens():
    alts = [TokenLogprob("5", math.log(0.4)), TokenLogprob(" 4", math.log(0.2)), TokenLogprob("4", math.log(0.2)),
            TokenLogprob("The", math.log(0.2))]  # fmt: skip
    score, dist = score_from_logprobs(alts)
    # "The" is dropped, " 4" and "4" merge: p(5)=0.5, p(4)=0.5
    assert score == pytest.approx(4.5)
    assert dist == pytest.approx({"4": 0.5, "5": 0.5})
    assert score_from_logprobs([TokenLogprob("Yes", -0.1)]) is None


def test_score_position_skips_json_prefix():
    tops = [(TokenLogprob('{"', 0.0),), (TokenLogprob("score", 0.0),), (TokenLogprob('":', 0.0),),
            (TokenLogprob(" 3", -0.2), TokenLogprob(" 4", -2.0))]  # fmt: skip
    assert score_position(tops) == 3


def test_judge_uses_logprobs_and_generates_steps_once(fakes, tmp_path):
    llm = fakes.JudgeLLM({"5": 0.6, "4": 0.3, "3": 0.1})
    judge = GEvalJudge(llm, JudgeConfig(cache_dir=tmp_path / "cache"))
    j = judge.judge("faithfulness", **FIELDS)
    assert j.method == "logprobs"
    assert j.score == pytest.approx(5 * 0.6 + 4 * 0.3 + 3 * 0.1)
    judge.judge("faithfulness", question="Q2?", answer="A2", sources="[1] S2")
    steps_calls = [c for c in llm.calls if c["top_logprobs"] is None]
    assert len(steps_calls) == 1  # evaluation steps generated once per criterion
    prompt = llm.calls[-1]["messages"][-1].content
    assert (
        "Evaluation Steps:" in prompt and "1. Read the answer." in prompt and prompt.endswith("- Faithfulness (1-5):")
    )


def test_judge_cache_makes_a_rerun_free(fakes, tmp_path):
    llm = fakes.JudgeLLM()
    first = GEvalJudge(llm, JudgeConfig(cache_dir=tmp_path / "c")).judge("relevance", **FIELDS)
    n_calls = len(llm.calls)
    again = GEvalJudge(llm, JudgeConfig(cache_dir=tmp_path / "c"))
    second = again.judge("relevance", **FIELDS)
    assert len(llm.calls) == n_calls  # nothing sent to the server
    assert second.score == first.score and again.stats()["cache_hits"] == 2  # steps + judgment


def test_no_logprobs_warns_loudly_and_averages_samples(fakes, caplog):
    llm = fakes.JudgeLLM(logprobs=False, samples=["4", "Score: 5", "no idea", "3"])
    judge = GEvalJudge(llm, JudgeConfig(samples=4))
    with caplog.at_level(logging.WARNING):
        j = judge.judge("faithfulness", **FIELDS)
    assert "NO logprobs" in caplog.text
    assert j.method == "sampling" and j.score == pytest.approx(4.0)  # mean of 4, 5, 3; "no idea" unparsable
    assert llm.calls[-1]["n"] == 4 and llm.calls[-1]["temperature"] == 1.0
    assert judge.stats()["method"] == "sampling"


def test_unparsable_replies_are_counted_not_guessed(fakes):
    judge = GEvalJudge(fakes.JudgeLLM(logprobs=False, samples=["I cannot rate this."]), JudgeConfig(samples=3))
    j = judge.judge("relevance", **FIELDS)
    assert j.score is None and j.method == "unparsable"
    assert judge.stats()["unparsable"] == 1


def test_user_written_steps_are_used_verbatim(fakes):
    llm = fakes.JudgeLLM()
    judge = GEvalJudge(llm, JudgeConfig(steps={"relevance": "1. Does it answer the question?"}))
    judge.judge("relevance", **FIELDS)
    assert all(c["top_logprobs"] for c in llm.calls)  # no steps generation call
    assert "1. Does it answer the question?" in llm.calls[0]["messages"][-1].content


@pytest.mark.parametrize(
    "text,score",
    [('{"score": 4}', 4), ("Score: 2", 2), ("5/5", 5), ("- Faithfulness (1-5): 3.", 3), ("10", None), ("none", None)],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


def test_missing_fields_and_unknown_criteria_are_errors(fakes):
    with pytest.raises(UsageError, match="unknown judge criteria"):
        GEvalJudge(fakes.JudgeLLM(), JudgeConfig(criteria=("helpfulness",)))
    with pytest.raises(UsageError, match="needs"):
        GEvalJudge(fakes.JudgeLLM()).judge("correctness", question="q", answer="a")
