"""Chunking: token-sized with the model's tokenizer, contiguous spans, stable ids."""

from __future__ import annotations

from ingest.chunk import Chunker, chunk_id
from rag.embedders import SentenceTransformerEmbedder
from rag.types import Document

TEXT = "\n\n".join(
    f"Paragraph {i}. " + " ".join(f"The river number {i} carries sediment {j} to the sea." for j in range(12))
    for i in range(30)
)


def _doc(text: str = TEXT, **kw: object) -> Document:
    return Document(source="/docs/rivers.txt", text=text, file_type="txt", file_hash="fh", **kw)  # type: ignore[arg-type]


def test_chunks_are_token_sized_with_the_model_tokenizer() -> None:
    emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    chunker = Chunker(emb.count_tokens, size_tokens=64, overlap_tokens=8)
    chunks = list(chunker.split(_doc()))
    sizes = [emb.count_tokens(c.text) for c in chunks]
    assert len(chunks) > 20
    assert max(sizes) <= 64 and sum(sizes) / len(sizes) > 40  # full, not tiny, chunks
    assert emb._model is None  # counting tokens never loaded the model


def test_spans_point_into_the_text_and_overlap() -> None:
    chunker = Chunker(lambda t: len(t.split()), size_tokens=40, overlap_tokens=10)
    doc = _doc(offset=1000)
    chunks = list(chunker.split(doc))
    for c in chunks:
        assert TEXT[c.start - 1000 : c.end - 1000] == c.text
    assert any(b.start < a.end for a, b in zip(chunks, chunks[1:], strict=False))  # overlap
    assert all(c.page is None and c.file_hash == "fh" and c.source == doc.source for c in chunks)


def test_ids_are_stable_and_unique() -> None:
    chunker = Chunker(lambda t: len(t.split()), size_tokens=40, overlap_tokens=10)
    first = [c.id for c in chunker.split(_doc())]
    again = [c.id for c in Chunker(lambda t: len(t.split()), 40, 10).split(_doc())]
    assert first == again and len(set(first)) == len(first)
    other_page = [c.id for c in chunker.split(Document("/docs/rivers.txt", TEXT, "txt", "fh", page=2))]
    assert not set(first) & set(other_page)
    assert chunk_id("/a", 1, 0, 5, "h") != chunk_id("/b", 1, 0, 5, "h")


def test_markdown_splits_on_headings_first() -> None:
    md = "# Alpha\n\n" + "alpha words here. " * 20 + "\n\n## Beta\n\n" + "beta words here. " * 20
    chunker = Chunker(lambda t: len(t.split()), size_tokens=70, overlap_tokens=0)
    chunks = list(chunker.split(Document("/a.md", md, "md", "f")))
    assert len(chunks) == 2
    assert chunks[1].text.startswith("## Beta")
