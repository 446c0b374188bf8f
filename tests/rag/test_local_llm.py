"""The embedded LLM's plumbing: finding the packaged model, joining it once, and stopping what was started."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import rag.local_llm as local_llm
from rag.config import LLMSettings
from rag.errors import ConfigError
from rag.local_llm import PackagedModel, ensure_server, model_path, stop_pid


def test_the_six_packaged_parts_are_found_through_package_metadata() -> None:
    spec = local_llm.PACKAGED_MODELS["qwen2.5-0.5b-instruct"]
    try:
        parts = [local_llm._part_path(d, f, spec.install) for d, f in spec.parts]
    except ConfigError as e:
        pytest.skip(f"packaged model not installed: {e}")
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 7)]
    with open(parts[0], "rb") as f:
        assert f.read(4) == b"GGUF"  # the first part starts the GGUF file


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    parts = [tmp_path / f"part{i}.bin" for i in range(1, 4)]
    for p, data in zip(parts, (b"GGUF-head-", b"middle-", b"tail"), strict=True):
        p.write_bytes(data)
    spec = PackagedModel("tiny.gguf", tuple((f"dist{i}", p.name) for i, p in enumerate(parts)), "pip install x")
    monkeypatch.setitem(local_llm.PACKAGED_MODELS, "tiny", spec)
    monkeypatch.setattr(local_llm, "_part_path", lambda d, f, install: tmp_path / f)
    return parts


def test_parts_are_joined_in_order_once_and_atomically(tmp_path: Path, fake_parts: list[Path]) -> None:
    models = tmp_path / "models"
    path = model_path(LLMSettings(local_model="tiny"), models)
    assert path.read_bytes() == b"GGUF-head-middle-tail"
    assert [p.name for p in models.iterdir()] == ["tiny.gguf"]  # no temporary file left behind
    mtime = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert model_path(LLMSettings(local_model="tiny"), models) == path and path.stat().st_mtime_ns == mtime


def test_parts_that_do_not_make_a_gguf_file_are_rejected(tmp_path: Path, fake_parts: list[Path]) -> None:
    fake_parts[0].write_bytes(b"PK\x03\x04zip")
    with pytest.raises(ConfigError, match="did not give a GGUF file"):
        model_path(LLMSettings(local_model="tiny"), tmp_path / "models")
    assert not (tmp_path / "models" / "tiny.gguf").exists()


def test_local_model_may_be_any_gguf_path_and_nonsense_is_a_config_error(tmp_path: Path) -> None:
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"GGUF")
    assert model_path(LLMSettings(local_model=str(own)), tmp_path / "models") == own
    with pytest.raises(ConfigError, match="neither a packaged model"):
        model_path(LLMSettings(local_model="gpt-17"), tmp_path / "models")


def test_a_configured_base_url_is_used_as_is_and_nothing_is_started(tmp_path: Path) -> None:
    assert ensure_server(LLMSettings(base_url="http://vllm:8000/v1"), models_dir=tmp_path) == "http://vllm:8000/v1"
    assert list(tmp_path.iterdir()) == []


def test_the_pid_file_lives_where_serve_llm_stop_looks_for_it(tmp_path: Path) -> None:
    """`rag ask` (ensure_server) and `rag serve-llm --stop` agree on the pid file, also with RAG_DATA_DIR set."""
    from rag.config import Settings

    settings = Settings(data_dir=tmp_path / "d")
    expected = tmp_path / "d" / "models" / "llm-server.pid"
    assert settings.llm_pid_file == settings.models_path / local_llm.PID_FILE == expected
    elsewhere = Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "m")
    assert elsewhere.llm_pid_file == tmp_path / "m" / "llm-server.pid"


def test_stop_ends_a_process_that_ignores_the_first_interrupt() -> None:
    # Like a busy llama.cpp server: the first SIGINT is swallowed, the second one stops it.
    code = (
        "import signal, time\n"
        "hits = []\n"
        "def h(*a):\n"
        "    hits.append(1)\n"
        "    if len(hits) > 1: raise SystemExit(0)\n"
        "signal.signal(signal.SIGINT, h)\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(0.05)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    assert stop_pid(proc.pid, timeout=5, wait=proc.wait)
    assert proc.poll() == 0  # it exited by itself on the second SIGINT, not by SIGKILL
