"""The few calls the Streamlit app makes into ``rag`` and ``ingest``: one seam, so tests can swap it.

``ui/app.py`` holds display code only; everything it asks of the rest of the system goes through these functions,
which import the heavy parts lazily (the app's first paint must not wait for torch). Tests monkeypatch them
(``monkeypatch.setattr(services, "make_pipeline", ...)``) to drive the app with fakes at our own seams.

Example::

    >>> from rag.config import Settings
    >>> s = with_ui_choices(Settings(), collection="papers", k=3, mode="reranked", base_url="", model="")
    >>> (s.collection, s.retrieval.k, s.retrieval.mode, s.retrieval.rerank, s.llm.base_url)
    ('papers', 3, 'hybrid', True, None)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.config import EmbeddingSettings, LLMSettings, Settings
from rag.errors import ConfigError
from rag.types import Embedder, LLMClient

if TYPE_CHECKING:  # only for annotations: importing these pulls in the heavy stack
    from ingest.pipeline import IngestProgress, IngestSummary
    from rag.pipeline import RagPipeline

RETRIEVAL_MODES = ("dense", "hybrid", "reranked")
"""What the sidebar offers; "reranked" is hybrid retrieval followed by the cross-encoder."""

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "docs" / "samples"
"""The bundled sample documents (a source checkout); ``rag chat`` indexes them into an empty collection."""

_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # the same rule as Settings.collection


def ui_mode(settings: Settings) -> str:
    """The sidebar's name for the configured retrieval: ``"reranked"``, ``"dense"``, ``"bm25"`` or ``"hybrid"``."""
    if settings.retrieval.rerank:
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
    root = Path(settings.data_dir).expanduser() / "collections"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _COLLECTION.match(p.name))


def sample_documents(folder: Path = SAMPLES_DIR) -> list[Path]:
    """The sample files to index, as ``rag ingest`` would find them: its ``.ragignore`` keeps the README and
    question list out (they would compete as sources). Empty when the folder is not there (an installed wheel)."""
    if not folder.is_dir():
        return []
    from ingest.pipeline import discover
    from rag.config import IngestSettings

    return discover([folder], IngestSettings().include)[0]


def make_embedder(settings: EmbeddingSettings) -> Embedder:
    from rag.embedders import load_embedder

    return load_embedder(settings)


def make_llm(settings: LLMSettings) -> LLMClient:
    """A client for the configured endpoint, starting (or reusing) the embedded server when none is set."""
    from rag.llm import OpenAICompatibleLLM

    base_url = settings.base_url
    if base_url is None:
        from rag.local_llm import ensure_server

        base_url = ensure_server(settings)
    return OpenAICompatibleLLM(settings, base_url)


def make_pipeline(settings: Settings, *, embedder: Embedder, llm: Callable[[], LLMClient]) -> RagPipeline:
    """The answering pipeline. ``llm`` is called only when a question is asked, so browsing starts no server."""
    from rag.pipeline import RagPipeline

    return RagPipeline(settings, embedder=embedder, llm=_LazyLLM(llm))


class _LazyLLM:
    """An ``LLMClient`` that asks ``factory`` for the real one at each use.

    The app's factory is a cache lookup, so this is cheap; and when the app drops a client whose server died, the
    next question gets a fresh one (starting the embedded server again) instead of a stale connection.
    """

    def __init__(self, factory: Callable[[], LLMClient]) -> None:
        self._factory = factory

    def _get(self) -> LLMClient:
        return self._factory()

    @property
    def model(self) -> str:
        return self._get().model

    def complete(self, messages: Sequence[Any], **kwargs: Any) -> Any:
        return self._get().complete(messages, **kwargs)

    def stream(self, messages: Sequence[Any], **kwargs: Any) -> Any:
        return self._get().stream(messages, **kwargs)


def ingest(
    paths: Sequence[Path],
    settings: Settings,
    *,
    progress: Callable[[IngestProgress], None] | None,
    embedder: Embedder | None,
) -> IngestSummary:
    from ingest.pipeline import ingest_paths

    return ingest_paths(list(paths), settings, progress=progress, embedder=embedder)


def list_documents(settings: Settings) -> list[tuple[str, int]]:
    """(source, chunk count) for every indexed document; empty when the collection does not exist yet."""
    if not settings.collection_dir.exists():
        return []  # never create an empty collection just by looking at it
    from ingest.pipeline import list_documents as _list

    return _list(settings)


def delete_document(source: str, settings: Settings) -> int:
    from ingest.pipeline import delete_document as _delete

    return _delete(source, settings)
