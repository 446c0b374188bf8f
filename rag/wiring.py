"""The composition root: every part of the product is built from ``Settings`` here, and only here.

The CLI, the Streamlit app, the evaluation harness and the HTTP service all ask a ``Wiring`` for what they need:
the embedder, a collection (its store, manifest and keyword index), a retriever, the LLM client and the answering
pipeline. The parts themselves never build each other: ``RagPipeline`` receives a retriever and an LLM client, and
no constructor starts a process. The one side effect that a part needs, starting the embedded LLM server when no
``RAG_LLM__BASE_URL`` is set, happens here, lazily, on the first call the LLM client serves.

Tests swap parts here too: pass ready-made parts to ``Wiring(...)``, or, for a command run through the CLI,
``with overriding(embedder=FakeEmbedder(), llm=FakeLLM()):`` makes every ``Wiring`` built inside use them.

Example::

    >>> from rag.config import Settings
    >>> wiring = Wiring(Settings(collection="papers"))     # cheap: nothing is loaded or started yet
    >>> wiring.embedder().name
    'all-MiniLM-L6-v2'
    >>> wiring.pipeline().answer("What is the notice period?")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rag.collection import NAME, Collection
from rag.config import LLMSettings, Settings
from rag.errors import UsageError
from rag.types import Completion, Embedder, LLMClient, Message

if TYPE_CHECKING:
    from rag.pipeline import RagPipeline
    from rag.rerank import Reranker
    from rag.retrieve import Retriever

_OVERRIDES: dict[str, Any] = {}
_OVERRIDABLE = ("embedder", "llm", "reranker")


@contextlib.contextmanager
def overriding(**parts: Any) -> Iterator[None]:
    """Within the block, every ``Wiring`` uses these parts (``embedder``, ``llm``, ``reranker``) instead of its own.

    For tests that drive a face (a CLI command, the evaluation harness) end to end with fakes at our seams.
    """
    unknown = set(parts) - set(_OVERRIDABLE)
    if unknown:
        raise TypeError(f"cannot override {sorted(unknown)}; only {', '.join(_OVERRIDABLE)}")
    saved = dict(_OVERRIDES)
    _OVERRIDES.update(parts)
    try:
        yield
    finally:
        _OVERRIDES.clear()
        _OVERRIDES.update(saved)


class Wiring:
    """Builds and caches the parts for ``settings``; ready-made parts passed in are used as they are."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        llm: LLMClient | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings
        self._embedder = embedder or _OVERRIDES.get("embedder")
        self.given_embedder = self._embedder  # a ready model handed in (None: built from the settings when needed)
        self._llm = llm or _OVERRIDES.get("llm")
        self._reranker = reranker or _OVERRIDES.get("reranker")
        self._collections: dict[str, Collection] = {}
        self._lock = threading.RLock()

    # -- models -----------------------------------------------------------------------------------------------------
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from rag.embedders import load_embedder

                self._embedder = load_embedder(self.settings.embedding, onnx_cache_dir=self.settings.onnx_cache_path)
            return self._embedder

    def reranker(self) -> Reranker:
        with self._lock:
            if self._reranker is None:
                from rag.rerank import load_reranker

                self._reranker = load_reranker(self.settings.retrieval.reranker)
            return self._reranker

    def llm(self) -> LLMClient:
        """The configured LLM; the embedded server is started (or reused) on the first request, not here."""
        with self._lock:
            if self._llm is None:
                self._llm = self.llm_client(self.settings.llm)
            return self._llm

    def llm_client(self, llm: LLMSettings) -> LLMClient:
        """A client for ``llm`` (e.g. a judge on another endpoint): its server if set, else the embedded one."""
        from rag.llm import OpenAICompatibleLLM

        if llm.base_url:
            return OpenAICompatibleLLM(llm, llm.base_url)
        return _EmbeddedLLM(lambda: OpenAICompatibleLLM(llm, self.ensure_llm_server(llm)))

    def ensure_llm_server(self, llm: LLMSettings | None = None) -> str:
        """The base URL of a healthy LLM server: the configured one, or the embedded one, started if needed."""
        from rag.local_llm import ensure_server

        return ensure_server(llm or self.settings.llm, models_dir=self.settings.models_path)

    # -- a collection and what reads it --------------------------------------------------------------------------
    def collection(self, name: str | None = None) -> Collection:
        """The collection ``name`` (default: the configured one); one instance per name and wiring."""
        name = name or self.settings.collection
        with self._lock:
            if name not in self._collections:
                settings = self.settings if name == self.settings.collection else self._for(name)
                self._collections[name] = Collection(settings, embedder=self.embedder)
            return self._collections[name]

    def retriever(self, name: str | None = None) -> Retriever:
        """Retrieval over an existing collection (``CollectionNotFound`` otherwise: asking never creates one)."""
        from rag.retrieve import Retriever

        collection = self.collection(name).require()
        return Retriever(
            collection.settings.retrieval,
            embedder=self.embedder(),
            store=collection.store,
            bm25_dir=collection.bm25_dir,
            reranker=_LazyReranker(self.reranker),
            sync_bm25=lambda: collection.sync_bm25(counts=False),
            pending_among=collection.pending_among,
        )

    def pipeline(self, name: str | None = None) -> RagPipeline:
        """The answering pipeline over an existing collection."""
        from rag.pipeline import RagPipeline

        retriever = self.retriever(name)
        return RagPipeline(self.collection(name).settings, retriever=retriever, llm=self.llm())

    def close(self) -> None:
        """Release every collection this wiring opened (flushes stores, closes manifests)."""
        with self._lock:
            collections, self._collections = list(self._collections.values()), {}
        for c in collections:
            c.close()

    def _for(self, name: str) -> Settings:
        if not NAME.match(name):
            raise UsageError(
                f"invalid collection name {name!r}: use letters, digits, '_', '.' or '-' (64 at most), "
                "starting with a letter or digit"
            )
        return self.settings.model_copy(update={"collection": name})


class _EmbeddedLLM:
    """An ``LLMClient`` whose real client (and the embedded server behind it) is made on the first request.

    Browsing documents or searching must not start a language model; asking does. If the server dies, the next
    request builds a fresh client, which starts the server again.
    """

    def __init__(self, factory: Callable[[], LLMClient]) -> None:
        self._factory = factory
        self._client: LLMClient | None = None
        self._lock = threading.Lock()

    def _get(self) -> LLMClient:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def _reset_on_failure(self, error: BaseException) -> None:
        from rag.errors import LLMError

        if isinstance(error, LLMError):
            with self._lock:
                self._client = None

    @property
    def model(self) -> str:
        return self._get().model

    def complete(self, messages: Sequence[Message], **kwargs: Any) -> list[Completion]:
        try:
            return self._get().complete(messages, **kwargs)
        except Exception as e:
            self._reset_on_failure(e)
            raise

    def stream(self, messages: Sequence[Message], **kwargs: Any) -> Iterator[str]:
        try:
            yield from self._get().stream(messages, **kwargs)
        except Exception as e:
            self._reset_on_failure(e)
            raise


class _LazyReranker:
    """The reranker, loaded when a search first asks for reranking (most searches never do)."""

    def __init__(self, factory: Callable[[], Reranker]) -> None:
        self._factory = factory

    @property
    def name(self) -> str:
        return self._factory().name

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return self._factory().score(query, texts)
