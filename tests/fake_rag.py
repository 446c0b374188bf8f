"""The real ``rag`` command with the fake embedder at our seam: ``python -m tests.fake_rag ingest DOCS ...``.

Crash and race tests start many ``rag`` processes; the packaged MiniLM would cost each of them seconds of model
loading and embedding on 2 cores. Everything else is the product's own code path (CLI, wiring, ingestion, stores,
manifest, locks). ``tests/reliability.py`` also runs the real entry point with the real model.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from rag.cli import main
from rag.wiring import overriding
from tests.fakes import FakeEmbedder

DELAY_ENV = "FAKE_RAG_EMBED_DELAY_S"  # seconds each embedding call takes: a run long enough to be killed mid-way
BUFFER_ENV = "FAKE_RAG_EMBED_BUFFER"  # chunks per embedding batch and group commit (many small commits to kill in)


class SlowFakeEmbedder(FakeEmbedder):
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.delay)
        return super().embed_documents(texts)


if __name__ == "__main__":
    sys.argv[0] = "rag"
    if os.environ.get(BUFFER_ENV):
        from ingest import pipeline

        pipeline.EMBED_BUFFER = int(os.environ[BUFFER_ENV])
    delay = float(os.environ.get(DELAY_ENV, "0"))
    with overriding(embedder=SlowFakeEmbedder(delay) if delay else FakeEmbedder()):
        main()
