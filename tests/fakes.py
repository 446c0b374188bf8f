"""Fakes at our own seams, in one place: an embedder, LLMs that behave like obedient models, and a judge.

Tests hand them to the composition root (``Wiring(settings, embedder=FakeEmbedder(), llm=FakeLLM())``, or
``rag.wiring.overriding(...)`` for a whole command), never by patching constructors. Real parts (MiniLM, FAISS,
Qdrant, llama.cpp's server, Chromium) are used by the integration tests.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from rag.config import Settings
from rag.prompt import REFUSAL
from rag.types import Chunk, Completion, Message, TokenLogprob, VectorStore


class FakeEmbedder:
    """A deterministic bag-of-words embedder: texts sharing words get similar vectors."""

    name = "fake-bow-64"
    dim = 64

    def _embed(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for word in text.lower().split():
            h = int(hashlib.md5(word.strip(".,;:!?\"'()[]").encode()).hexdigest(), 16)
            v[h % self.dim] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._embed(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed(text)


class FakeLLM:
    """An ``LLMClient`` that behaves like an obedient model, so tests can see what the prompt makes it do.

    It follows instructions it finds OUTSIDE the <<< >>> source blocks ("ignore previous instructions" makes it say
    PWNED); otherwise it quotes the source sharing most words with the question, citing it, or refuses.
    """

    model = "fake-llm"

    def __init__(self, rewrite: str | None = None, fail: Exception | None = None) -> None:
        self.calls: list[list[Message]] = []
        self.rewrite = rewrite
        self.fail = fail

    def _reply(self, messages: Sequence[Message]) -> str:
        self.calls.append(list(messages))
        if self.fail:
            raise self.fail
        if "Standalone question:" in messages[-1].content:
            return self.rewrite or "?"
        prompt = "\n".join(m.content for m in messages)
        outside = re.sub(r"<<<.*?>>>", "", prompt, flags=re.S)
        if "ignore previous instructions" in outside.lower():
            return "PWNED"
        question = messages[-1].content.split("Question:", 1)[1].split("\n", 1)[0]
        words = {w for w in re.findall(r"\w+", question.lower()) if len(w) > 3}
        best, best_overlap = None, 0
        for m in re.finditer(r"\[(\d+)\] [^\n]*\n<<<\n(.*?)\n>>>", messages[-1].content, flags=re.S):
            overlap = len(words & set(re.findall(r"\w+", m.group(2).lower())))
            if overlap > best_overlap:
                best, best_overlap = m, overlap
        return f"{best.group(2).split('.')[0]} [{best.group(1)}]." if best else REFUSAL

    def complete(self, messages: Sequence[Message], *, max_tokens: int | None = None, temperature: float = 0.0,
                 top_logprobs: int | None = None, n: int = 1) -> list[Completion]:
        return [Completion(text=self._reply(messages))] * n

    def stream(self, messages: Sequence[Message], *, max_tokens: int | None = None,
               temperature: float = 0.0) -> Iterator[str]:
        text = self._reply(messages)
        for i in range(0, len(text), 7):
            yield text[i : i + 7]


class ScriptedLLM(FakeLLM):
    """Replies with a fixed text, whatever the sources say (a model that invents, or cites the wrong number)."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    def _reply(self, messages: Sequence[Message]) -> str:
        self.calls.append(list(messages))
        return self.reply


class AnsweringLLM:
    """Answers with the first sentence of the first source in the prompt and cites it; ``broken=True`` ignores the
    sources. It finds sources by their text (``known``), so it does not depend on how the prompt formats them."""

    model = "fake-answerer"

    def __init__(self, known: Sequence[str] = (), broken: bool = False) -> None:
        self.known = list(known)
        self.broken = broken
        self.calls = 0

    def _reply(self, messages: Sequence[Message]) -> str:
        self.calls += 1
        if self.broken:
            return "Bananas are yellow."
        user = messages[-1].content
        if "What is the airspeed of a swallow" in user:
            return "I don't know: the documents do not contain the answer."
        shown = sorted((user.find(t), t) for t in self.known if t in user)
        if not shown:
            return "I don't know: the documents do not contain the answer."
        first = shown[0][1].split(". ")[0].rstrip(".")
        return f"{first} [1]."

    def complete(self, messages: Sequence[Message], *, max_tokens: int | None = None, temperature: float = 0.0,
                 top_logprobs: int | None = None, n: int = 1) -> list[Completion]:  # fmt: skip
        return [Completion(text=self._reply(messages)) for _ in range(n)]

    def stream(self, messages: Sequence[Message], *, max_tokens: int | None = None,
               temperature: float = 0.0) -> Iterator[str]:  # fmt: skip
        yield self._reply(messages)


class JudgeLLM:
    """A judge at the LLMClient seam: replies with crafted per-token alternatives (or none, like some servers)."""

    model = "fake-judge"

    def __init__(self, dist: dict[str, float] | None = None, *, logprobs: bool = True, prefix: Sequence[str] = (),
                 samples: Sequence[str] = ("4",)) -> None:  # fmt: skip
        self.dist = dist or {"5": 0.6, "4": 0.3, "3": 0.1}
        self.logprobs = logprobs
        self.prefix = list(prefix)  # tokens generated before the score (e.g. a JSON opening)
        self.samples = list(samples)
        self.calls: list[dict] = []

    def complete(self, messages: Sequence[Message], *, max_tokens: int | None = None, temperature: float = 0.0,
                 top_logprobs: int | None = None, n: int = 1) -> list[Completion]:  # fmt: skip
        self.calls.append(
            {"messages": list(messages), "top_logprobs": top_logprobs, "n": n, "temperature": temperature}
        )
        if "Evaluation Steps:\n" == messages[-1].content[-len("Evaluation Steps:\n") :]:
            return [Completion(text="1. Read the answer.\n2. Compare it with the sources.\n3. Score 1-5.")]
        if top_logprobs and self.logprobs:
            positions = [(TokenLogprob(t, 0.0),) for t in self.prefix]
            best = max(self.dist, key=self.dist.get)
            positions.append(tuple(TokenLogprob(t, math.log(p)) for t, p in self.dist.items()))
            return [Completion(text="".join(self.prefix) + best, top_logprobs=tuple(positions))]
        return [Completion(text=self.samples[i % len(self.samples)]) for i in range(n)]

    def stream(self, messages: Sequence[Message], *, max_tokens: int | None = None,
               temperature: float = 0.0) -> Iterator[str]:  # fmt: skip
        yield "4"


def make_chunk(source: str, text: str, page: int | None = None, i: int = 0) -> Chunk:
    return Chunk(id=f"{source}-{page}-{i}", text=text, source=source, page=page, start=0, end=len(text),
                 content_hash=hashlib.sha256(text.encode()).hexdigest(), file_hash="f",
                 file_type=source.rsplit(".", 1)[-1])  # fmt: skip


def index_chunks(settings: Settings, embedder: FakeEmbedder, chunks: Sequence[Chunk]) -> Settings:
    """Write ``chunks`` (embedded by ``embedder``) into the collection of ``settings`` through the composition root:
    a real store on disk and its BM25 index, as ingestion leaves them. Returns ``settings``."""
    from rag.wiring import Wiring

    with Wiring(settings, embedder=embedder).collection() as collection:
        collection.store.upsert(list(chunks), embedder.embed_documents([c.text for c in chunks]))
        collection.rebuild_bm25()
    return settings


@dataclass(frozen=True)
class ModelStub:
    """What a store asks of an embedder when it opens: the model's name and dimension (no model needed)."""

    name: str
    dim: int


def store_for(settings: Settings, dim: int, model: str) -> VectorStore:
    """The store of the collection of ``settings``, opened as the product opens it (``rag.collection``)."""
    from rag.collection import Collection

    return Collection(settings, embedder=lambda: ModelStub(model, dim)).store  # type: ignore[arg-type, return-value]
