"""The bundled sample documents (``docs/samples`` of a source checkout): what `rag demo` and a first `rag chat` index.

The folder's ``.ragignore`` keeps its README and question list out of the index (they would compete as sources), so
the samples are listed by the same discovery as any folder a user ingests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "docs" / "samples"
GENERIC_QUESTIONS = (
    "What is this collection of documents about?",
    "Summarise the most important point of one of the documents.",
)


def sample_documents(folder: Path = SAMPLES_DIR) -> list[Path]:
    """The sample files, as `rag ingest` would find them; empty when the folder is not there (an installed wheel)."""
    if not folder.is_dir():
        return []
    from ingest.discover import discover
    from rag.config import IngestSettings

    return discover([folder], IngestSettings().include).files


def demo_questions(folder: Path) -> Sequence[str]:
    """Up to three questions from ``questions.txt`` in ``folder`` (one a line, ``#`` comments), else generic ones."""
    qfile = folder / "questions.txt"
    if qfile.is_file():
        lines = [ln.strip() for ln in qfile.read_text(encoding="utf-8").splitlines()]
        questions = [ln for ln in lines if ln and not ln.startswith("#")]
        if questions:
            return questions[:3]
    return GENERIC_QUESTIONS
