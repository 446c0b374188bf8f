"""Checks on the whole session, run after every other test: nothing was written to the user's home (no index, model
copy, cache or config outside temp dirs), and the embedded LLM server was started at most once.

The listing is taken when the test session starts (this module is imported at collection, before any test runs)
and compared after every other test (``conftest.py`` orders this one last).
"""

from __future__ import annotations

import os
from pathlib import Path

HOME = Path(os.path.expanduser("~"))
# What a user's home holds that our code might write to; a wheel cache made by setup is not the tests' doing.
WATCHED = (".", ".cache", ".cache/rag", ".cache/rag/onnx", ".local", ".local/share", ".local/share/rag",
           ".local/share/rag/models", ".local/share/rag/collections", ".config")  # fmt: skip
IGNORED = {".cache/rag-wheels", ".cache/pip", ".bash_history", ".python_history", ".lesshst", ".viminfo"}


def snapshot() -> dict[str, int]:
    """(relative path -> mtime in ns) of every entry directly inside the watched folders."""
    out: dict[str, int] = {}
    for folder in WATCHED:
        base = HOME / folder
        if not base.is_dir():
            continue
        for entry in os.scandir(base):
            rel = os.path.normpath(os.path.join(folder, entry.name))
            if rel in IGNORED:
                continue
            try:
                out[rel] = entry.stat(follow_symlinks=False).st_mtime_ns
            except OSError:
                continue
    return out


BEFORE = snapshot()


def test_the_suite_wrote_nothing_to_the_home_directory() -> None:
    after = snapshot()
    created = sorted(set(after) - set(BEFORE))
    changed = sorted(p for p in set(after) & set(BEFORE) if after[p] != BEFORE[p])
    assert not created and not changed, f"tests wrote to {HOME}: created {created}, changed {changed}"


def test_the_embedded_llm_server_was_started_at_most_once() -> None:
    """Every end-to-end, browser, judge and CI-eval test shares the session's one server (tests/conftest.py)."""
    record = Path(os.environ["XDG_CACHE_HOME"]).parent / "llm-server-starts"  # the session temp dir
    starts = record.read_text().splitlines() if record.exists() else []
    assert len(starts) <= 1, f"the LLM server was started {len(starts)} times: {starts}"
