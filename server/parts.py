"""What the server keeps open: one ``rag.wiring.Wiring`` (the composition root) per collection, sharing the models.

Requests and ingestion jobs of a collection share its ``Collection`` (one open store: the in-process Qdrant engine
allows one opener per process, and the in-memory store must see what a job adds) and one answering pipeline (its
retriever keeps the BM25 index loaded). Answers go through ``RagPipeline`` with the caller's access filter
(``rag.policy.retrieval_filters``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rag.collection import NAME, list_collections
from rag.config import Settings
from rag.errors import RagError, StoreError
from rag.types import Embedder, LLMClient

if TYPE_CHECKING:
    from rag.collection import Collection
    from rag.pipeline import RagPipeline
    from rag.wiring import Wiring


class BadRequest(RagError):
    """A request the server understood but cannot do as asked (HTTP 400)."""


class NotFound(StoreError):
    """No such collection, document or job, for a caller who may know (HTTP 404; the message names no path)."""


class Parts:
    """Built once per app from ``Settings``; tests pass their own ``embedder`` / ``llm`` (fakes at our seams)."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None, llm: LLMClient | None = None) -> None:
        from rag.wiring import Wiring

        self.settings = settings
        self.root = Wiring(settings, embedder=embedder, llm=llm)
        self._wirings: dict[str, Wiring] = {}
        self._pipelines: dict[str, RagPipeline] = {}
        self._lock = threading.RLock()

    @property
    def embedder(self) -> Embedder:
        return self.root.embedder()

    def settings_for(self, collection: str) -> Settings:
        if not NAME.match(collection):
            raise NotFound(f"no collection {collection!r}")
        return self.settings.model_copy(update={"collection": collection})

    def wiring(self, collection: str) -> Wiring:
        """The wiring whose default collection is ``collection``: pass it to ``ingest_paths`` to share the store."""
        with self._lock:
            if collection not in self._wirings:
                from rag.wiring import Wiring

                self._wirings[collection] = Wiring(self.settings_for(collection), embedder=self.embedder,
                                                   llm=self.root.llm())  # fmt: skip
            return self._wirings[collection]

    def names(self) -> list[str]:
        return list_collections(self.settings)

    def exists(self, collection: str) -> bool:
        return bool(NAME.match(collection)) and self.wiring(collection).collection().exists()

    def collection(self, collection: str) -> Collection:
        return self.wiring(collection).collection()

    def pipeline(self, collection: str) -> RagPipeline:
        with self._lock:
            if collection not in self._pipelines:
                self._pipelines[collection] = self.wiring(collection).pipeline()
            return self._pipelines[collection]

    def close(self) -> None:
        with self._lock:
            wirings, self._wirings, self._pipelines = list(self._wirings.values()), {}, {}
        for w in wirings:
            w.close()
