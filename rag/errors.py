"""The error tree. Every error says what went wrong and what to do; seams translate library errors into these.

    RagError                 exit code 1 at the command line
    ├── UsageError           a bad argument: a path that does not exist, an unknown filter field (exit 2)
    ├── ConfigError          bad or inconsistent settings, a malformed rag.toml or .env (exit 2)
    ├── IngestError          a file could not be loaded (the batch goes on; the summary names the file and this reason)
    ├── StoreError           the index is missing, unreadable, locked or built with another model/dimension
    │   ├── CollectionNotFound   no collection of that name (exit 2: most likely a typo)
    │   └── CollectionEmpty      the collection exists but holds no documents yet
    └── LLMError             the LLM server is down, slow, or replied badly

``exit_code`` is what the ``rag`` command exits with when the error reaches it (``rag.cli`` is the one wrapper).
"""


class RagError(Exception):
    """Base of all errors this project raises on purpose."""

    exit_code = 1


class UsageError(RagError):
    exit_code = 2


class ConfigError(RagError):
    exit_code = 2


class IngestError(RagError):
    pass


class StoreError(RagError):
    pass


class CollectionNotFound(StoreError):
    exit_code = 2

    def __init__(self, name: str, where: str) -> None:
        super().__init__(
            f"there is no collection {name!r} in {where}: add documents with `rag ingest PATH --collection {name}` "
            "first, or check the name (`rag ingest` creates it; asking never does)"
        )
        self.name = name


class CollectionEmpty(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"the collection {name!r} is empty: add documents with `rag ingest PATH --collection {name}`")
        self.name = name


class LLMError(RagError):
    pass
