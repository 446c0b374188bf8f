"""Chunking: ``Document`` -> ``Chunk``s sized in tokens of the embedding model, with provenance and stable ids.

Splitting is langchain-text-splitters' ``RecursiveCharacterTextSplitter`` (paragraphs, then lines, sentences, words)
with the embedding model's tokenizer as the length function, so a 256-token chunk is 256 tokens for the model that
embeds it. Each chunk keeps its character span in the file's text; its id hashes source, page, span and content,
so the same file chunked again yields the same ids.

Example::

    >>> from rag.types import Document
    >>> chunker = Chunker(count_tokens=lambda t: len(t.split()), size_tokens=4, overlap_tokens=1)
    >>> doc = Document(source="/a.txt", text="one two three four five six seven", file_type="txt", file_hash="f")
    >>> [(c.text, c.start, c.end) for c in chunker.split(doc)]
    [('one two three four', 0, 18), ('four five six seven', 14, 33)]
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ingest.formats.tables import split_table
from rag.errors import ConfigError
from rag.types import Chunk, Document

# Paragraphs, lines, sentence ends, clauses, words, then characters: the order the splitter tries.
TEXT_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]
MARKDOWN_SEPARATORS = [r"\n(?=#{1,6} )", r"\n(?=```)", r"\n(?=(?:\*\*\*+|---+|___+)\n)"]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def chunk_id(source: str, page: int | None, start: int, end: int, content_hash: str) -> str:
    """Stable id of a chunk: the same text at the same place of the same file always gets the same id.

    >>> chunk_id("/a.txt", None, 0, 5, "h") == chunk_id("/a.txt", None, 0, 5, "h")
    True
    """
    key = f"{source}\x1f{page if page is not None else ''}\x1f{start}\x1f{end}\x1f{content_hash}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Chunker:
    """Splits documents into token-sized chunks. Cheap to build; the splitters are made on first use."""

    def __init__(self, count_tokens: Callable[[str], int], size_tokens: int = 256, overlap_tokens: int = 32) -> None:
        if overlap_tokens >= size_tokens:
            raise ConfigError(f"overlap_tokens ({overlap_tokens}) must be smaller than size_tokens ({size_tokens})")
        self.count_tokens = count_tokens
        self.size_tokens = size_tokens
        self.overlap_tokens = overlap_tokens
        self._splitters: dict[tuple[bool, int], Any] = {}

    def _splitter(self, markdown: bool, size: int) -> Any:
        """The recursive splitter for plain text or Markdown at ``size`` tokens (made once per size)."""
        key = (markdown, size)
        if key not in self._splitters:
            from langchain_text_splitters import RecursiveCharacterTextSplitter

            separators = [re.escape(s) for s in TEXT_SEPARATORS]
            if markdown:  # headings, code fences and rules first; the look-ahead leaves them starting the next chunk
                separators = MARKDOWN_SEPARATORS + separators
            self._splitters[key] = RecursiveCharacterTextSplitter(
                chunk_size=size,
                chunk_overlap=min(self.overlap_tokens, size // 2),
                length_function=self.count_tokens,
                separators=separators,
                is_separator_regex=True,
                keep_separator="end",  # a sentence keeps its full stop; chunks stay contiguous slices of the text
                strip_whitespace=True,
            )
        return self._splitters[key]

    def _budget(self, doc: Document) -> int:
        """Tokens left for the text once the section path that is embedded with it is counted."""
        if not doc.section:
            return self.size_tokens
        return max(self.size_tokens - self.count_tokens(doc.section + "\n\n"), self.size_tokens // 2)

    def split(self, doc: Document) -> Iterator[Chunk]:
        """The chunks of one document, in order; spans index into the file's text (``doc.offset`` added).

        A table (``doc.table_header`` set) is cut between rows, and every chunk repeats its caption and header.
        """
        if doc.table_header is not None:
            for start, end, piece in split_table(doc.text, doc.table_header, self.count_tokens, self._budget(doc)):
                yield self._chunk(doc, piece, start, end)
            return
        splitter = self._splitter(doc.file_type == "md", self._budget(doc))
        text = doc.text
        cursor = 0
        for piece in splitter.split_text(text):
            if not piece.strip():
                continue
            # Chunks are contiguous slices in order; overlap means the next one may start before the last ended.
            start = text.find(piece, cursor)
            if start == -1:  # regex separators can drop characters: fall back to a search from the beginning
                start = max(text.find(piece), 0)
            end = start + len(piece)
            cursor = start + 1
            yield self._chunk(doc, piece, start, end)

    @staticmethod
    def _chunk(doc: Document, piece: str, start: int, end: int) -> Chunk:
        content_hash = sha256_text(piece)
        s, e = doc.offset + start, doc.offset + end
        return Chunk(
            id=chunk_id(doc.source, doc.page, s, e, content_hash),
            text=piece,
            source=doc.source,
            page=doc.page,
            start=s,
            end=e,
            content_hash=content_hash,
            file_hash=doc.file_hash,
            file_type=doc.file_type,
            section=doc.section,
            ocr=doc.ocr,
            ocr_confidence=doc.ocr_confidence,
        )

    def split_all(self, docs: Iterable[Document]) -> Iterator[Chunk]:
        for doc in docs:
            yield from self.split(doc)
