"""BM25 over the chunks of a collection, built at ingestion and kept on disk (never rebuilt per query).

The index lives in its own directory (``Collection.bm25_dir``) next to the vector store. It holds the
``bm25s`` sparse matrix and the chunks themselves (``chunks.jsonl``), so a hit maps straight back to a ``Chunk``
with its provenance without asking the vector store.

Writes are atomic: each build goes to a fresh version folder and a one-line ``CURRENT`` file is swapped with
``os.replace``, so a reader sees the old index or the new one, never half of each.

Example::

    >>> from rag.types import Chunk
    >>> c = Chunk(id="1", text="The cat sat on the mat.", source="/a.txt", page=None, start=0, end=23,
    ...           content_hash="h", file_hash="f", file_type="txt")
    >>> build_bm25_index([c], Path(tmp) / "bm25")  # doctest: +SKIP
    >>> BM25Index.load(Path(tmp) / "bm25").search("cat", k=3)[0].chunk.id  # doctest: +SKIP
    '1'
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import StoreError
from rag.filters import matches, normalize
from rag.types import Chunk, Filters, ScoredChunk

FORMAT_VERSION = 1
_CURRENT = "CURRENT"
_TOKEN_RE = re.compile(r"\w+", re.UNICODE)


def _stemmer() -> tuple[str | None, Callable[[list[str]], list[str]] | None]:
    """The English Snowball stemmer from PyStemmer when installed (better recall on inflected words), else none."""
    try:
        import Stemmer  # PyStemmer; optional
    except ImportError:
        return None, None
    stem = Stemmer.Stemmer("english")
    return "snowball-english", stem.stemWords


def _stopwords() -> frozenset[str]:
    try:
        from bm25s.stopwords import STOPWORDS_EN

        return frozenset(STOPWORDS_EN)
    except ImportError:  # an older bm25s layout: fall back to no stopwords rather than fail
        return frozenset()


class _Tokenizer:
    """Lower-case word tokens, English stopwords dropped, optionally stemmed. Index and queries share it."""

    def __init__(self, stemmer_name: str | None) -> None:
        self.stemmer_name = stemmer_name
        self._stop = _stopwords()
        self._stem: Callable[[list[str]], list[str]] | None = None
        if stemmer_name is not None:
            name, stem = _stemmer()
            if name != stemmer_name:
                raise StoreError(
                    f"the BM25 index was built with the {stemmer_name!r} stemmer, which is not installed here: "
                    "pip install PyStemmer, or re-run `rag ingest` to rebuild the index"
                )
            self._stem = stem

    def __call__(self, text: str) -> list[str]:
        tokens = [t for t in _TOKEN_RE.findall(text.lower()) if t not in self._stop]
        return self._stem(tokens) if self._stem and tokens else tokens


def _chunk_from_json(d: dict[str, Any]) -> Chunk:
    return Chunk(**d)


def build_bm25_index(chunks: Iterable[Chunk], directory: Path) -> None:
    """Build a BM25 index over ``chunks`` and write it to ``directory`` atomically (old readers keep working)."""
    import bm25s

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chunk_list = list(chunks)
    stemmer_name, _ = _stemmer()
    tokenize = _Tokenizer(stemmer_name)

    version = f"v-{uuid.uuid4().hex[:12]}"
    tmp = directory / f".tmp-{version}"
    tmp.mkdir()
    try:
        corpus_tokens = [tokenize(c.embedding_text) for c in chunk_list]  # the section path counts too
        # bm25s needs at least one token overall; an empty collection gets an index with no documents.
        has_tokens = any(corpus_tokens)
        if has_tokens:
            retriever = bm25s.BM25()
            retriever.index(corpus_tokens, show_progress=False)
            retriever.save(str(tmp / "bm25s"))
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
            for c in chunk_list:
                f.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
        meta = {
            "format": FORMAT_VERSION,
            "chunks": len(chunk_list),
            "stemmer": stemmer_name,
            "empty": not has_tokens,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, directory / version)
        # The swap: one small file replaced atomically.
        pointer_tmp = directory / f".{_CURRENT}.{version}"
        pointer_tmp.write_text(version)
        os.replace(pointer_tmp, directory / _CURRENT)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Keep the previous version for a reader that may be loading it right now; drop anything older.
    versions = sorted((p for p in directory.iterdir() if p.is_dir() and p.name.startswith("v-")),
                      key=lambda p: p.stat().st_mtime)
    for old in versions[:-2]:
        if old.name != version:
            shutil.rmtree(old, ignore_errors=True)


class BM25Index:
    """A loaded BM25 index; ``search`` returns ``ScoredChunk`` with the BM25 score (higher is better)."""

    def __init__(self, retriever: Any | None, chunks: Sequence[Chunk], tokenizer: _Tokenizer) -> None:
        self._retriever = retriever
        self.chunks: tuple[Chunk, ...] = tuple(chunks)
        self._tokenize = tokenizer

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        """Load the current version in ``directory``; ``StoreError`` saying what to do if there is none."""
        directory = Path(directory)
        pointer = directory / _CURRENT
        if not pointer.exists():
            raise StoreError(f"no BM25 index at {directory}: run `rag ingest` on your documents first")
        try:
            version_dir = directory / pointer.read_text().strip()
            meta = json.loads((version_dir / "meta.json").read_text())
            if meta.get("format") != FORMAT_VERSION:
                raise StoreError(f"the BM25 index at {directory} has an unknown format: re-run `rag ingest`")
            tokenizer = _Tokenizer(meta.get("stemmer"))
            with open(version_dir / "chunks.jsonl", encoding="utf-8") as f:
                chunks = [_chunk_from_json(json.loads(line)) for line in f if line.strip()]
            retriever = None
            if not meta.get("empty"):
                import bm25s

                retriever = bm25s.BM25.load(str(version_dir / "bm25s"))
        except StoreError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreError(
                f"the BM25 index at {directory} is unreadable ({e}): re-run `rag ingest` to rebuild it"
            ) from e
        return cls(retriever, chunks, tokenizer)

    def __len__(self) -> int:
        return len(self.chunks)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for ``query`` (zeros when no query word is in the index)."""
        tokens = self._tokenize(query)
        if self._retriever is None or not tokens:
            return np.zeros(len(self.chunks), dtype=np.float32)
        vocab = self._retriever.vocab_dict
        known = [t for t in tokens if t in vocab]
        if not known:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)

    def search(self, query: str, k: int, filters: Filters | None = None) -> list[ScoredChunk]:
        """Top ``k`` chunks with a positive BM25 score that pass ``filters``, best first."""
        if k <= 0 or not self.chunks:
            return []
        scores = self.scores(query)
        norm = normalize(filters)
        if norm:
            mask = np.fromiter((matches(c, norm) for c in self.chunks), dtype=bool, count=len(self.chunks))
            scores = np.where(mask, scores, 0.0)
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0:
            return []
        top = positive[np.argsort(-scores[positive], kind="stable")[:k]]
        return [ScoredChunk(chunk=self.chunks[i], score=float(scores[i]), stages={"bm25": float(scores[i])})
                for i in top]
