"""ROUGE-1/2/L/Lsum F1 with Google's ``rouge-score`` (Porter stemming on).

ROUGE-Lsum needs one sentence per line; ``rouge-score``'s own splitter needs NLTK data that is not installed, so
sentences are split here (on ., ! or ? followed by whitespace, and on newlines) and joined by "\\n" before scoring.

Example::

    >>> round(rouge([" The cats sat."], ["A cat sat."])[0]["rouge1"], 3)
    0.667
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.errors import UsageError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Split into sentences on terminal punctuation followed by whitespace, and on line breaks."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def for_lsum(text: str) -> str:
    """The text as ROUGE-Lsum expects it: one sentence per line."""
    return "\n".join(split_sentences(text))


def rouge(
    predictions: Sequence[str], references: Sequence[str], *, types: Sequence[str] = ROUGE_TYPES
) -> list[dict[str, float]]:
    """Per pair, the F1 of each ROUGE type (0..1). Precision/recall: use :func:`rouge_detailed`."""
    return [{k: s[2] for k, s in d.items()} for d in rouge_detailed(predictions, references, types=types)]


def rouge_detailed(
    predictions: Sequence[str], references: Sequence[str], *, types: Sequence[str] = ROUGE_TYPES
) -> list[dict[str, tuple[float, float, float]]]:
    """Per pair and ROUGE type, (precision, recall, F1) exactly as ``rouge_score.rouge_scorer`` computes them."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise UsageError(f"{len(predictions)} predictions but {len(references)} references")
    unknown = set(types) - set(ROUGE_TYPES)
    if unknown:
        raise UsageError(f"unknown ROUGE type(s) {sorted(unknown)}; use {ROUGE_TYPES}")
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=True)
    out = []
    for pred, ref in zip(predictions, references, strict=True):
        # rougeLsum reads "\n" as the sentence boundary; the other types ignore newlines (they tokenize on non-alnum).
        scores = scorer.score(for_lsum(ref), for_lsum(pred))
        out.append({k: (v.precision, v.recall, v.fmeasure) for k, v in scores.items()})
    return out
