"""Background ingestion: a request saves the files and returns a job at once; a small pool ingests them.

A 500-file upload must not hold a request open: ``POST .../documents`` answers 202 with the job, and
``GET /v1/jobs/{id}`` reports its progress and, at the end, the same summary as ``rag ingest --json``. Jobs live in
memory (a restart forgets finished ones; files already saved are indexed by the next job or ``rag ingest``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

_log = logging.getLogger(__name__)
MAX_KEPT = 1000  # finished jobs remembered

JobState = Literal["queued", "running", "succeeded", "failed"]


@dataclass
class Job:
    id: str
    collection: str
    owner: str
    state: JobState = "queued"
    files_total: int = 0
    files_done: int = 0
    created: float = field(default_factory=time.time)
    finished: float | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "ingest.job", "collection": self.collection, "state": self.state,
            "files_total": self.files_total, "files_done": self.files_done, "created": int(self.created),
            "finished": int(self.finished) if self.finished else None, "summary": self.summary, "error": self.error,
        }  # fmt: skip


class JobRunner:
    def __init__(self, workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rag-ingest-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, collection: str, owner: str, work: Callable[[Job], dict[str, Any]],
               on_done: Callable[[Job], None] | None = None) -> Job:
        job = Job(id=f"job-{uuid.uuid4().hex[:16]}", collection=collection, owner=owner)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.finished]
            for old in sorted(finished, key=lambda j: j.finished or 0)[: max(0, len(finished) - MAX_KEPT)]:
                del self._jobs[old.id]

        def run() -> None:
            job.state = "running"
            try:
                job.summary = work(job)
                job.state = "succeeded"
            except Exception as e:  # the job reports it; the server goes on
                _log.exception("ingestion job %s failed", job.id)
                job.error = str(e) or type(e).__name__
                job.state = "failed"
            finally:
                job.finished = time.time()
                if on_done is not None:
                    on_done(job)

        self._pool.submit(run)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(j.finished for j in self._jobs.values()):
                    return True
            time.sleep(0.05)
        return False

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
