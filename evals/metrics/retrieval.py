"""Retrieval metrics over a ranked list of chunks against the gold sources of a question.

A retrieved chunk matches a gold source when the chunk's file name (basename of ``Chunk.source``) equals the gold
file name, and, when the gold gives a page (``"manual.pdf#12"``), the chunk is on that page. A gold source given as a
relative path (``"docs/a.md"``) matches a chunk whose source path ends with it.

* ``hit@k``: 1 if any of the top k chunks matches any gold source.
* ``recall@k``: the fraction of gold sources matched by at least one of the top k chunks.
* ``mrr``: 1 / rank of the first matching chunk (0 when none of the retrieved chunks matches).
* ``ndcg@10``: binary gains; a chunk gains 1 only for a gold source not already matched higher up (so several
  chunks of one relevant page do not inflate it), the ideal ranking puts one chunk per gold source first.

Questions without gold sources (unanswerable) have no retrieval metrics (None), and are left out of the means.

Example::

    >>> hits = [("/d/b.pdf", 1), ("/d/a.pdf", 3)]
    >>> retrieval_metrics(hits, ["a.pdf#3"], ks=(1, 2))["mrr"]
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import PurePath

from evals.dataset import GoldSource

DEFAULT_KS = tuple(range(1, 11))


def matches(source: str, page: int | None, gold: GoldSource) -> bool:
    """Whether a chunk from ``source`` (a path) on ``page`` matches the gold source."""
    norm = source.replace("\\", "/")
    gold_file = gold.file.replace("\\", "/")
    if "/" in gold_file:
        file_ok = norm == gold_file or norm.endswith("/" + gold_file.lstrip("/"))
    else:
        file_ok = PurePath(norm).name == gold_file
    return file_ok and (gold.page is None or page == gold.page)


def _gold_matched(ranked: Sequence[tuple[str, int | None]], golds: Sequence[GoldSource]) -> list[set[int]]:
    """For each ranked chunk, the indices of the gold sources it matches."""
    return [{i for i, g in enumerate(golds) if matches(src, page, g)} for src, page in ranked]


def retrieval_metrics(
    ranked: Sequence[tuple[str, int | None]],
    gold_sources: Iterable[str | GoldSource],
    *,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float | None]:
    """hit@k, recall@k for each k, mrr and ndcg@10 for one question; ``ranked`` is [(source path, page)] best first."""
    golds = [g if isinstance(g, GoldSource) else GoldSource.parse(g) for g in gold_sources]
    names = [f"hit@{k}" for k in ks] + [f"recall@{k}" for k in ks] + ["mrr", "ndcg@10"]
    if not golds:
        return dict.fromkeys(names)
    per_rank = _gold_matched(ranked, golds)
    out: dict[str, float | None] = {}
    for k in ks:
        found = set().union(*per_rank[:k]) if per_rank[:k] else set()
        out[f"hit@{k}"] = 1.0 if found else 0.0
        out[f"recall@{k}"] = len(found) / len(golds)
    first = next((r for r, m in enumerate(per_rank, start=1) if m), None)
    out["mrr"] = 1.0 / first if first else 0.0
    out["ndcg@10"] = ndcg(per_rank, len(golds), 10)
    return out


def ndcg(per_rank: Sequence[set[int]], n_gold: int, k: int) -> float:
    """nDCG@k with binary gains for newly matched gold sources (see the module docstring)."""
    seen: set[int] = set()
    dcg = 0.0
    for rank, matched in enumerate(per_rank[:k], start=1):
        new = matched - seen
        if new:
            dcg += 1.0 / math.log2(rank + 1)
            seen |= new
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(n_gold, k) + 1))
    return dcg / ideal if ideal else 0.0
