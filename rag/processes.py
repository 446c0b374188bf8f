"""Child processes that end with the command that started them, and termination signals turned into a clean exit.

Two things go wrong when a command that runs a child (``rag chat`` runs Streamlit, ``rag serve-llm`` runs
llama.cpp's server) is stopped by anything but Ctrl+C:

* ``SIGTERM`` (``kill``, ``systemctl stop``, ``docker stop``) or ``SIGHUP`` (a closed terminal) kills Python
  without running ``finally`` blocks, so the child is left running, adopted by init, still serving the port.
  ``terminating_on_signals()`` turns these signals into a ``Terminated`` exception in the main thread (like
  Ctrl+C's ``KeyboardInterrupt``), so every command unwinds normally: children are stopped, the collection's
  files are closed, and the ``rag`` command exits with ``128 + signal`` (143 for ``SIGTERM``).
* ``kill -9`` of the parent runs nothing at all. A child started by ``start_child`` asks Linux to send it
  ``SIGTERM`` when its parent dies (``PR_SET_PDEATHSIG``), set by the child itself before it starts the real
  program (``python -m rag.processes PARENT_PID MODULE ARGS...``), so no ``preexec_fn`` runs in a threaded parent.

The embedded LLM server that ``rag ask``/``rag chat``/``rag demo`` start in the background is different on purpose:
it is detached, outlives them to be reused, and ``rag serve-llm --stop`` stops it.

Example::

    >>> with terminating_on_signals():  # doctest: +SKIP
    ...     code = run_foreground(["python", "-m", "http.server"])  # SIGTERM stops the server, then raises
"""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1


class Terminated(BaseException):  # noqa: N818  (like KeyboardInterrupt: not an Exception, so nothing swallows it)
    """The process received ``SIGTERM`` or ``SIGHUP``; raised in the main thread to unwind cleanly."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def terminating_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise ``Terminated`` (outside the main thread: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def python_module_command(module: str, args: Sequence[str]) -> list[str]:
    """``python -m MODULE ARGS`` that ends when this process ends (see the module docstring)."""
    return [sys.executable, "-m", "rag.processes", str(os.getpid()), module, *args]


def start_child(cmd: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(cmd)``; use ``python_module_command`` for ``cmd`` so that ``kill -9`` of us ends it too."""
    return subprocess.Popen(list(cmd), **popen_kwargs)


def stop_child(process: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; returns once the child is gone."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def run_foreground(cmd: Sequence[str], grace_s: float = 10.0, **popen_kwargs: Any) -> int:
    """Run ``cmd`` to its end and return its exit code; if we are interrupted or terminated, stop it first."""
    process = start_child(cmd, **popen_kwargs)
    try:
        return process.wait()
    except BaseException:
        stop_child(process, grace_s)
        raise


def _die_with_parent(parent: int) -> None:
    """In the child: ask Linux for SIGTERM when the parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise SystemExit(143)


def main(argv: Sequence[str]) -> None:
    """``python -m rag.processes PARENT_PID MODULE ARGS...``: run ``python -m MODULE ARGS`` tied to PARENT_PID."""
    if len(argv) < 2:
        raise SystemExit("usage: python -m rag.processes PARENT_PID MODULE [ARGS...]")
    parent, module, *args = argv
    _die_with_parent(int(parent))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
