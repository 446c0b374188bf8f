"""BM25 index: built on disk, loaded back, maps hits to chunks, applies filters, swaps atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import StoreError
from rag.lexical import BM25Index, build_bm25_index
from rag.types import Chunk


def _chunk(i: int, text: str, source: str = "/docs/a.txt", page: int | None = None, file_type: str = "txt") -> Chunk:
    return Chunk(id=f"c{i}", text=text, source=source, page=page, start=0, end=len(text),
                 content_hash=f"h{i}", file_hash="f", file_type=file_type)


CHUNKS = [
    _chunk(0, "The mitochondria is the powerhouse of the cell.", "/docs/bio.pdf", 3, "pdf"),
    _chunk(1, "Photosynthesis turns sunlight into chemical energy in plants.", "/docs/bio.pdf", 4, "pdf"),
    _chunk(2, "The French Revolution began in 1789 with the storming of the Bastille.", "/docs/history.md", None, "md"),
    _chunk(3, "Cell division happens by mitosis; each cell splits in two.", "/docs/notes.txt"),
]


def test_search_finds_the_chunk_with_the_query_words_and_keeps_provenance(tmp_path: Path) -> None:
    build_bm25_index(CHUNKS, tmp_path / "bm25")
    hits = BM25Index.load(tmp_path / "bm25").search("when did the French revolution begin", k=2)
    assert hits[0].chunk == CHUNKS[2]
    assert hits[0].stages["bm25"] == hits[0].score > 0
    # only chunks sharing a word with the query come back
    assert [h.chunk.id for h in hits] == ["c2"]


def test_search_ranks_by_bm25_and_applies_filters(tmp_path: Path) -> None:
    build_bm25_index(CHUNKS, tmp_path / "bm25")
    index = BM25Index.load(tmp_path / "bm25")
    hits = index.search("cell", k=5)
    assert {h.chunk.id for h in hits} == {"c0", "c3"}
    assert hits == sorted(hits, key=lambda h: -h.score)
    only_txt = index.search("cell", k=5, filters={"file_type": "txt"})
    assert [h.chunk.id for h in only_txt] == ["c3"]
    pages = index.search("cell energy", k=5, filters={"page": [4]})
    assert [h.chunk.id for h in pages] == ["c1"]


def test_unknown_words_and_empty_collections_give_no_hits(tmp_path: Path) -> None:
    build_bm25_index(CHUNKS, tmp_path / "bm25")
    assert BM25Index.load(tmp_path / "bm25").search("zzyzx qwerty", k=5) == []
    build_bm25_index([], tmp_path / "empty")
    assert BM25Index.load(tmp_path / "empty").search("cell", k=5) == []


def test_rebuild_replaces_the_index_atomically(tmp_path: Path) -> None:
    directory = tmp_path / "bm25"
    build_bm25_index(CHUNKS, directory)
    build_bm25_index(CHUNKS[:1], directory)
    build_bm25_index([_chunk(9, "A brand new chunk about quasars.")], directory)
    index = BM25Index.load(directory)
    assert len(index) == 1
    assert index.search("quasars", k=3)[0].chunk.id == "c9"
    assert index.search("mitochondria", k=3) == []
    # old versions are cleaned up (the current one and at most one previous are kept), no temp folders left
    leftovers = [p.name for p in directory.iterdir() if p.is_dir()]
    assert len(leftovers) <= 2 and not any(n.startswith(".tmp") for n in leftovers)


def test_missing_index_says_to_ingest(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="rag ingest"):
        BM25Index.load(tmp_path / "nothing")


def test_access_groups_filter_applies_to_bm25_before_ranking(tmp_path: Path) -> None:
    from dataclasses import replace

    secret = replace(_chunk(9, "Cell budget: the cell salary table for the cell team.", "/docs/hr/pay.md", None, "md"),
                     groups=("hr",))
    build_bm25_index([*CHUNKS, secret], tmp_path / "bm25")
    index = BM25Index.load(tmp_path / "bm25")
    assert index.search("cell salary", k=1)[0].chunk == secret  # groups survive the on-disk round trip
    outsider = index.search("cell salary", k=5, filters={"groups": ["finance"]})
    assert outsider and "c9" not in {h.chunk.id for h in outsider}
    assert {h.chunk.id for h in outsider} == {"c0", "c3"}
    assert index.search("cell salary", k=1, filters={"groups": ["hr"]})[0].chunk.id == "c9"
