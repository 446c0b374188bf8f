"""One error policy for every command: bad configuration is one line on stderr and exit code 2, never a traceback.

Each command is fed each kind of bad configuration a user can have: an invalid setting in the environment, a
``rag.toml`` with a syntax error, a ``.env`` that is not UTF-8, and a ``RAG_CONFIG_FILE`` that does not exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.cli import COMMANDS, app

ROOT = Path(__file__).resolve().parent.parent
ARGS = {  # the least each command needs to get as far as reading its settings
    "ingest": ["ingest", "."],
    "search": ["search", "anything"],
    "ask": ["ask", "anything?"],
    "chat": ["chat", "--no-samples"],
    "demo": ["demo"],
    "eval": ["eval", "gold.jsonl"],
    "judge-meta": ["judge-meta"],
    "serve-llm": ["serve-llm", "--stop"],
    "serve": ["serve", "--port", "1"],
    "doctor": ["doctor"],
}


def test_every_command_is_covered_here() -> None:
    assert set(ARGS) == {name for name, _ in COMMANDS}


def _bad_env(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RAG_STORE__BACKEND", "nope")
    return "store.backend (RAG_STORE__BACKEND)"


def _bad_toml(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp / "rag.toml").write_text('collection = "papers"\n[store\nbackend = "faiss"\n')
    return "rag.toml: not valid TOML"


def _bad_dotenv(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp / ".env").write_bytes(b"RAG_COLLECTION=caf\xe9\n")
    return ".env: not UTF-8 text"


def _missing_config_file(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RAG_CONFIG_FILE", str(tmp / "nonexistent.toml"))
    return "nonexistent.toml: no such file"


def _toml_not_utf8(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp / "rag.toml").write_bytes(b'collection = "caf\xe9"\n')  # tomllib raises UnicodeDecodeError, not TOML's
    return "rag.toml: not UTF-8 text"


BAD = {"env": _bad_env, "toml": _bad_toml, "dotenv": _bad_dotenv, "config-file": _missing_config_file,
       "toml-not-utf8": _toml_not_utf8}  # fmt: skip


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("command", list(ARGS))
def test_bad_configuration_is_one_line_and_exit_2(command: str, kind: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    expected = BAD[kind](tmp_path, monkeypatch)
    result = CliRunner().invoke(app, ARGS[command])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_json_commands_print_the_error_as_json_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_STORE__BACKEND", "nope")
    for args in (["ingest", ".", "--json"], ["search", "x", "--json"], ["ask", "x", "--json"], ["doctor", "--json"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2
        assert "RAG_STORE__BACKEND" in json.loads(result.stdout)["error"]


def test_the_installed_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    """The same through a real process: what a user's shell sees."""
    (tmp_path / "rag.toml").write_text("[store\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_DATA_DIR": str(tmp_path / "d")}
    result = subprocess.run([sys.executable, "-m", "rag.cli", "search", "x"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr


def test_runtime_errors_exit_1_and_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["ingest", str(tmp_path / "no-such-folder")])
    assert missing.exit_code == 2 and "path not found" in missing.stderr
    bad_group = CliRunner().invoke(app, ["ingest", str(tmp_path), "--groups", "HR,bad name!"])
    assert bad_group.exit_code == 2 and "--groups: invalid group name 'bad name!'" in bad_group.stderr
    assert not (tmp_path / "rag-data" / "collections").exists()  # refused before anything was written
    unknown = CliRunner().invoke(app, ["search", "x", "--collection", "typo"])
    assert unknown.exit_code == 2 and "no collection 'typo'" in unknown.stderr
    (tmp_path / "rag-data").mkdir(exist_ok=True)
    (tmp_path / "rag-data" / "collections").write_text("a file where a folder belongs")
    broken = CliRunner().invoke(app, ["ingest", str(ROOT / "docs" / "samples" / "Aardwolf.txt")])
    assert broken.exit_code == 1 and broken.stderr.startswith("error: "), broken.output
