"""An ingestion job of the Streamlit app: runs in a background thread, reports progress, can be cancelled.

The page stays responsive while a folder is indexed: the Documents tab polls the job (``progress``), shows a Cancel
button that sets ``cancel`` (the pipeline stops at its next batch, keeps what it committed and leaves the
collection consistent), and shows the summary when the job is over.

Example::

    >>> job = IngestJob.start(lambda **kw: kw["cancel"].wait(1) or "summary")
    >>> job.cancel_now(); job.wait(5); job.state
    'cancelled'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    files_done: int = 0
    files_total: int = 0
    current: str = ""
    chunks_added: int = 0


class IngestJob:
    """One run of ``work(progress=..., cancel=...)`` in a daemon thread; ``state`` is running, done, cancelled or
    failed; ``summary`` / ``error`` hold its outcome."""

    def __init__(self, work: Callable[..., Any]) -> None:
        self._work = work
        self.cancel = threading.Event()
        self.progress = Progress()
        self.summary: Any = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rag-ui-ingest", daemon=True)

    @classmethod
    def start(cls, work: Callable[..., Any]) -> IngestJob:
        job = cls(work)
        job._thread.start()
        return job

    def _run(self) -> None:
        try:
            self.summary = self._work(progress=self._on_progress, cancel=self.cancel)
        except BaseException as e:  # shown on the page, never a traceback
            self.error = e
        finally:
            self._done.set()

    def _on_progress(self, p: Any) -> None:
        self.progress = Progress(p.files_done, p.files_total, str(p.current), p.chunks_added)

    def cancel_now(self) -> None:
        self.cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def state(self) -> str:
        if self.running:
            return "cancelling" if self.cancel.is_set() else "running"
        if self.error is not None:
            return "failed"
        if self.cancel.is_set() or getattr(self.summary, "cancelled", False):
            return "cancelled"
        return "done"
