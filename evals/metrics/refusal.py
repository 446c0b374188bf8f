"""Does the system decline exactly when it should? ``refusal_correct`` = 1 when (answer is a refusal) equals
(the question is unanswerable from the documents), else 0; its mean is the refusal accuracy over all questions.

Unanswerable questions (empty reference) are scored only by this metric, the judge's faithfulness/relevance and
retrieval (none); they are kept out of ROUGE/BERTScore/correctness means, which need a reference.

Example::

    >>> is_refusal("I don't know: the documents do not contain the answer.")
    True
    >>> refusal_correct("Paris [1].", answerable=True)
    1.0
"""

from __future__ import annotations

import re

_PATTERNS = re.compile(
    r"i don'?t know|i do not know|"
    r"(?:do(?:es)?|did) not (?:contain|mention|provide|include|say|specify|state|cover)|"
    r"(?:no|not enough|insufficient) (?:information|mention|details?|answer)|"
    r"(?:cannot|can ?not|can't|unable to) (?:find|answer|determine|tell|be determined|be answered)|"
    r"not (?:found|available) in the (?:documents|sources|context)",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """The answer declines (the pipeline's fixed refusal sentence, or a common paraphrase of it)."""
    try:
        from rag.prompt import REFUSAL
    except ImportError:  # pragma: no cover
        REFUSAL = ""
    t = text.strip()
    if not t:
        return True  # an empty answer answers nothing
    if REFUSAL and REFUSAL.lower().rstrip(".") in t.lower():
        return True
    # Only the opening matters: an answer that says "the sources do not mention X, but Y [1]" still answers.
    return bool(_PATTERNS.search(t[:160]))


def refusal_correct(answer: str, *, answerable: bool) -> float:
    return 1.0 if is_refusal(answer) != answerable else 0.0
