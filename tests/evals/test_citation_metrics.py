"""Citation precision/recall (ALCE), cited-source hit, key facts, refusal precision/recall: on hand-made rows."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from evals.dataset import GoldSource
from evals.metrics.citations import SupportJudge, citation_quality, cited_source_metrics, facts_in_answer
from evals.runner import _model_cited, refusal_summary


class WordScorer:
    """Support 1.0 when the passage shares a 5+ letter word with the claim (a fake at the scorer seam)."""

    name = "fake"

    def score(self, claim: str, passages: Sequence[str]) -> list[float]:
        words = {w.strip(".,").lower() for w in claim.split() if len(w) >= 5}
        return [float(bool(words & {w.strip(".,").lower() for w in p.split()})) for p in passages]


PASSAGES = ["The Halden tower is 84 metres tall.", "The Bergen tower opened in 1925.", "Lunch is served at noon."]
JUDGE = SupportJudge(WordScorer(), min_score=0.5, min_evidence=1.0)


def _s(text: str, citations: list[int], model: list[int] | None = None, supported: bool | None = True) -> dict:
    return {"text": text, "citations": citations, "model_citations": model if model is not None else citations,
            "supported": supported}  # fmt: skip


def test_alce_recall_and_precision() -> None:
    sentences = [
        _s("The Halden tower is 84 metres tall.", [1, 3]),  # [1] supports, [3] is irrelevant
        _s("The Bergen tower opened in 1925 and the Halden tower is 84 metres tall.", [1, 2]),  # needs both
        _s("The Bergen tower opened in 1930.", [2]),  # not supported: its citation is imprecise too
        _s("Here is what I found:", [], supported=None),  # asserts nothing: left out
    ]
    q = citation_quality(sentences, PASSAGES, JUDGE)
    assert q["recall"] == pytest.approx(2 / 3)
    assert q["precision"] == pytest.approx(3 / 5)  # [1] of s1; [1] and [2] of s2 (each needed)
    uncited = citation_quality([_s("The Halden tower is 84 metres tall.", [])], PASSAGES, JUDGE)
    assert uncited == {"recall": 0.0, "precision": None}
    assert citation_quality([_s("x", [], supported=None)], PASSAGES, JUDGE) == {"recall": None, "precision": None}


def test_model_citations_are_scored_separately() -> None:
    sentences = [_s("The Halden tower is 84 metres tall.", [1], model=[3])]
    assert citation_quality(sentences, PASSAGES, JUDGE)["precision"] == 1.0
    assert citation_quality(sentences, PASSAGES, JUDGE, field="model_citations")["precision"] == 0.0
    row = {"sentences": sentences, "cited": [{"n": 1, "source": "/a.md", "page": None}],
           "retrieved": [{"source": f"/{c}.md", "page": None} for c in "abc"]}  # fmt: skip
    assert _model_cited(row) == [{"n": 3, "source": "/c.md", "page": None}]


def test_cited_source_hit_and_precision_against_gold() -> None:
    gold = [GoldSource("manual.pdf", 3)]
    cited = [{"source": "/x/manual.pdf", "page": 3}, {"source": "/x/manual.pdf", "page": 4}]
    assert cited_source_metrics(cited, gold) == {"cited_source_hit": 1.0, "cited_source_precision": 0.5}
    assert cited_source_metrics([], gold) == {"cited_source_hit": 0.0, "cited_source_precision": None}
    assert cited_source_metrics(cited, []) == {"cited_source_hit": None, "cited_source_precision": None}


def test_facts_in_answer_accepts_spellings_and_needs_every_fact() -> None:
    assert facts_in_answer("It peaked at 6 g [1].", ["6 g|6g"]) == 1.0
    assert facts_in_answer("Launched on 21 December 1968.", ["December 21, 1968|21 December 1968"]) == 1.0
    assert facts_in_answer("Borman and Lovell.", ["Borman", "Anders"]) == 0.0
    assert facts_in_answer("It used 2,977 kg.", ["2977"]) == 1.0  # thousands separators normalized
    assert facts_in_answer("anything", []) is None


def test_refusal_precision_recall_and_false_refusals() -> None:
    refusal = "I don't know: the documents do not contain the answer."
    rows = [
        {"answer": refusal, "model_answer": "Made up [1].", "answerable": False, "kind": "unanswerable_in_domain"},
        {"answer": "Guess.", "model_answer": "Guess.", "answerable": False, "kind": "unanswerable_in_domain"},
        {"answer": refusal, "model_answer": refusal, "answerable": False, "kind": None},
        {"answer": refusal, "model_answer": "Right [1].", "answerable": True, "kind": None},
        {"answer": "Right [1].", "model_answer": "Right [1].", "answerable": True, "kind": None},
    ]
    for r in rows:
        r["error"] = None
    after = refusal_summary(rows)
    got = (after["precision"], after["recall"], after["in_domain_recall"])
    assert got == pytest.approx((2 / 3, 2 / 3, 0.5), abs=1e-3)
    assert after["false_refusal_rate"] == 0.5 and after["refused"] == 3
    model = refusal_summary(rows, field="model_answer")
    got = (model["precision"], model["recall"], model["false_refusal_rate"])
    assert got == pytest.approx((1.0, 1 / 3, 0.0), abs=1e-3)
