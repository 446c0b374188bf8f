"""Gold datasets: JSONL, one example a line, validated with errors that name the line.

Each line is ``{"question": str, "reference": str, "sources": ["file_name#page" or "file_name", ...]}``; an
unanswerable question has ``"reference": ""`` and ``"sources": []`` (the system should decline to answer).
Optional: ``"facts": ["1928", "Gershwin|George Gershwin"]``, the key facts a correct answer states (``|`` separates
accepted spellings; scored by ``facts_in_answer``), and ``"kind"``, a label to break results down by
(``"long_pdf"``, ``"near_duplicate"``, ``"two_passage"``, ``"unanswerable_in_domain"``...).

Example::

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "gold.jsonl"
    >>> _ = p.write_text('{"question": "Who?", "reference": "Ada.", "sources": ["a.pdf#2"]}\\n')
    >>> load_dataset(p)[0].gold_sources[0].page
    2
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ConfigError


class DatasetError(ConfigError):
    """A gold dataset file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class GoldSource:
    """A gold source: a file name (matched against the basename of a chunk's source) and optionally a 1-based page."""

    file: str
    page: int | None = None

    @classmethod
    def parse(cls, text: str) -> GoldSource:
        """``"manual.pdf#12"`` -> GoldSource("manual.pdf", 12); ``"notes.md"`` -> GoldSource("notes.md")."""
        file, sep, page = text.rpartition("#")
        if not sep:
            return cls(text.strip())
        if not page.strip().isdigit() or int(page) < 1:
            raise ValueError(f"page after '#' must be a positive integer, got {page!r}")
        return cls(file.strip(), int(page))

    def __str__(self) -> str:
        return f"{self.file}#{self.page}" if self.page is not None else self.file


@dataclass(frozen=True)
class GoldExample:
    question: str
    reference: str
    sources: tuple[str, ...]
    line: int  # 1-based line in the file, for messages
    facts: tuple[str, ...] = ()  # key facts of a correct answer; "a|b" accepts either spelling
    kind: str | None = None

    @property
    def id(self) -> str:
        """A stable id (hash of the question) used to pair runs in a baseline comparison."""
        return hashlib.sha256(self.question.strip().encode()).hexdigest()[:12]

    @property
    def answerable(self) -> bool:
        return bool(self.reference.strip())

    @property
    def gold_sources(self) -> tuple[GoldSource, ...]:
        return tuple(GoldSource.parse(s) for s in self.sources)


def _fail(path: Path, line: int, why: str) -> DatasetError:
    return DatasetError(
        f"{path}:{line}: {why}. Each line must be a JSON object like "
        '{"question": "...", "reference": "...", "sources": ["file.pdf#3"]}'
    )


def load_dataset(path: str | Path) -> list[GoldExample]:
    """Read and validate a gold JSONL file; blank lines are skipped. Raises DatasetError naming the bad line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset {path} not found: pass a JSONL file of questions (see evals/data/gold.jsonl)")
    examples: list[GoldExample] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise _fail(path, n, f"invalid JSON ({e.msg} at column {e.colno})") from e
        if not isinstance(obj, dict):
            raise _fail(path, n, f"expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in ("question", "reference", "sources") if k not in obj]
        if missing:
            raise _fail(path, n, f"missing key(s) {', '.join(missing)}")
        question, reference, sources = obj["question"], obj["reference"], obj["sources"]
        if not isinstance(question, str) or not question.strip():
            raise _fail(path, n, "'question' must be a non-empty string")
        if not isinstance(reference, str):
            raise _fail(path, n, "'reference' must be a string (\"\" for an unanswerable question)")
        if not isinstance(sources, list) or not all(isinstance(s, str) and s.strip() for s in sources):
            raise _fail(path, n, '\'sources\' must be a list of non-empty strings like "file.pdf#3" or "notes.md"')
        for s in sources:
            try:
                GoldSource.parse(s)
            except ValueError as e:
                raise _fail(path, n, f"bad source {s!r}: {e}") from e
        if not reference.strip() and sources:
            raise _fail(path, n, "'sources' given but 'reference' is empty; an unanswerable question has neither")
        facts, kind = obj.get("facts", []), obj.get("kind")
        if not isinstance(facts, list) or not all(isinstance(f, str) and f.strip() for f in facts):
            raise _fail(path, n, "'facts' must be a list of non-empty strings like \"1928\" or \"6 g|6g\"")
        if kind is not None and not (isinstance(kind, str) and kind.strip()):
            raise _fail(path, n, "'kind' must be a non-empty string")
        key = question.strip()
        if key in seen:
            raise _fail(path, n, f"duplicate question (first on line {seen[key]})")
        seen[key] = n
        examples.append(
            GoldExample(question.strip(), reference.strip(), tuple(s.strip() for s in sources), n,
                        facts=tuple(f.strip() for f in facts), kind=kind.strip() if kind else None)
        )  # fmt: skip
    if not examples:
        raise DatasetError(f"dataset {path} has no questions")
    return examples


def dataset_hash(path: str | Path) -> str:
    """sha256 of the file's bytes (recorded in every run's provenance)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
