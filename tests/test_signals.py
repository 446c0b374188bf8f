"""Every command that starts a child process stops it when it is stopped: by Ctrl+C, by SIGTERM, even by kill -9.

``rag chat`` runs Streamlit and ``rag serve-llm`` runs llama.cpp's server. Before, SIGTERM to either left the child
running and serving (adopted by init). Real processes throughout: the real ``rag`` entry point, the real Streamlit,
the real llama.cpp server; the children are found with psutil and must be gone afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return {**env, "RAG_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO), **extra}


def _wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive (zombies count as gone) after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = pids
    while True:
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


@pytest.fixture
def cleanup() -> Iterator[list[int]]:
    """Pids to kill if a test fails half-way (never leave a server running)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start(cmd: list[str], env: dict[str, str], log: Path, cleanup: list[int]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, cwd=log.parent, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    cleanup.append(proc.pid)
    return proc


def _children(proc: subprocess.Popen[bytes]) -> list[int]:
    kids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    return kids


# ------------------------------------------------------------------------------------------- the mechanism, fast
_PARENT = """
import sys
from rag.processes import python_module_command, run_foreground, terminating_on_signals
with terminating_on_signals():
    run_foreground(python_module_command("http.server", ["0", "--bind", "127.0.0.1"]))
"""


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGKILL"])
def test_a_child_ends_with_its_parent_however_the_parent_ends(how: str, tmp_path: Path, cleanup: list[int]) -> None:
    proc = _start([sys.executable, "-c", _PARENT], _env(tmp_path), tmp_path / "parent.log", cleanup)
    _wait_for(lambda: bool(_children(proc)), 30, "the child process")
    kids = _children(proc)
    cleanup.extend(kids)
    time.sleep(0.5)  # the child has set its parent-death signal by now (it does so before importing the module)
    os.kill(proc.pid, getattr(signal, how))
    proc.wait(timeout=30)
    assert not _gone(kids, 15), f"the child outlived its parent ({how})"


# --------------------------------------------------------------------------------------------------- rag chat
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_rag_chat_stops_streamlit_when_it_is_stopped(how: str, tmp_path: Path, cleanup: list[int]) -> None:
    pytest.importorskip("streamlit")
    port = free_port()
    env = _env(tmp_path, RAG_LLM__BASE_URL="http://127.0.0.1:9/v1")  # no LLM server: only Streamlit is a child
    proc = _start([sys.executable, "-m", "rag.cli", "chat", "--no-samples", "--port", str(port)], env,
                  tmp_path / "chat.log", cleanup)  # fmt: skip
    health = f"http://127.0.0.1:{port}/_stcore/health"
    _wait_for(lambda: _answers(health) or proc.poll() is not None, 90, "Streamlit to answer")
    assert proc.poll() is None, (tmp_path / "chat.log").read_text()
    kids = _children(proc)
    cleanup.extend(kids)
    assert kids, "rag chat runs Streamlit as a child process"
    os.kill(proc.pid, getattr(signal, how))  # the parent only, as `kill` or a service manager does
    code = proc.wait(timeout=60)
    assert not _gone(kids, 20), f"Streamlit kept running after `rag chat` got {how}"
    assert not _answers(health)
    if how == "SIGTERM":
        assert code == 143, (tmp_path / "chat.log").read_text()
        assert "error: terminated by SIGTERM" in (tmp_path / "chat.log").read_text()


# ------------------------------------------------------------------------------------------------ rag serve-llm
@pytest.mark.e2e
def test_rag_serve_llm_stops_its_server_on_sigterm(tmp_path: Path, cleanup: list[int], llm_models_dir: Path) -> None:
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    from rag.config import LLMSettings
    from rag.errors import ConfigError
    from rag.local_llm import model_path

    try:
        model_path(LLMSettings(), llm_models_dir)  # joined once per session (shared with the llm_server fixture)
    except ConfigError as e:
        pytest.skip(f"the packaged model is not installed: {e}")
    port = free_port()
    env = _env(tmp_path, RAG_MODELS_DIR=str(llm_models_dir), RAG_LLM__LOCAL_THREADS="1")
    proc = _start([sys.executable, "-m", "rag.cli", "serve-llm", "--port", str(port)], env,
                  tmp_path / "serve.log", cleanup)  # fmt: skip
    models = f"http://127.0.0.1:{port}/v1/models"
    _wait_for(lambda: _answers(models) or proc.poll() is not None, 240, "the LLM server to answer")
    assert proc.poll() is None, (tmp_path / "serve.log").read_text()
    kids = _children(proc)
    cleanup.extend(kids)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert not _gone(kids, 20), "the llama.cpp server kept running after `rag serve-llm` got SIGTERM"
    assert not _answers(models)
