"""rag: retrieval-augmented generation over private documents.

The package is the core library: types, settings, errors, embedders, vector stores, retrieval, prompt, LLM client
and the answer pipeline. ``ingest``, ``evals`` and ``ui`` build on it; it imports none of them (the CLI in
``rag.cli`` is the one composition root).
"""

__version__ = "0.1.0"
