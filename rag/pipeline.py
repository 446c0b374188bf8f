"""Question in, cited answer out: (rewrite a follow-up) -> retrieve -> prompt -> LLM -> verify -> Answer.

Verification (``rag.verify``) checks each sentence against the sources the model was given: a citation stays only
if its source supports the sentence, the supporting source is added where the model cited none or the wrong one,
and sentences no source supports are marked. An answer of which no sentence is supported becomes the refusal
(``settings.verify.keep_unsupported_answer`` keeps it, marked).

Example::

    >>> from rag.config import Settings
    >>> from rag.wiring import Wiring
    >>> rag = Wiring(Settings(collection="papers")).pipeline()  # doctest: +SKIP
    >>> answer = rag.answer("What does the contract say about termination?")  # doctest: +SKIP
    >>> [(c.n, c.hit.chunk.source, c.hit.chunk.page) for c in answer.citations]  # doctest: +SKIP
    [(1, '/docs/contract.pdf', 4)]
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from rag.config import Settings
from rag.errors import CollectionEmpty
from rag.prompt import REFUSAL, Prompt, build_prompt, build_rewrite_messages, cited_numbers
from rag.retrieve import Retriever
from rag.types import Answer, Citation, Filters, LLMClient, Message, ScoredChunk
from rag.verify import Verifier

REWRITE_MAX_TOKENS = 64


class RagPipeline:
    """The answering pipeline over one collection. It receives its parts (``rag.wiring`` builds them) and starts
    nothing itself; pass fakes for any part in tests."""

    def __init__(
        self, settings: Settings, *, retriever: Retriever, llm: LLMClient, verifier: Verifier | None = None
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.llm = llm
        # cheap: the scorer loads on first use; by default it shares the retriever's cross-encoder (same model)
        same = settings.verify.model == settings.retrieval.reranker
        self.verifier = verifier or Verifier(settings.verify, retriever.reranker if same else None)

    # -- the flow ---------------------------------------------------------------------------------------------------

    def retrieve(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        mode: str | None = None,
        rerank: bool | None = None,
    ) -> list[ScoredChunk]:
        """The chunks the prompt would get for ``question``, best first (see ``rag.retrieve``).

        Raises ``CollectionEmpty`` when the collection holds no documents yet.
        """
        if self.retriever.store.count() == 0:
            raise CollectionEmpty(self.settings.collection)
        return self.retriever.search(question, k=k, filters=filters, mode=mode, rerank_hits=rerank)

    def standalone_question(self, question: str, history: Sequence[Message]) -> str:
        """A follow-up rewritten to stand alone ("and its population?" -> "What is the population of Paris?")."""
        if not any(m.role in ("user", "assistant") for m in history):
            return question
        reply = self.llm.complete(build_rewrite_messages(question, history), max_tokens=REWRITE_MAX_TOKENS)
        text = reply[0].text.strip() if reply else ""
        text = text.splitlines()[0].strip().strip('"').strip() if text else ""
        for prefix in ("Standalone question:", "Rewritten question:", "Question:"):
            if text.lower().startswith(prefix.lower()):
                text = text[len(prefix) :].strip()
        # A tiny model sometimes answers instead of rewriting; an empty or rambling reply keeps the original.
        return text if 0 < len(text) <= max(300, 3 * len(question)) else question

    def relevant_enough(self, hits: Sequence[ScoredChunk]) -> bool:
        """False when the best dense similarity among ``hits`` is below ``settings.retrieval.min_dense_score``.

        Hits without a dense score (BM25 mode) are not judged: lexical scores have no absolute scale.
        """
        dense = [h.stages["dense"] for h in hits if "dense" in h.stages]
        return not dense or max(dense) >= self.settings.retrieval.min_dense_score

    def _prepare(
        self, question: str, history: Sequence[Message], k: int | None, filters: Filters | None
    ) -> tuple[str | None, Prompt, dict[str, float]]:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        standalone = self.standalone_question(question, history)
        if history:
            timings["rewrite"] = time.perf_counter() - t
        t = time.perf_counter()
        rerank = self.settings.retrieval.rerank
        # reranking is on for answers unless set: seconds of generation follow (docs/benchmarks.md); search stays fast
        hits = self.retrieve(standalone, k=k, filters=filters, rerank=True if rerank is None else rerank)
        timings["retrieve"] = time.perf_counter() - t
        if not self.relevant_enough(hits):
            hits = []  # nothing close to the question: the honest answer needs no model (and a small one would guess)
        # The standalone form is what the sources were retrieved for; the history stays in the prompt as context.
        prompt = build_prompt(standalone, hits, history, budget_tokens=self.settings.llm.context_budget_tokens)
        return (standalone if history else None), prompt, timings

    def _answer(
        self, question: str, text: str, prompt: Prompt, timings: dict[str, float], standalone: str | None
    ) -> Answer:
        text = text.strip()
        if not prompt.sources or not self.verifier.enabled:
            numbers = cited_numbers(text, len(prompt.sources))
            return Answer(
                question=question,
                text=text,
                citations=tuple(Citation(n=n, hit=prompt.sources[n - 1]) for n in numbers),
                retrieved=prompt.sources,
                timings=timings,
                standalone_question=standalone,
            )
        t = time.perf_counter()
        v = self.verifier.check(text, prompt.sources)
        timings["verify"] = time.perf_counter() - t
        timings["total"] = timings.get("total", 0.0) + timings["verify"]
        refused = bool(v.claims) and not v.supported_any and not self.settings.verify.keep_unsupported_answer
        final = REFUSAL if refused else v.text  # nothing the model said is in the sources: say so, do not pass it on
        spans: dict[int, list[tuple[int, int]]] = {}
        for s in v.sentences:
            for n, start, end in s.spans:
                spans.setdefault(n, []).append((start, end))
        cited = [] if refused else v.cited
        return Answer(
            question=question,
            text=final,
            citations=tuple(Citation(n=n, hit=prompt.sources[n - 1], spans=tuple(spans.get(n, ()))) for n in cited),
            retrieved=prompt.sources,
            timings=timings,
            standalone_question=standalone,
            sentences=v.sentences,
            model_text=text if final != text else None,
        )

    def answer(
        self, question: str, *, history: Sequence[Message] = (), k: int | None = None, filters: Filters | None = None
    ) -> Answer:
        """The whole answer at once (see ``stream`` for the same thing token by token)."""
        start = time.perf_counter()
        standalone, prompt, timings = self._prepare(question, history, k, filters)
        t = time.perf_counter()
        if prompt.sources:
            text = self.llm.complete(list(prompt.messages), max_tokens=self.settings.llm.max_tokens,
                                     temperature=self.settings.llm.temperature)[0].text
        else:
            text = REFUSAL  # nothing relevant retrieved (or filters exclude everything): no model call can do better
        timings["generate"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - start
        return self._answer(question, text, prompt, timings, standalone)

    def stream(
        self, question: str, *, history: Sequence[Message] = (), k: int | None = None, filters: Filters | None = None
    ) -> Iterator[str | Answer]:
        """Yield text deltas as the LLM writes them, then exactly one final ``Answer``."""
        start = time.perf_counter()
        standalone, prompt, timings = self._prepare(question, history, k, filters)
        t = time.perf_counter()
        parts: list[str] = []
        deltas: Any = (
            self.llm.stream(list(prompt.messages), max_tokens=self.settings.llm.max_tokens,
                            temperature=self.settings.llm.temperature)
            if prompt.sources
            else iter([REFUSAL])
        )
        for delta in deltas:
            if not parts:
                timings["first_token"] = time.perf_counter() - start
            parts.append(delta)
            yield delta
        timings["generate"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - start
        yield self._answer(question, "".join(parts), prompt, timings, standalone)
