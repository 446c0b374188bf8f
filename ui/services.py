"""The few calls the Streamlit app makes into ``rag`` and ``ingest``, all through the composition root.

``ui/app.py`` holds display code only; everything it asks of the rest of the system goes through these functions,
which build parts with ``rag.wiring`` and import the heavy parts lazily (the app's first paint must not wait for
torch). Tests drive the app with fakes at our seams through ``rag.wiring.overriding``, on a real index.

Example::

    >>> from rag.config import Settings
    >>> s = with_ui_choices(Settings(), collection="papers", k=3, mode="reranked", base_url="", model="")
    >>> (s.collection, s.retrieval.k, s.retrieval.mode, s.retrieval.rerank, s.llm.base_url)
    ('papers', 3, 'hybrid', True, None)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rag.collection import NAME as _COLLECTION
from rag.collection import list_collections
from rag.config import Settings
from rag.errors import ConfigError
from rag.types import Embedder, Filters, LLMClient

if TYPE_CHECKING:  # only for annotations: importing these pulls in the heavy stack
    from ingest.pipeline import IngestProgress, IngestSummary
    from rag.pipeline import RagPipeline
    from rag.wiring import Wiring

RETRIEVAL_MODES = ("dense", "hybrid", "reranked")
"""What the sidebar offers; "reranked" is hybrid retrieval followed by the cross-encoder."""


def ui_mode(settings: Settings) -> str:
    """The sidebar's name for the configured retrieval: ``"reranked"``, ``"dense"``, ``"bm25"`` or ``"hybrid"``."""
    rerank = settings.retrieval.rerank
    if rerank or (rerank is None and settings.retrieval.mode == "hybrid"):  # None: answers are reranked by default
        return "reranked"
    return settings.retrieval.mode


def with_ui_choices(base: Settings, *, collection: str, k: int, mode: str, base_url: str, model: str) -> Settings:
    """``base`` with the sidebar's choices applied (an empty endpoint means the embedded local model)."""
    collection = collection.strip()
    if not _COLLECTION.match(collection):
        raise ConfigError(
            f"invalid collection name {collection!r}: use letters, digits, '_', '.' or '-' (64 at most), "
            "starting with a letter or digit"
        )
    retrieval = base.retrieval.model_copy(
        update={"k": k, "mode": "hybrid" if mode == "reranked" else mode, "rerank": mode == "reranked"}
    )
    llm = base.llm.model_copy(update={"base_url": base_url.strip() or None, "model": model.strip() or None})
    return base.model_copy(update={"collection": collection, "retrieval": retrieval, "llm": llm})


def collections(settings: Settings) -> list[str]:
    """Names of the collections that exist under the data dir, sorted."""
    return list_collections(settings)


def sample_documents(folder: Path | None = None) -> list[Path]:
    """The bundled sample files (``docs/samples``), found as ``rag ingest`` would find them."""
    from ingest.samples import SAMPLES_DIR
    from ingest.samples import sample_documents as _samples

    return _samples(folder or SAMPLES_DIR)


def wiring(settings: Settings, *, embedder: Embedder | None = None, llm: LLMClient | None = None) -> Wiring:
    from rag.wiring import Wiring

    return Wiring(settings, embedder=embedder, llm=llm)


def make_embedder(settings: Settings) -> Embedder:
    return wiring(settings).embedder()


def make_llm(settings: Settings) -> LLMClient:
    """A client for the configured endpoint; the embedded server starts (or is reused) on the first question."""
    return wiring(settings).llm()


def make_pipeline(settings: Settings, *, embedder: Embedder, llm: LLMClient) -> RagPipeline:
    """The answering pipeline (``CollectionNotFound`` for a collection that does not exist yet)."""
    return wiring(settings, embedder=embedder, llm=llm).pipeline()


def ingest(
    paths: Sequence[Path],
    settings: Settings,
    *,
    progress: Callable[[IngestProgress], None] | None,
    embedder: Embedder | None,
    groups: Sequence[str] = (),
    cancel: threading.Event | None = None,
) -> IngestSummary:
    """Index ``paths`` (their chunks labelled with ``groups``); ``cancel`` stops the run at its next batch with a
    consistent collection."""
    from ingest.pipeline import ingest_paths

    return ingest_paths(list(paths), wiring(settings, embedder=embedder), progress=progress, groups=groups,
                        cancel=cancel)


def list_documents(
    settings: Settings, *, embedder: Embedder | None = None, filters: Filters | None = None
) -> list[tuple[str, int]]:
    """(source, chunk count) for every indexed document that ``filters`` lets through (``rag.policy``'s access
    filter for the signed-in user); empty when the collection does not exist yet."""
    collection = wiring(settings, embedder=embedder).collection()
    try:
        if filters is None:
            return collection.documents()
        if not collection.exists():
            return []
        counts: dict[str, int] = {}
        for chunk in collection.store.chunks(filters):
            counts[chunk.source] = counts.get(chunk.source, 0) + 1
        return sorted(counts.items())
    finally:
        collection.close()


def delete_document(source: str, settings: Settings, *, embedder: Embedder | None = None) -> int:
    collection = wiring(settings, embedder=embedder).collection()
    try:
        return collection.delete_document(source)
    finally:
        collection.close()
