"""Core data types and the seams (Protocols) between the parts.

Data is frozen dataclasses with typed provenance; seams are small ``typing.Protocol`` classes that implementations
satisfy structurally (no inheritance).

Example::

    >>> c = Chunk(id="abc", text="Paris is in France.", source="/docs/a.pdf", page=3, start=0, end=19,
    ...           content_hash="h", file_hash="f", file_type="pdf")
    >>> ScoredChunk(chunk=c, score=0.8).chunk.page
    3
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
"""float32, L2-normalised: 2-D (one row per text) from ``embed_documents``, 1-D from ``embed_query``."""

FilterValue = str | int | Sequence[str] | Sequence[int]
Filters = Mapping[str, FilterValue]
"""Metadata filters: exact match on ``source``, ``file_type`` or ``page``; a sequence value means any-of.

``{"file_type": "pdf"}`` keeps PDF chunks; ``{"source": ["/a.md", "/b.md"]}`` keeps chunks of two files.
``{"groups": ["hr", "finance"]}`` is the access filter: public chunks (no groups) and chunks sharing a group with the
list; ``{"groups": []}`` keeps public chunks only (``rag.policy`` builds it from who asks). Their one meaning, and its
translation for each engine, is ``rag.filters``.
"""

SECTION_SEP = " › "
"""Between the headings of a section path: ``"Training › Optimisers › Adam"``."""

PAGE_WORDS = {"pptx": "slide"}
"""What a ``page`` is called per file type when a location is shown (default: "page")."""


@dataclass(frozen=True)
class Document:
    """One loaded unit of a file: a PDF page or slide, a section of a document under one heading path, or a table.

    Units never straddle a section: the chunker splits each on its own, so no chunk mixes two sections.
    """

    source: str  # absolute path of the file
    text: str
    file_type: str  # "pdf", "md", "txt", "html", "docx", "pptx", "xlsx", "csv", "eml", "png", ...
    file_hash: str  # sha256 of the file's bytes
    page: int | None = None  # 1-based page number for paged formats (the slide number for slide decks)
    offset: int = 0  # where ``text`` starts in the whole file's text (large files are loaded in pieces)
    section: str | None = None  # heading path, e.g. "Training › Optimisers › Adam" (``SECTION_SEP`` between)
    ocr: bool = False  # the text was read by OCR from an image of the page
    ocr_confidence: float | None = None  # the OCR engine's mean confidence (0-1) over the page's text
    # A table: the caption and header rows (a prefix of ``text``) that every chunk of the table repeats.
    table_header: str | None = None


@dataclass(frozen=True)
class Chunk:
    """A piece of a document with full provenance; ``id`` is stable across runs for the same content."""

    id: str
    text: str
    source: str
    page: int | None
    start: int  # character span of the chunk inside its Document's text
    end: int
    content_hash: str  # sha256 of ``text``
    file_hash: str
    file_type: str
    # Access groups of the document (set at ingestion); empty: everyone who may read the collection sees it.
    groups: tuple[str, ...] = ()
    section: str | None = None  # heading path of the chunk's section: embedded with the text, shown with the citation
    ocr: bool = False  # text read by OCR
    ocr_confidence: float | None = None  # the OCR engine's mean confidence (0-1) for the page

    def __post_init__(self) -> None:
        if not isinstance(self.groups, tuple):  # read back from JSON or a store as a list
            object.__setattr__(self, "groups", tuple(self.groups or ()))

    @property
    def embedding_text(self) -> str:
        """What is embedded and indexed: the section path, then the text (the text alone is what is shown).

        >>> Chunk(id="a", text="Use a small step.", source="/a.md", page=None, start=0, end=17, content_hash="h",
        ...       file_hash="f", file_type="md", section="Training › Adam").embedding_text
        'Training › Adam\\n\\nUse a small step.'
        """
        return f"{self.section}\n\n{self.text}" if self.section else self.text

    def page_label(self) -> str | None:
        """``"slide 3"`` for slide decks, ``"page 3"`` for other paged formats, ``None`` without a page."""
        if self.page is None:
            return None
        return f"{PAGE_WORDS.get(self.file_type, 'page')} {self.page}"


@dataclass(frozen=True)
class ScoredChunk:
    """A retrieved chunk with its score (higher is better) and, for debugging, what each stage gave it."""

    chunk: Chunk
    score: float
    stages: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Citation:
    """Source number ``n`` as shown in the prompt (``[n]``) and the chunk it stands for."""

    n: int
    hit: ScoredChunk
    spans: tuple[tuple[int, int], ...] = ()  # verified answers: where in ``hit.chunk.text`` the support is


@dataclass(frozen=True)
class AttributedSentence:
    """One sentence of an answer after verification (``rag.verify``).

    ``citations`` are the source numbers that support it (the model's own where they do, others where it cited
    none or the wrong one); ``supported`` is None for a sentence that asserts nothing to check (a refusal, a
    heading), else whether the sources support it; ``score`` is the support (0..1) of the best supporting source.
    """

    text: str  # without citation markers
    citations: tuple[int, ...]
    supported: bool | None
    score: float
    model_citations: tuple[int, ...] = ()  # what the model cited in this sentence
    evidence: float = 1.0  # share of the sentence's checkable facts (numbers, names) found in the cited sources
    spans: tuple[tuple[int, int, int], ...] = ()  # (source number, start, end) of the support in that source


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    citations: tuple[Citation, ...]  # the sources the answer actually cites, in order of first citation
    retrieved: tuple[ScoredChunk, ...]  # every source that was put in the prompt
    timings: Mapping[str, float]  # seconds per stage: "retrieve", "generate", ...
    standalone_question: str | None = None  # the rewritten question for follow-ups
    sentences: tuple[AttributedSentence, ...] = ()  # per-sentence attribution; empty when verification is off
    model_text: str | None = None  # what the model wrote, when verification changed it (markers, refusal)

    @property
    def unsupported(self) -> tuple[AttributedSentence, ...]:
        """Sentences that assert something no given source supports."""
        return tuple(s for s in self.sentences if s.supported is False)


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float


@dataclass(frozen=True)
class Completion:
    """A non-streamed reply. ``top_logprobs`` holds, per generated token, the alternatives the server returned."""

    text: str
    top_logprobs: tuple[tuple[TokenLogprob, ...], ...] = ()
    finish_reason: str | None = None


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalised vectors. Queries and documents go through different methods."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> Vector: ...

    def embed_query(self, text: str) -> Vector: ...


@runtime_checkable
class VectorStore(Protocol):
    """Chunks and their vectors, persisted. Every implementation passes ``tests/rag/test_store_contract.py``."""

    def upsert(self, chunks: Sequence[Chunk], vectors: Vector) -> None: ...

    # a 1-D query vector; hits best first
    def search(self, vector: Vector, k: int, filters: Filters | None = None) -> list[ScoredChunk]: ...

    def delete_source(self, source: str) -> int: ...

    def count(self) -> int: ...

    def chunks(self, filters: Filters | None = None) -> Iterator[Chunk]: ...

    def sources(self) -> dict[str, int]: ...  # source path -> number of chunks

    def close(self) -> None: ...  # flush what is pending and release files/locks


@runtime_checkable
class LLMClient(Protocol):
    """An OpenAI-compatible chat model. ``rag.llm.OpenAICompatibleLLM`` is the real one; tests use a fake."""

    @property
    def model(self) -> str: ...

    def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        top_logprobs: int | None = None,
        n: int = 1,
    ) -> list[Completion]: ...

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int | None = None, temperature: float = 0.0
    ) -> Iterator[str]: ...
