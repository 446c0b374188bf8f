"""Where files are parsed: worker processes (every core, no GIL), or one thread beside the embedder.

``Parser.parsed(jobs)`` runs ``ingest.parse.parse_file`` over the jobs and yields results as they complete, with at
most ``ahead`` files in flight, so memory stays flat however many files a run has.

The workers are plain child processes (``python -m ingest.pool``) that read jobs from a pipe and write results to
another, rather than a ``multiprocessing`` pool: they start from a clean interpreter (never a fork of a process
that already runs model threads), they never re-run the caller's ``__main__`` (which ``spawn``/``forkserver`` pools
do, breaking any script without a ``__main__`` guard), they ignore Ctrl-C (the parent decides), and they end with
the parent, even by ``kill -9``: their job pipe closes, and, mid-file, Linux sends them SIGTERM
(``rag.processes.python_module_command``). A worker that dies on a file (a crash in a PDF library, the kernel's
OOM killer) costs that file only: it is reported failed and a new worker starts. Each worker OCRs scanned pages
with its share of the OCR budget (``ParseSpec.for_processes``).

Example::

    >>> with Parser(spec, processes=2) as parser:  # doctest: +SKIP
    ...     for parsed in parser.parsed([(Path("a.pdf"), None, ()), (Path("b.md"), "ab12...", ("hr",))]):
    ...         print(parsed.source, len(parsed.chunks), parsed.error)
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO, Any

from ingest.parse import ParsedFile, ParseSpec, parse_file
from rag.processes import python_module_command

Job = tuple[Path, "str | None", "tuple[str, ...]"]  # (file, the content hash on record, its access groups)
WORKER_DIED = "the parser process died while reading this file (a crash in a parsing library, or out of memory)"


def picklable(obj: Any) -> bool:
    try:
        pickle.dumps(obj)
    except Exception:
        return False
    return True


class _Worker:
    """One parse process: jobs go down its stdin, results come back on its stdout (pickles)."""

    def __init__(self, spec: ParseSpec, results: queue.Queue[tuple[_Worker, int, ParsedFile | None]]) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            python_module_command("ingest.pool", []), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        self.in_flight: dict[int, Path] = {}
        self._results = results
        pickle.dump(spec, self._in)
        self._in.flush()
        self._reader = threading.Thread(target=self._read, name="rag-parse-reader", daemon=True)
        self._reader.start()

    def submit(self, job_id: int, job: Job) -> None:
        self.in_flight[job_id] = job[0]
        pickle.dump((job_id, str(job[0]), job[1], job[2]), self._in)
        self._in.flush()

    def _read(self) -> None:
        while True:
            try:
                job_id, parsed = pickle.load(self._out)
            except (EOFError, OSError, ValueError, pickle.UnpicklingError):  # ValueError: the pipe closed under us
                self._results.put((self, -1, None))  # the process ended: what it held is lost
                return
            self._results.put((self, job_id, parsed))

    def close(self, *, kill: bool = False) -> None:
        with contextlib.suppress(OSError):
            self._in.close()  # the worker exits when its job pipe ends
        if kill:
            with contextlib.suppress(OSError):
                self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self._out.close()


class Parser:
    """Parses files in ``processes`` worker processes, or in one thread when ``processes`` is 0."""

    def __init__(self, spec: ParseSpec, processes: int, ahead: int | None = None) -> None:
        if processes and not picklable(spec):
            processes = 0  # e.g. a token counter that cannot travel: parse in this process
        self.spec, self.processes = spec, processes
        self.worker_spec = spec.for_processes(processes)  # the OCR budget shared among the workers
        self.ahead = ahead or max(4, 4 * processes)
        self._workers: list[_Worker] = []
        self._thread_pool: ThreadPoolExecutor | None = None

    def parsed(self, jobs: Iterable[Job]) -> Iterator[ParsedFile]:
        """``parse_file`` over ``jobs``, in completion order, at most ``ahead`` in flight."""
        if self.processes:
            yield from self._parsed_in_processes(iter(jobs))
        else:
            yield from self._parsed_in_thread(iter(jobs))

    def _parsed_in_thread(self, jobs: Iterator[Job]) -> Iterator[ParsedFile]:
        self._thread_pool = ThreadPoolExecutor(1, thread_name_prefix="rag-parse")
        pending: set[Future[ParsedFile]] = set()
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.ahead:
                job = next(jobs, None)
                if job is None:
                    exhausted = True
                    break
                pending.add(self._thread_pool.submit(parse_file, job[0], self.spec, job[1], job[2]))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()

    def _parsed_in_processes(self, jobs: Iterator[Job]) -> Iterator[ParsedFile]:
        results: queue.Queue[tuple[_Worker, int, ParsedFile | None]] = queue.Queue()
        self._workers = [_Worker(self.worker_spec, results) for _ in range(self.processes)]
        per_worker = max(1, self.ahead // self.processes)
        next_id = 0
        exhausted = False
        while True:
            for w in self._workers:  # top every worker up to its share of the files in flight
                while not exhausted and len(w.in_flight) < per_worker:
                    job = next(jobs, None)
                    if job is None:
                        exhausted = True
                        break
                    w.submit(next_id, job)
                    next_id += 1
            if not any(w.in_flight for w in self._workers):
                return
            worker, job_id, parsed = results.get()
            if parsed is not None:
                worker.in_flight.pop(job_id, None)
                yield parsed
                continue
            # a worker died: the files it held fail (not the run), and a fresh worker takes its place
            lost = list(worker.in_flight.values())
            worker.in_flight.clear()
            worker.close(kill=True)
            self._workers[self._workers.index(worker)] = _Worker(self.worker_spec, results)
            for path in lost:
                yield ParsedFile(path, error=WORKER_DIED)

    def close(self, *, abort: bool = False) -> None:
        """Let the workers go (with ``abort``, stop them now, mid-file)."""
        workers, self._workers = self._workers, []
        for w in workers:
            w.close(kill=abort)
        if self._thread_pool is not None:
            self._thread_pool.shutdown(wait=not abort, cancel_futures=True)
            self._thread_pool = None

    def __enter__(self) -> Parser:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(abort=exc_type is not None)


def _worker_main() -> None:
    """A parse worker: read the spec, then (id, path, known hash) jobs until the pipe ends; answer each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the result pipe
    jobs = sys.stdin.buffer
    spec: ParseSpec = pickle.load(jobs)
    while True:
        try:
            job_id, path, known_hash, groups = pickle.load(jobs)
        except EOFError:
            return
        parsed = parse_file(Path(path), spec, known_hash, groups)
        try:
            pickle.dump((job_id, parsed), results)
            results.flush()
        except BrokenPipeError:
            return  # the parent is gone


if __name__ == "__main__":
    _worker_main()
