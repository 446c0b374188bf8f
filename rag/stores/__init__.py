"""Vector stores, chosen by exact name from one dict of lazy builders.

A missing optional extra breaks only its own backend, with a message that says what to install.

    >>> from rag.config import Settings
    >>> settings = Settings(store={"backend": "memory"})
    >>> store = open_store(settings, Path(tmp), dim=384, embedding_model="m")  # doctest: +SKIP

The folder a store lives in is decided by ``rag.collection.Collection`` (``collection.store``), not by the store.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path

from rag.config import Settings
from rag.errors import ConfigError, StoreError
from rag.types import VectorStore

# name -> "module:function"; each builder takes (settings, directory, dim, embedding_model), returns a VectorStore.
STORES: dict[str, str] = {
    "faiss": "rag.stores.faiss_store:open_faiss_store",
    "qdrant": "rag.stores.qdrant_store:open_qdrant_store",
    "memory": "rag.stores.memory_store:open_memory_store",
}

_EXTRAS = {"faiss": "faiss-cpu", "qdrant": "rag-private-docs[qdrant]  (qdrant-client, qdrant-edge-py)"}


def open_store(settings: Settings, directory: Path, dim: int, embedding_model: str) -> VectorStore:
    """Open (or create) the configured store for ``settings.collection`` in ``directory``.

    Raises ``StoreError`` when an existing index was built with another embedding model or dimension.
    """
    name = settings.store.backend
    if name not in STORES:
        raise ConfigError(f"unknown store backend {name!r}; choose one of {', '.join(STORES)}")
    module_name, func_name = STORES[name].split(":")
    try:
        module = import_module(module_name)
    except ImportError as e:
        raise StoreError(
            f"the {name!r} store needs an optional dependency that is not installed ({e.name}): "
            f"pip install {_EXTRAS.get(name, e.name)}"
        ) from e
    builder: Callable[[Settings, Path, int, str], VectorStore] = getattr(module, func_name)
    return builder(settings, directory, dim, embedding_model)
