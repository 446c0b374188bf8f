"""The error tree. Every error says what went wrong and what to do; seams translate library errors into these.

    RagError
    ├── ConfigError    bad or inconsistent settings
    ├── IngestError    a file could not be loaded (the batch goes on; the summary names the file and this reason)
    ├── StoreError     the index is missing, unreadable, locked or built with another model/dimension
    └── LLMError       the LLM server is down, slow, or replied badly
"""


class RagError(Exception):
    """Base of all errors this project raises on purpose."""


class ConfigError(RagError):
    pass


class IngestError(RagError):
    pass


class StoreError(RagError):
    pass


class LLMError(RagError):
    pass
