"""The judge's logprob weighting against the REAL embedded llama.cpp server (slow; marked e2e)."""

from __future__ import annotations

import math

import pytest

from evals.judge import GEvalJudge, JudgeConfig, score_from_logprobs, score_position
from rag.config import LLMSettings
from rag.types import Message

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def llm(llm_server):  # type: ignore[no-untyped-def]
    """A client of the session's embedded LLM server (``tests/conftest.py``)."""
    from rag.llm import OpenAICompatibleLLM

    return OpenAICompatibleLLM(LLMSettings(timeout_s=600), llm_server)


def test_real_server_logprobs_give_a_weighted_score(llm, tmp_path):
    steps = {"correctness": "1. Compare the answer with the reference.\n2. Give 5 if they state the same facts, "
                            "1 if they contradict."}  # fmt: skip
    judge = GEvalJudge(llm, JudgeConfig(criteria=("correctness",), steps=steps, cache_dir=tmp_path / "c"))
    messages = judge.messages("correctness", question="What is the capital of France?",
                              reference="Paris is the capital of France.", answer="Paris [1].")  # fmt: skip
    reply = llm.complete(messages, max_tokens=4, temperature=0.0, top_logprobs=5)[0]
    assert reply.top_logprobs, "llama.cpp's server returns top_logprobs"
    pos = score_position(reply.top_logprobs)
    assert pos is not None, f"no score token in {reply.text!r}"
    score, dist = score_from_logprobs(reply.top_logprobs[pos])
    assert sum(dist.values()) == pytest.approx(1.0)
    # the weighted score is the expectation of the renormalised distribution, within the score range
    assert 1.0 <= score <= 5.0 and score == pytest.approx(sum(int(t) * p for t, p in dist.items()))
    raw = {a.token.strip(): math.exp(a.logprob) for a in reply.top_logprobs[pos] if a.token.strip() in dist}
    assert max(raw, key=raw.get) == max(dist, key=dist.get)  # renormalising keeps the order

    j = judge.judge("correctness", question="What is the capital of France?",
                    reference="Paris is the capital of France.", answer="Paris [1].")  # fmt: skip
    # The same prompt evaluated again on the shared server may reuse its prompt cache, which moves the logits in
    # the last digits (batched vs incremental evaluation): equal up to that numerical noise.
    assert j.method == "logprobs" and j.score == pytest.approx(score, abs=0.05)
    again = GEvalJudge(llm, JudgeConfig(criteria=("correctness",), steps=steps, cache_dir=tmp_path / "c"))
    assert (
        again.judge(
            "correctness",
            question="What is the capital of France?",
            reference="Paris is the capital of France.",
            answer="Paris [1].",
        ).score
        == j.score
    )
    assert again.cache.hits == 1


def test_real_server_generates_steps(llm, tmp_path):
    judge = GEvalJudge(llm, JudgeConfig(criteria=("relevance",), cache_dir=tmp_path / "c"))
    steps = judge.steps_for("relevance")
    assert steps.strip() and steps == judge.steps_for("relevance")
    assert isinstance(llm.complete([Message("user", "Say OK")], max_tokens=2)[0].text, str)
