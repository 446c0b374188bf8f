"""How far to trust the judge: its correlation with human judgments on a shipped, human-labelled set.

The set: Lee, Pincombe & Welsh (2005), 50 short news documents (``gensim/test/test_data/lee.cor``, one document a
line, latin-1) and the mean human similarity of every pair (``similarities0-1.txt``: a 50 x 50 matrix, upper
triangle filled, values 0..1; the 1,225 pairs i < j are the labels, as gensim's own test reads them).

The judge rates the ``similarity`` criterion (1-5, G-Eval scoring) on a sample of pairs, stratified over the human
scores (most pairs are unrelated, a uniform sample would hold almost no similar ones); we report Spearman's rho and
Kendall's tau with the human scores, and the same for the embedding model's cosine similarity as a reference point.

Example::

    >>> docs, human = load_lee()
    >>> len(docs), human.shape
    (50, (50, 50))
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.packaged import package_file


def lee_dir() -> Path:
    """gensim's test data folder, which holds the Lee corpus and its human similarity judgments."""
    return package_file(
        "gensim", "test/test_data/similarities0-1.txt", install="pip install gensim",
        what="the Lee similarity set (the judge meta-evaluation reads it)",
    ).parent


def load_lee() -> tuple[list[str], np.ndarray]:
    folder = lee_dir()
    docs = [line.strip() for line in (folder / "lee.cor").read_text(encoding="latin-1").splitlines() if line.strip()]
    human = np.loadtxt(folder / "similarities0-1.txt")
    if human.shape != (len(docs), len(docs)):
        raise ConfigError(f"Lee set: {len(docs)} documents but a {human.shape} similarity matrix")
    return docs, human


def sample_pairs(human: np.ndarray, n: int, seed: int = 0) -> list[tuple[int, int, float]]:
    """``n`` pairs (i < j), one drawn at random from each of ``n`` equal bins of the pairs sorted by human score."""
    iu = np.triu_indices(human.shape[0], 1)
    pairs = sorted(zip(iu[0].tolist(), iu[1].tolist(), human[iu].tolist(), strict=True), key=lambda p: p[2])
    n = min(n, len(pairs))
    rng = random.Random(seed)
    edges = np.linspace(0, len(pairs), n + 1).astype(int)
    return [pairs[rng.randrange(edges[b], edges[b + 1])] for b in range(n)]


def correlations(x: list[float], y: list[float]) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr

    rho = spearmanr(x, y)
    tau = kendalltau(x, y)
    return {
        "spearman": float(rho.statistic),
        "spearman_p": float(rho.pvalue),
        "kendall": float(tau.statistic),
        "kendall_p": float(tau.pvalue),
    }


def judge_meta(judge: Any, *, pairs: int = 30, seed: int = 0, embedder: Any = None, progress: bool = False) -> dict:
    """Correlate the judge (and, if given, the embedder's cosine) with the human Lee similarities."""
    docs, human = load_lee()
    sample = sample_pairs(human, pairs, seed)
    t0 = time.perf_counter()
    scores: list[float | None] = []
    from rich.progress import track

    for i, j, _ in track(sample, description="judging pairs", disable=not progress):
        scores.append(judge.judge("similarity", document_1=docs[i], document_2=docs[j]).score)
    seconds = time.perf_counter() - t0
    ok = [(s, h) for s, (_, _, h) in zip(scores, sample, strict=True) if s is not None]
    out: dict[str, Any] = {
        "dataset": "Lee et al. 2005 (gensim lee.cor + similarities0-1.txt)",
        "pairs": len(sample),
        "seed": seed,
        "judge_model": judge.model,
        "judge": judge.stats(),
        "unparsable": len(sample) - len(ok),
        "seconds": round(seconds, 1),
        "judge_correlation": correlations([s for s, _ in ok], [h for _, h in ok]) if len(ok) > 2 else None,
    }
    if len(set(s for s, _ in ok)) <= 1:
        out["warning"] = "the judge gave (almost) the same score to every pair: its correlation is meaningless"
    if embedder is not None:
        vecs = embedder.embed_documents(docs)
        cos = vecs @ vecs.T
        out["embedding_model"] = embedder.name
        out["embedding_correlation_sample"] = correlations([float(cos[i, j]) for i, j, _ in sample],
                                                           [h for _, _, h in sample])  # fmt: skip
        iu = np.triu_indices(len(docs), 1)
        out["embedding_correlation_all_1225"] = correlations(cos[iu].tolist(), human[iu].tolist())
    return out
