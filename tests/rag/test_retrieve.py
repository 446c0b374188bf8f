"""Retrieval stages: dense, BM25, hybrid by RRF, filters, near-duplicate removal, reranking, and their traces."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from rag.config import RetrievalSettings
from rag.errors import ConfigError
from rag.lexical import build_bm25_index
from rag.retrieve import Retriever, remove_near_duplicates, rrf_fuse
from rag.stores.memory_store import MemoryStore
from rag.types import Chunk, ScoredChunk


def _chunk(i: int, text: str, source: str = "/docs/a.md", page: int | None = None, file_type: str = "md") -> Chunk:
    return Chunk(id=f"c{i}", text=text, source=source, page=page, start=0, end=len(text), content_hash=f"h{i}",
                 file_hash="f", file_type=file_type)


def _hits(*ids: str) -> list[ScoredChunk]:
    return [ScoredChunk(_chunk(int(i[1:]), i), score=1.0 - n / 10) for n, i in enumerate(ids)]


def test_rrf_adds_reciprocal_ranks_and_keeps_what_each_stage_gave() -> None:
    fused = rrf_fuse({"dense": _hits("c1", "c2", "c3"), "bm25": _hits("c3", "c1")}, rrf_k=60)
    score = {h.chunk.id: h.score for h in fused}
    assert score["c1"] == pytest.approx(1 / 61 + 1 / 62)
    assert score["c3"] == pytest.approx(1 / 63 + 1 / 61)
    assert score["c2"] == pytest.approx(1 / 62)
    assert [h.chunk.id for h in fused] == ["c1", "c3", "c2"]
    c3 = next(h for h in fused if h.chunk.id == "c3")
    assert c3.stages["dense_rank"] == 3 and c3.stages["bm25_rank"] == 1 and c3.stages["rrf"] == c3.score
    assert "bm25" not in next(h for h in fused if h.chunk.id == "c2").stages


def test_rrf_k_setting_trades_one_top_rank_against_agreement() -> None:
    # c1 is first in one list only; c2 is fourth in both.
    runs = {"dense": _hits("c1", "c7", "c8", "c2"), "bm25": _hits("c5", "c6", "c9", "c2")}
    small = {h.chunk.id: h.score for h in rrf_fuse(runs, rrf_k=1)}
    default = {h.chunk.id: h.score for h in rrf_fuse(runs, rrf_k=60)}
    assert small["c1"] > small["c2"]  # 1/2 > 2/5: a small k rewards the single top rank
    assert default["c2"] > default["c1"]  # 2/64 > 1/61: the default rewards agreement


def test_near_duplicates_are_dropped_keeping_the_better_ranked() -> None:
    a = ScoredChunk(_chunk(1, "The contract ends after a notice of thirty days by either party."), 0.9)
    copy = ScoredChunk(_chunk(2, "The contract ends after a notice of thirty days by either party!", "/b.md"), 0.8)
    reordered = ScoredChunk(_chunk(3, "either party: the contract ends after a notice of thirty days by"), 0.7)
    other = ScoredChunk(_chunk(4, "Payment is due within fourteen days of the invoice date."), 0.6)
    assert [h.chunk.id for h in remove_near_duplicates([a, copy, reordered, other], 0.95)] == ["c1", "c4"]
    # threshold 1.0: only identical content (same hash) is dropped
    same_hash = ScoredChunk(Chunk(**{**a.chunk.__dict__, "id": "c5", "source": "/c.md"}), 0.5)
    assert [h.chunk.id for h in remove_near_duplicates([a, copy, same_hash], 1.0)] == ["c1", "c2"]


DOCS = [
    _chunk(0, "Aardvarks are nocturnal burrowing mammals native to Africa that eat ants and termites.",
           "/k/aardvark.md"),
    _chunk(1, "The abacus is a calculating tool used since ancient times by merchants.", "/k/abacus.pdf", 2, "pdf"),
    _chunk(2, "Albedo measures the fraction of sunlight that a surface reflects.", "/k/albedo.pdf", 5, "pdf"),
    _chunk(3, "The ampere is the SI base unit of electric current.", "/k/ampere.txt", None, "txt"),
    _chunk(4, "Error code XJ-4417 means the pump overheated; reset it after cooling.", "/k/manual.pdf", 7, "pdf"),
    _chunk(5, "Aardvarks are nocturnal burrowing mammals native to Africa that eat ants and termites.",
           "/k/copy-of-aardvark.md"),
]


@pytest.fixture
def retriever(tmp_path: Path, fake_embedder) -> Retriever:  # type: ignore[no-untyped-def]
    store = MemoryStore(None, fake_embedder.dim, fake_embedder.name)
    store.upsert(DOCS, fake_embedder.embed_documents([c.text for c in DOCS]))
    build_bm25_index(store.chunks(), tmp_path / "bm25")
    return Retriever(RetrievalSettings(k=3, candidates=10), embedder=fake_embedder, store=store,
                     bm25_dir=tmp_path / "bm25")


def test_each_mode_finds_the_obvious_chunk(retriever: Retriever) -> None:
    for mode in ("dense", "bm25", "hybrid"):
        hits = retriever.search("what does error code XJ-4417 mean", mode=mode)
        assert hits[0].chunk.id == "c4", mode
        assert hits[0].chunk.page == 7


def test_hybrid_records_dense_bm25_and_fusion_for_explain(retriever: Retriever) -> None:
    hits = retriever.search("SI base unit of electric current", mode="hybrid")
    top = hits[0]
    assert top.chunk.id == "c3"
    assert {"dense", "dense_rank", "bm25", "bm25_rank", "rrf", "final_rank"} <= set(top.stages)
    assert top.score == top.stages["rrf"]


def test_duplicate_documents_fill_one_slot_not_two(retriever: Retriever) -> None:
    hits = retriever.search("nocturnal burrowing mammals of Africa", mode="hybrid", k=3)
    texts = [h.chunk.text for h in hits]
    assert texts.count(DOCS[0].text) == 1


def test_filters_apply_in_every_mode(retriever: Retriever) -> None:
    for mode in ("dense", "bm25", "hybrid"):
        hits = retriever.search("sunlight reflects surface", mode=mode, filters={"file_type": "pdf"}, k=5)
        assert hits and all(h.chunk.file_type == "pdf" for h in hits), mode
        only = retriever.search("sunlight reflects surface", mode=mode, filters={"source": "/k/ampere.txt"}, k=5)
        assert all(h.chunk.source == "/k/ampere.txt" for h in only), mode


class _ReverseAlphabet:
    """A fake cross-encoder that prefers texts starting later in the alphabet (easy to predict)."""

    name = "fake-ce"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        self.calls += 1
        return [float(ord(t[0].lower())) for t in texts]


def test_rerank_reorders_candidates_and_keeps_earlier_stages(tmp_path: Path, retriever: Retriever) -> None:
    ce = _ReverseAlphabet()
    retriever._reranker = ce
    plain = retriever.search("Aardvarks abacus albedo ampere", mode="hybrid", k=3)
    assert ce.calls == 0  # reranking is off by default
    reranked = retriever.search("Aardvarks abacus albedo ampere", mode="hybrid", k=3, rerank_hits=True)
    assert ce.calls == 1
    assert reranked[0].chunk.text.startswith("The")  # 't' beats 'a' with this fake
    assert reranked[0].score == reranked[0].stages["rerank"] and "rrf" in reranked[0].stages
    assert [h.chunk.id for h in plain] != [h.chunk.id for h in reranked]


def test_bad_mode_and_empty_query(retriever: Retriever) -> None:
    with pytest.raises(ConfigError, match="dense, bm25, hybrid"):
        retriever.search("x", mode="magic")
    assert retriever.search("   ") == []


def test_missing_bm25_index_is_built_once_from_the_store_and_new_versions_are_picked_up(
    tmp_path: Path, fake_embedder
) -> None:  # type: ignore[no-untyped-def]
    store = MemoryStore(None, fake_embedder.dim, fake_embedder.name)
    store.upsert(DOCS[:2], fake_embedder.embed_documents([c.text for c in DOCS[:2]]))
    r = Retriever(RetrievalSettings(), embedder=fake_embedder, store=store, bm25_dir=tmp_path / "new-bm25")
    assert r.search("abacus merchants", mode="bm25")[0].chunk.id == "c1"
    assert (tmp_path / "new-bm25" / "CURRENT").exists()
    # ingestion writes a new version: the next query sees it without restarting
    build_bm25_index(DOCS, tmp_path / "new-bm25")
    assert r.search("XJ-4417 pump", mode="bm25")[0].chunk.id == "c4"


def test_near_duplicate_removal_with_a_limit_keeps_the_same_first_hits() -> None:
    from rag.retrieve import remove_near_duplicates
    from rag.types import Chunk, ScoredChunk

    words = ["alpha beta gamma", "alpha beta gamma", "delta epsilon", "alpha beta gamma delta", "zeta eta",
             "zeta eta", "theta iota", "kappa lambda"]  # fmt: skip
    hits = [ScoredChunk(Chunk(id=str(i), text=t, source="/s", page=None, start=0, end=1, content_hash=f"h{i}",
                              file_hash="f", file_type="txt"), 1.0 - i / 10) for i, t in enumerate(words)]  # fmt: skip
    full = remove_near_duplicates(hits, 0.95)
    assert [h.chunk.id for h in full] == ["0", "2", "3", "4", "6", "7"]
    for limit in range(1, 8):
        assert remove_near_duplicates(hits, 0.95, limit=limit) == full[:limit]


# ------------------------------------------------------------------------------------ bounded work per request
def test_k_above_the_limit_is_refused_in_one_line(retriever: Retriever) -> None:
    """Before: `rag search --k 100000` ran for 178 s (no upper bound, quadratic near-duplicate removal)."""
    from rag.errors import UsageError

    with pytest.raises(UsageError, match="RAG_RETRIEVAL__MAX_K"):
        retriever.search("cat", k=retriever.settings.max_k + 1)
    assert retriever.search("cat", k=retriever.settings.max_k)  # the limit itself is allowed


def test_near_duplicate_removal_compares_far_fewer_pairs_than_the_quadratic_loop(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Real text (the evaluation corpus cut into overlapping windows): the same result as comparing every hit with
    every kept one, with a small share of the comparisons (work, not time: the machine's load does not matter)."""
    import itertools

    from rag import retrieve as r

    corpus = Path(__file__).resolve().parents[2] / "evals" / "data" / "corpus"
    words = list(itertools.chain.from_iterable(p.read_text(errors="replace").split() for p in sorted(corpus.iterdir())))
    texts = [" ".join(words[i : i + 120]) for i in range(0, min(len(words), 60 * 800), 60)][:800]
    hits = [ScoredChunk(_chunk(i, t), 1.0) for i, t in enumerate(texts)]
    calls = {"n": 0}
    original = r.text_similarity

    def counting(a, b):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return original(a, b)

    monkeypatch.setattr(r, "text_similarity", counting)
    fast = [h.chunk.id for h in r.remove_near_duplicates(hits, 0.8)]
    fast_calls, calls["n"] = calls["n"], 0
    kept, bags = [], []  # the obvious loop
    for h in hits:
        bag = r._bag(h.chunk.text)
        if any(counting(bag, b) >= 0.8 for b in bags):
            continue
        kept.append(h.chunk.id)
        bags.append(bag)
    assert fast == kept and len(kept) < len(hits)
    assert fast_calls < calls["n"] / 50, (fast_calls, calls["n"])


def test_near_duplicate_removal_stops_once_k_hits_are_kept(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from rag import retrieve as r

    hits = [ScoredChunk(_chunk(i, f"text number {i} " + "word " * (i % 7)), 1.0) for i in range(10_000)]
    seen = {"n": 0}
    original = r._bag

    def counting(text: str):  # type: ignore[no-untyped-def]
        seen["n"] += 1
        return original(text)

    monkeypatch.setattr(r, "_bag", counting)
    assert len(r.remove_near_duplicates(hits, 1.0, limit=5)) == 5 and seen["n"] == 0  # exact: hashes only
    assert len(r.remove_near_duplicates(hits, 0.95, limit=5)) == 5
