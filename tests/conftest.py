"""Shared fixtures. Tests never reach a model hub, never read the developer's configuration, and never write
outside their temporary directories (``test_home_untouched.py`` checks ``~`` after everything else ran).

* Every ``RAG_*`` variable of the calling shell is removed, and the XDG, matplotlib and Hugging Face homes point
  into one session temp dir, so caches (the ONNX export of the embedder, ~5 s) are made once per session there.
* Each test gets its own ``RAG_DATA_DIR`` and working directory (no ``rag.toml`` or ``.env`` of the developer's).
* ``llm_server`` starts the real embedded LLM (llama.cpp's server, packaged Qwen GGUF) once for the whole session;
  every end-to-end, browser, judge and CI-eval test shares it. Its start count is checked at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

for _name in [n for n in os.environ if n.startswith("RAG_")]:
    del os.environ[_name]

SESSION_TMP = Path(tempfile.mkdtemp(prefix="rag-tests-"))
for _var, _sub in (
    ("XDG_CACHE_HOME", "cache"),
    ("XDG_DATA_HOME", "data"),
    ("XDG_CONFIG_HOME", "config"),
    ("MPLCONFIGDIR", "matplotlib"),
    ("HF_HOME", "huggingface"),
    ("TORCH_HOME", "torch"),
):
    os.environ[_var] = str(SESSION_TMP / _sub)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:  # property-based tests: bounded and reproducible in CI; HYPOTHESIS_PROFILE=dev explores ten times more
    from hypothesis import HealthCheck
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile(
        "ci", max_examples=20, deadline=None, derandomize=True, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )  # fmt: skip
    _hypothesis_settings.register_profile(
        "dev", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # the dev extra is not installed: the property tests skip themselves
    pass

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
HOME_CHECK = "tests/test_home_untouched.py"
LLM_SERVER_STARTS: list[str] = []  # base URLs of the embedded LLM servers this session started


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The check that ``~`` was not written to runs after every other test."""
    items.sort(key=lambda item: item.nodeid.startswith(HOME_CHECK))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(SESSION_TMP, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LLM_SERVER_STARTS:
        terminalreporter.write_line(f"embedded LLM server started {len(LLM_SERVER_STARTS)} time(s) in this session")


@pytest.fixture
def fake_embedder():  # type: ignore[no-untyped-def]
    from tests.fakes import FakeEmbedder

    return FakeEmbedder()


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own RAG_DATA_DIR and runs with no rag.toml/.env of the developer's."""
    data = tmp_path / "rag-data"
    monkeypatch.setenv("RAG_DATA_DIR", str(data))
    # the embedding cache is per test (tests count what the model embeds); the ONNX export stays per session
    monkeypatch.setenv("RAG_EMBEDDING__CACHE_DIR", str(tmp_path / "embedding-cache"))
    monkeypatch.chdir(tmp_path)
    return data


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llm_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session joins the packaged GGUF (once) and keeps the server's log."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def llm_server(llm_models_dir: Path) -> Iterator[str]:
    """Base URL of the real llama.cpp server on 127.0.0.1 running the packaged model: one for the whole session."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed (bash .ci/setup)")
    from rag.config import LLMSettings
    from rag.errors import ConfigError
    from rag.local_llm import model_path, start_server

    settings = LLMSettings(local_port=free_port(), local_threads=2, timeout_s=600)
    try:
        model_path(settings, llm_models_dir)
    except ConfigError as e:
        pytest.skip(f"the packaged model is not installed: {e}")
    server = start_server(settings, models_dir=llm_models_dir, log_path=llm_models_dir / "server.log")
    LLM_SERVER_STARTS.append(server.url)
    with open(SESSION_TMP / "llm-server-starts", "a") as f:  # read by test_home_untouched.py at the end
        f.write(server.url + "\n")
    try:
        yield server.url
    finally:
        server.stop()
        assert server.process.poll() is not None, "the test server must not outlive the tests"
