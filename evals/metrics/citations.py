"""Citation quality in the spirit of ALCE (Gao et al., 2023), key facts, and cited sources against the gold ones.

- ``citation_recall``: the share of an answer's claim sentences that are supported by the passages they cite (all
  of them together). A sentence that cites nothing counts as unsupported.
- ``citation_precision``: the share of citations that are needed: a citation counts when its passage supports the
  sentence alone, or when the sentence is supported by all its citations but no longer without this one. Citations
  of a sentence that its citations do not support all count as imprecise (ALCE's rule).
- ``*_model``: the same for the citations the model wrote, before ``rag.verify`` checked them.
- ``cited_source_hit``: 1 when a cited source is a gold source (file, and page when given); an answer citing
  nothing scores 0. ``cited_source_precision``: the share of cited sources that are gold sources.
- ``facts_in_answer``: 1 when every key fact of the gold line (``"facts"``, ``|`` between spellings) is in the
  answer text.

ALCE judges support with an NLI model (TRUE, T5-11B); none ships offline here, so the judge is the support scorer of
``rag.verify`` (cross-encoder + lexical evidence) at its settings, whose own precision and recall on planted errors
are measured by ``evals/support_check.py``. After verification, citation precision therefore measures how well the
verifier enforced its own rule; ``cited_source_*`` against the gold sources is the independent check.

Example::

    >>> facts_in_answer("It was written in 1928 by George Gershwin [1].", ["1928", "Gershwin|G. Gershwin"])
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

from evals.dataset import GoldSource


def facts_in_answer(answer: str, facts: Sequence[str]) -> float | None:
    """1.0 when every fact (any of its ``|`` spellings) occurs in ``answer`` (normalized), else 0.0."""
    if not facts:
        return None
    from rag.verify import normalize

    text = normalize(answer)
    return float(all(any(normalize(alt).strip() in text for alt in f.split("|")) for f in facts))


def _is_gold(source: str, page: int | None, gold: Sequence[GoldSource]) -> bool:
    name = PurePath(source).name
    return any(g.file == name and (g.page is None or g.page == page) for g in gold)


def cited_source_metrics(cited: Sequence[Mapping[str, Any]], gold: Sequence[GoldSource]) -> dict[str, float | None]:
    """``cited``: [{"source", "page"}...] of one answer; ``gold``: its gold sources."""
    if not gold:
        return {"cited_source_hit": None, "cited_source_precision": None}
    hits = [_is_gold(c["source"], c.get("page"), gold) for c in cited]
    return {
        "cited_source_hit": float(any(hits)),
        "cited_source_precision": (sum(hits) / len(hits)) if hits else None,
    }


class SupportJudge:
    """Whether a set of passages supports a sentence: ``rag.verify``'s rule with its scorer, scores cached."""

    def __init__(self, scorer: Any, *, min_score: float, min_evidence: float) -> None:
        self.scorer = scorer
        self.min_score = min_score
        self.min_evidence = min_evidence

    def for_sentence(self, claim: str, passages: Sequence[str]) -> Callable[[Sequence[int]], bool]:
        """A function of 0-based passage indices -> supported; the scorer runs once per (sentence, passage)."""
        from rag.verify import choose_support, normalize

        scores = self.scorer.score(claim, list(passages)) if passages else []
        norm = [normalize(p) for p in passages]

        def supported(idx: Sequence[int]) -> bool:
            idx = [i for i in idx if 0 <= i < len(passages)]
            if not idx:
                return False
            chosen, coverage = choose_support(claim, [norm[i] for i in idx], [scores[i] for i in idx],
                                              min_score=self.min_score)  # fmt: skip
            return bool(chosen) and coverage >= self.min_evidence

        return supported


def citation_quality(
    sentences: Sequence[Mapping[str, Any]], passages: Sequence[str], judge: SupportJudge, *, field: str = "citations"
) -> dict[str, float | None]:
    """ALCE citation recall and precision of one answer; ``field`` picks the verified or the model's citations.

    ``sentences``: [{"text", "citations", "model_citations", "supported"}]: claim sentences are those whose
    ``supported`` is not None (sentences that assert nothing are left out). Citation numbers are 1-based.
    """
    claims = [s for s in sentences if s.get("supported") is not None]
    if not claims:
        return {"recall": None, "precision": None}
    supported_n = 0
    relevant = total = 0
    for s in claims:
        cites = [n - 1 for n in s.get(field) or ()]
        ok = judge.for_sentence(s["text"], passages)
        full = ok(cites)
        supported_n += full
        for i in cites:
            total += 1
            if full and (ok([i]) or not ok([j for j in cites if j != i])):
                relevant += 1
    return {"recall": supported_n / len(claims), "precision": (relevant / total) if total else None}
