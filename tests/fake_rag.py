"""The real ``rag`` command with the fake embedder at our seam: ``python -m tests.fake_rag ingest DOCS ...``.

Crash and race tests start many ``rag`` processes; the packaged MiniLM would cost each of them seconds of model
loading and embedding on 2 cores. Everything else is the product's own code path (CLI, wiring, ingestion, stores,
manifest, locks). ``tests/reliability.py`` also runs the real entry point with the real model.
"""

from __future__ import annotations

import sys

from rag.cli import main
from rag.wiring import overriding
from tests.fakes import FakeEmbedder

if __name__ == "__main__":
    sys.argv[0] = "rag"
    with overriding(embedder=FakeEmbedder()):
        main()
