"""Retrieval: dense, BM25 or hybrid (reciprocal rank fusion), then near-duplicate removal and optional reranking.

Every stage is a setting (``settings.retrieval``) and leaves its mark in ``ScoredChunk.stages`` (``dense``,
``dense_rank``, ``bm25``, ``bm25_rank``, ``rrf``, ``rerank``...), so ``rag search --explain`` can show what each
stage did to each hit.

    query ─┬─ dense top-N (vector store) ─┐
           └─ BM25 top-N (on-disk index) ─┴─ RRF ─ filters ─ dedup ─ [cross-encoder] ─ top-k

Example::

    >>> from rag.types import Chunk, ScoredChunk
    >>> a, b = (Chunk(id=i, text=i, source="/s", page=None, start=0, end=1, content_hash=i, file_hash="f",
    ...               file_type="txt") for i in "ab")
    >>> [h.chunk.id for h in rrf_fuse({"dense": [ScoredChunk(a, .9), ScoredChunk(b, .8)],
    ...                                "bm25": [ScoredChunk(b, 7.0)]}, rrf_k=60)]
    ['b', 'a']
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.config import RetrievalSettings
from rag.errors import ConfigError, StoreError, UsageError
from rag.lexical import BM25Index, build_bm25_index
from rag.rerank import Reranker, load_reranker, rerank
from rag.types import Embedder, Filters, ScoredChunk, VectorStore

log = logging.getLogger(__name__)

MODES = ("dense", "bm25", "hybrid")
RERANK_MAX = 20  # a cross-encoder costs 10-50 ms per 256-token pair on 2 CPU cores; top 20 did as well as 30


def rrf_fuse(rankings: Mapping[str, Sequence[ScoredChunk]], rrf_k: int = 60) -> list[ScoredChunk]:
    """Reciprocal rank fusion: ``score(d) = sum over rankings of 1 / (rrf_k + rank(d))``, ranks from 1.

    RRF needs no score calibration between BM25 (unbounded) and cosine (-1..1), which is why it is the default
    way to fuse them (Cormack et al., 2009). Each hit keeps every stage's score and rank in ``stages``.
    """
    fused: dict[str, float] = {}
    stages: dict[str, dict[str, float]] = {}
    first: dict[str, ScoredChunk] = {}
    for name, hits in rankings.items():
        for rank, hit in enumerate(hits, start=1):
            cid = hit.chunk.id
            if cid in fused and f"{name}_rank" in stages[cid]:
                continue  # a retriever listing the same chunk twice counts once, at its best rank
            first.setdefault(cid, hit)
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (rrf_k + rank)
            st = stages.setdefault(cid, {})
            st.update(hit.stages)
            st.setdefault(name, hit.score)
            st[f"{name}_rank"] = float(rank)
    order = sorted(fused, key=lambda cid: -fused[cid])
    return [ScoredChunk(chunk=first[c].chunk, score=fused[c], stages={**stages[c], "rrf": fused[c]}) for c in order]


_WORD_RE = re.compile(r"\w+", re.UNICODE)


def _bag(text: str) -> Counter[str]:
    return Counter(_WORD_RE.findall(text.lower()))


def text_similarity(a: Counter[str], b: Counter[str]) -> float:
    """Cosine similarity of word counts: 1.0 for the same words in any order; cheap, needs no vectors."""
    if not a or not b:
        return 0.0
    dot = sum(v * b.get(w, 0) for w, v in a.items())
    return dot / math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))


def remove_near_duplicates(
    hits: Sequence[ScoredChunk], threshold: float, limit: int | None = None
) -> list[ScoredChunk]:
    """Drop each hit whose text is at least ``threshold`` similar to a better-ranked one kept before it; stop once
    ``limit`` hits are kept (the rest could never be shown).

    Copies of one paragraph in several files (or overlapping chunks of one file) would otherwise fill the prompt
    with the same words. ``threshold >= 1`` drops only exact duplicates. ``limit``: stop once that many are kept
    (the same first ``limit`` hits a full pass would keep).

    Comparing every hit with every kept one is quadratic (178 s for 100,000 hits), so a hit is compared only with
    kept hits that could reach the threshold, found through their rarest words without missing any pair (prefix
    filtering, "All-Pairs", Bayardo et al., WWW 2007): split a word vector ``x`` (unit length) into its rarest
    words ``P(x)`` and the rest ``S(x)`` with ``|x_S| < threshold``; then ``x·y = x_P·y + x_S·y < x_P·y +
    threshold``, so ``x·y >= threshold`` needs a word of ``P(x)`` in ``y``, and likewise a word of ``P(y)`` in
    ``x``. The candidates left are scored together with numpy, and the result is exactly the quadratic loop's
    (``benchmarks/dedup.py`` checks it on real text and measures both).
    """
    wanted = len(hits) if limit is None else max(0, limit)
    kept: list[ScoredChunk] = []
    hashes: set[str] = set()
    if threshold >= 1.0:
        for hit in hits:
            if len(kept) >= wanted:
                break
            if hit.chunk.content_hash not in hashes:
                kept.append(hit)
                hashes.add(hit.chunk.content_hash)
        return kept
    # Word rarity orders each text's words for its prefix; any order gives the same (exact) result, a good one finds
    # fewer candidates, so it is estimated on the hits likely to be looked at, not on all of them.
    sample = len(hits) if limit is None else 4 * wanted + 256
    kept_set = _KeptBags(threshold, [h.chunk.text for h in hits], sample=sample)
    for i, hit in enumerate(hits):
        if len(kept) >= wanted:
            break
        if hit.chunk.content_hash in hashes or kept_set.near(i):
            continue
        kept_set.keep(i)
        kept.append(hit)
        hashes.add(hit.chunk.content_hash)
    return kept


class _KeptBags:
    """The word vectors of the kept hits, indexed by word and by prefix word (see ``remove_near_duplicates``)."""

    def __init__(self, threshold: float, texts: list[str], sample: int) -> None:
        self.threshold = threshold
        self.texts = texts
        self._bags: dict[int, tuple[Counter[str], float]] = {}  # made on first use: only what is looked at
        self.df: Counter[str] = Counter()  # document frequency in the first ``sample`` texts: rarity
        for i in range(min(sample, len(texts))):
            self.df.update(self.bag(i)[0].keys())
        self.word_ids: dict[str, int] = {}
        self.kept: list[int] = []  # indexes into ``texts``
        self.by_word: dict[int, list[int]] = {}  # word id -> positions in ``kept`` of the bags that have it
        self.by_prefix_word: dict[int, list[int]] = {}  # the same for the words of their prefixes
        self.rows: list[tuple[np.ndarray, np.ndarray]] = []  # (word ids, counts) per kept bag
        self.dense = np.zeros(1024, dtype=np.float64)

    def bag(self, i: int) -> tuple[Counter[str], float]:
        if i not in self._bags:
            bag = _bag(self.texts[i])
            self._bags[i] = (bag, math.sqrt(sum(v * v for v in bag.values())))
        return self._bags[i]

    def ids(self, words: Iterable[str]) -> list[int]:
        out = []
        for w in words:
            wid = self.word_ids.get(w)
            if wid is None:
                wid = self.word_ids[w] = len(self.word_ids)
            out.append(wid)
        if len(self.word_ids) > len(self.dense):
            self.dense = np.zeros(2 * len(self.word_ids), dtype=np.float64)
        return out

    def prefix(self, i: int) -> list[str]:
        """Bag ``i``'s rarest words, until less than ``threshold`` of its length is left."""
        bag, norm = self.bag(i)
        rest = norm * norm
        bound = (self.threshold * norm) ** 2 * (1 - 1e-9)  # a hair inside: rounding never loses a true pair
        out = []
        for word in sorted(bag, key=lambda w: (self.df.get(w, 0), w)):
            if rest < bound:
                break
            out.append(word)
            rest -= bag[word] * bag[word]
        return out

    def near(self, i: int) -> bool:
        """Whether bag ``i`` is at least ``threshold`` similar to a kept one."""
        bag, norm = self.bag(i)
        if not norm or not self.kept:
            return False
        mine: set[int] = set().union(*(self.by_word.get(w, ()) for w in self.ids(self.prefix(i))))
        if not mine:
            return False
        ids = self.ids(bag)
        theirs: set[int] = set().union(*(self.by_prefix_word.get(w, ()) for w in ids))
        candidates = sorted(mine & theirs)
        if not candidates:
            return False
        # all candidates' dot products at once: bag i spread over the vocabulary, gathered at each candidate's words
        self.dense[ids] = list(bag.values())
        try:
            row_ids = [self.rows[c][0] for c in candidates]
            counts = np.concatenate([self.rows[c][1] for c in candidates])
            gathered = self.dense[np.concatenate(row_ids)] * counts
            owner = np.repeat(np.arange(len(candidates)), [len(r) for r in row_ids])
            dots = np.bincount(owner, weights=gathered, minlength=len(candidates))
        finally:
            self.dense[ids] = 0.0
        other_norms = np.array([self.bag(self.kept[c])[1] for c in candidates])
        close = np.flatnonzero(dots >= self.threshold * norm * other_norms * (1 - 1e-9))
        # the reference formula decides the few that come close (the same floating-point result as before)
        return any(text_similarity(bag, self.bag(self.kept[candidates[j]])[0]) >= self.threshold for j in close)

    def keep(self, i: int) -> None:
        position = len(self.kept)
        bag, _ = self.bag(i)
        ids = self.ids(bag)
        for wid in ids:
            self.by_word.setdefault(wid, []).append(position)
        for wid in self.ids(self.prefix(i)):
            self.by_prefix_word.setdefault(wid, []).append(position)
        self.rows.append((np.asarray(ids, dtype=np.int64), np.fromiter(bag.values(), dtype=np.float64, count=len(bag))))
        self.kept.append(i)


class Retriever:
    """Runs the configured stages over one collection (its vector store and its on-disk BM25 index).

    Cheap to build: the BM25 index and the reranker load on first use; the BM25 index is reloaded only when
    ingestion wrote a new version.
    """

    def __init__(
        self,
        settings: RetrievalSettings,
        *,
        embedder: Embedder,
        store: VectorStore,
        bm25_dir: Path | None = None,
        reranker: Reranker | None = None,
        sync_bm25: Callable[[], object] | None = None,
        pending_among: Callable[[Iterable[str]], set[str]] | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self.bm25_dir = Path(bm25_dir) if bm25_dir is not None else None
        self._reranker = reranker
        # From the collection (rag.wiring): bring the keyword index in step when a writer died before rebuilding
        # it, and say which files are half-written (their chunks are not shown until their run commits them).
        self._sync_bm25 = sync_bm25
        self._pending_among = pending_among
        self._bm25: BM25Index | None = None
        self._bm25_version: str | None = None
        self._lock = threading.Lock()

    @property
    def reranker(self) -> Reranker:
        if self._reranker is None:
            self._reranker = load_reranker(self.settings.reranker)
        return self._reranker

    def bm25(self) -> BM25Index:
        """The collection's BM25 index, loaded once and reloaded when ingestion replaced it."""
        if self.bm25_dir is None:
            raise ConfigError("BM25 and hybrid retrieval need the collection's bm25 directory")
        with self._lock:
            pointer = self.bm25_dir / "CURRENT"
            if self._sync_bm25 is not None:
                self._sync_bm25()  # a no-op unless the index is marked stale or its count is off, and no writer runs
            if not pointer.exists() and self.store.count() > 0:
                # A collection indexed before BM25 existed: build it once and keep it (never per query).
                log.info("building the missing BM25 index in %s", self.bm25_dir)
                build_bm25_index(self.store.chunks(), self.bm25_dir)
            version = pointer.read_text().strip() if pointer.exists() else None
            if self._bm25 is None or version != self._bm25_version:
                self._bm25 = BM25Index.load(self.bm25_dir)
                self._bm25_version = version
            return self._bm25

    def dense(self, query: str, k: int, filters: Filters | None = None) -> list[ScoredChunk]:
        hits = self.store.search(self.embedder.embed_query(query), k, filters)
        return [replace(h, stages={**h.stages, "dense": h.score}) for h in hits]

    def search(
        self,
        query: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        mode: str | None = None,
        rerank_hits: bool | None = None,
    ) -> list[ScoredChunk]:
        """The top ``k`` chunks for ``query``, best first; settings give every default."""
        s = self.settings
        k = k or s.k
        if k > s.max_k:
            raise UsageError(
                f"k={k} is more than the {s.max_k} hits a search may return (RAG_RETRIEVAL__MAX_K): ask for fewer"
            )
        mode = mode or s.mode
        use_rerank = s.rerank if rerank_hits is None else rerank_hits
        if mode not in MODES:
            raise ConfigError(f"unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}")
        if not query.strip():
            return []
        n = max(s.candidates, k)
        if mode == "dense":
            hits = self.dense(query, n, filters)
        elif mode == "bm25":
            hits = self.bm25().search(query, n, filters)
        else:
            dense = self.dense(query, n, filters)
            try:
                lexical = self.bm25().search(query, n, filters)
            except StoreError as e:
                # Hybrid still answers from the vectors if the lexical index is damaged; say so in the log.
                log.warning("BM25 index unavailable, hybrid falls back to dense: %s", e)
                lexical = []
            hits = rrf_fuse({"dense": dense, "bm25": lexical}, s.rrf_k)
        if self._pending_among is not None and hits:
            hidden = self._pending_among({h.chunk.source for h in hits})
            hits = [h for h in hits if h.chunk.source not in hidden] if hidden else hits
        hits = remove_near_duplicates(hits, s.dedup_threshold, limit=max(RERANK_MAX, k) if use_rerank else k)
        if use_rerank:
            hits = rerank(query, hits[: max(RERANK_MAX, k)], self.reranker)
        return [replace(h, stages={**h.stages, "final_rank": float(i)}) for i, h in enumerate(hits[:k], start=1)]
