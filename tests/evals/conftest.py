"""Fakes at our own seams for the eval tests: an LLM that answers from the prompt, and a judge LLM with logprobs."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from rag.types import Chunk, Completion, Message, TokenLogprob


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


def chunk(source: str, text: str, page: int | None = None, i: int = 0) -> Chunk:
    return Chunk(id=f"{source}-{page}-{i}", text=text, source=source, page=page, start=0, end=len(text),
                 content_hash=str(hash(text)), file_hash="f", file_type=source.rsplit(".", 1)[-1])  # fmt: skip


import pytest  # noqa: E402


@pytest.fixture
def fakes():
    """The fake classes (tests cannot import conftest modules under --import-mode=importlib)."""

    class F:
        AnsweringLLM = AnsweringLLM
        JudgeLLM = JudgeLLM
        chunk = staticmethod(chunk)

    return F
