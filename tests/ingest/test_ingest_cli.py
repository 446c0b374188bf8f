"""``rag ingest`` as a user runs it: the real console script in a subprocess, the packaged MiniLM, --json output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RAG = [sys.executable, "-c", "from rag.cli import main; main()"]


def _rag(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([*RAG, *args], capture_output=True, text=True, env=env, timeout=300)


def test_ingest_json_twice_with_the_real_model(mixed_folder: Path, kit: object) -> None:
    (mixed_folder / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")
    first = _rag("ingest", str(mixed_folder), "--json", "--collection", "cli-test")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["files_seen"], summary["new"], summary["unchanged"]) == (5, 4, 0)
    assert summary["chunks_added"] >= 6 and summary["chunks_removed"] == 0
    assert [(Path(f["path"]).name, "corrupt PDF" in f["reason"]) for f in summary["failed"]] == [("broken.pdf", True)]
    assert [Path(f["path"]).name for f in summary["skipped"]] == ["slides.key"]

    second = _rag("ingest", str(mixed_folder), "--json", "--collection", "cli-test")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert (again["new"], again["changed"], again["unchanged"], again["chunks_added"]) == (0, 0, 4, 0)
    assert again["chunks_total"] == summary["chunks_added"]


def test_human_summary_lists_failures(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "ok.txt").write_text("Hello from a small text file.")
    done = _rag("ingest", str(folder), env_extra={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "files seen" in done.stdout and "empty.txt" in done.stdout and "empty file" in done.stdout


@pytest.mark.parametrize("json_flag", [True, False])
def test_bad_path_exits_nonzero(tmp_path: Path, json_flag: bool) -> None:
    done = _rag("ingest", str(tmp_path / "missing"), *(["--json"] if json_flag else []))
    assert done.returncode == 2
    assert "path not found" in done.stderr
    if json_flag:
        assert "path not found" in json.loads(done.stdout)["error"]


def test_unwritable_data_dir_exits_nonzero(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("some text")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    done = _rag("ingest", str(tmp_path / "ok.txt"), "--json", env_extra={"RAG_DATA_DIR": str(blocker)})
    assert done.returncode == 1
    assert "error" in json.loads(done.stdout)


def test_watch_and_ray_do_not_combine(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("some text")
    done = _rag("ingest", str(tmp_path), "--watch", "--ray")
    assert done.returncode == 2 and "does not combine with --ray" in done.stderr
