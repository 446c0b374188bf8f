"""Reusable crash-and-race machinery: run real ``rag`` processes on one collection, kill them at random points,
race them, and prove afterwards that manifest, vector store and keyword index agree (``rag doctor``).

Any ingestion path can be put through it (the default one; parse processes with ``--workers N``; Ray with ``--ray``:
``tests/ingest/test_parallel_ingest.py`` and ``test_ray_ingest.py`` do), for any store::

    runner = RagRunner(tmp_path / "data", store={"RAG_STORE__BACKEND": "qdrant"})
    assert_survives_random_kills(runner, ["ingest", str(docs), "--workers", "2"])   # kill -9 x3, resume, compare

    # or piece by piece:
    clean, seconds = runner.clean_ids(["ingest", str(docs)])   # what an uninterrupted run leaves
    for delay in kill_at_random_points(runner, ["ingest", str(docs)], rng, times=3, max_delay=seconds):
        ...                                                    # inspect the collection between kills
    runner.check("ingest", str(docs))                          # resume
    assert runner.chunk_ids() == clean
    runner.assert_consistent()                                 # `rag doctor --json`: exit 0, clean
    run_concurrently(runner, [["ingest", str(a)], ["ingest", str(b)]], stagger=0.5)   # racing writers

By default the processes are ``python -m tests.fake_rag`` (the real CLI with the fake embedder, fast); with
``real_model=True`` they are the installed ``rag`` entry point with the packaged model.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Outcome:
    """How one process ended."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def one_line_error(self) -> bool:
        """Failed the way the product promises: one ``error:`` line, no traceback."""
        lines = self.stderr.strip().splitlines()
        return self.returncode != 0 and len(lines) >= 1 and lines[-1].startswith("error: ") and TRACEBACK not in (
            self.stderr
        )


@dataclass
class RagRunner:
    """``rag`` processes on one data directory and collection, with the given store settings."""

    data_dir: Path
    collection: str = "crash"
    store: dict[str, str] = field(default_factory=dict)  # e.g. {"RAG_STORE__BACKEND": "qdrant"}
    real_model: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        return {
            **base,
            "PYTHONPATH": os.pathsep.join([str(REPO), base.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "RAG_DATA_DIR": str(self.data_dir),
            "RAG_COLLECTION": self.collection,
            "RAG_STORE__LOCK_TIMEOUT_S": "120",  # writers wait for each other in these tests
            "HF_HUB_OFFLINE": "1",
            **self.store,
            **self.extra_env,
        }

    def command(self, *args: str) -> list[str]:
        if self.real_model:
            return [sys.executable, "-m", "rag.cli", *args]
        return [sys.executable, "-m", "tests.fake_rag", *args]

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*args), env=self.env(), cwd=self.data_dir.parent, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    def run(self, *args: str, timeout: float = 600) -> Outcome:
        proc = self.start(*args)
        out, err = proc.communicate(timeout=timeout)
        return Outcome(tuple(args), proc.returncode, out, err)

    def check(self, *args: str, timeout: float = 600) -> Outcome:
        """``run`` that must succeed."""
        outcome = self.run(*args, timeout=timeout)
        assert outcome.returncode == 0, f"rag {' '.join(args)} failed:\n{outcome.stderr}"
        return outcome

    # -- what the collection holds ---------------------------------------------------------------------------------
    def doctor(self, *, repair: bool = False) -> tuple[int, dict[str, Any]]:
        outcome = self.run("doctor", "--json", *(["--repair"] if repair else []))
        assert TRACEBACK not in outcome.stderr, outcome.stderr
        return outcome.returncode, json.loads(outcome.stdout)

    def assert_consistent(self) -> dict[str, Any]:
        """``rag doctor`` says manifest, store and keyword index agree (exit 0, no problem listed)."""
        code, report = self.doctor()
        assert code == 0 and report["clean"], f"rag doctor found: {report['problems']}"
        return report

    def chunk_ids(self) -> list[str]:
        """Every chunk id in the store, sorted (read in a separate process: stores lock their folder)."""
        return sorted(json.loads(self._inspect("ids")))

    def search_sources(self, query: str, mode: str) -> list[str]:
        """The files of the hits of ``rag search QUERY --mode MODE``, best first."""
        out = self.check("search", query, "--mode", mode, "--json", "--k", "50").stdout
        return [h["source"] for h in json.loads(out)["hits"]]

    def _inspect(self, what: str) -> str:
        code = (
            "import json, sys\n"
            "from rag.config import Settings\n"
            "from rag.wiring import Wiring\n"
            "from tests.fakes import FakeEmbedder\n"
            f"embedder = None if {self.real_model!r} else FakeEmbedder()\n"
            "with Wiring(Settings(), embedder=embedder).collection() as c:\n"
            "    print(json.dumps([ch.id for ch in c.store.chunks()]))\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], env=self.env(), capture_output=True, text=True,
                              timeout=300, cwd=self.data_dir.parent)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def clean_ids(self, args: Sequence[str]) -> tuple[list[str], float]:
        """Chunk ids an uninterrupted run of ``args`` leaves in a fresh collection, and how long it took."""
        twin = RagRunner(self.data_dir.parent / f"{self.data_dir.name}-clean", self.collection, self.store,
                         self.real_model, self.extra_env)  # fmt: skip
        twin.data_dir.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        twin.check(*args)
        return twin.chunk_ids(), time.monotonic() - t


def kill_at_random_points(
    runner: RagRunner, args: Sequence[str], rng: random.Random, *, times: int, max_delay: float,
    landed: list[bool] | None = None,
) -> Iterator[float]:
    """Start ``rag ARGS`` ``times`` times, each killed with SIGKILL after a random delay in [0, max_delay];
    yields each delay after the kill (the caller may inspect the collection between kills). ``landed`` gets, per
    run, whether the kill hit it before it had finished by itself."""
    for _ in range(times):
        delay = rng.uniform(0.0, max_delay)
        proc = runner.start(*args)
        try:
            proc.wait(timeout=delay)
            hit = False
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            hit = True
        proc.communicate(timeout=60)
        if landed is not None:
            landed.append(hit)
        yield delay


def run_concurrently(runner: RagRunner, commands: Sequence[Sequence[str]], *, stagger: float = 0.0,
                     timeout: float = 600) -> list[Outcome]:  # fmt: skip
    """Start every command (``stagger`` seconds apart), wait for all; their outcomes in order."""
    procs = []
    for i, args in enumerate(commands):
        if i and stagger:
            time.sleep(stagger)
        procs.append((tuple(args), runner.start(*args)))
    outcomes = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=timeout)
        outcomes.append(Outcome(args, proc.returncode, out, err))
    return outcomes


def write_corpus(folder: Path, files: int, *, seed: int = 0, words_per_file: int = 400, prefix: str = "doc") -> Path:
    """``files`` Markdown files of distinct, searchable text (each names its own marker word)."""
    rng = random.Random(seed)
    vocab = ("river glacier granite harbour lantern meadow orchard quarry saddle thistle canyon ember falcon garnet "
             "hollow juniper kestrel lagoon marble nettle").split()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        words = [rng.choice(vocab) for _ in range(words_per_file)]
        body = "\n\n".join(" ".join(words[j : j + 40]) + "." for j in range(0, len(words), 40))
        (folder / f"{prefix}{i:04d}.md").write_text(f"# {prefix} {i}\n\nmarker{prefix}{i:04d} {body}\n")
    return folder


def assert_survives_random_kills(runner: RagRunner, args: Sequence[str], *, seed: int = 0, times: int = 3,
                                 resume_args: Sequence[str] | None = None,
                                 min_landed: int = 0) -> list[float]:  # fmt: skip
    """The whole crash check for one way of ingesting: an uninterrupted run of ``rag ARGS`` in a twin collection,
    then ``times`` runs here killed with SIGKILL at random points over that run's duration, then one resuming run
    (``resume_args``, default ``args``): the chunk ids must equal the clean run's and ``rag doctor`` must be clean.
    At least ``min_landed`` kills must have hit a run before it finished (else the check proved nothing).
    Returns the kill delays (for the test's message)."""
    clean, seconds = runner.clean_ids(args)
    rng = random.Random(seed)
    landed: list[bool] = []
    delays = list(kill_at_random_points(runner, args, rng, times=times, max_delay=seconds, landed=landed))
    when = [round(d, 2) for d in delays]
    assert sum(landed) >= min_landed, f"kills at {when} s: only {sum(landed)} hit a running process (seed {seed})"
    runner.check(*(resume_args or args))
    got = runner.chunk_ids()
    assert got == clean, f"after kills at {when} s: {len(got)} chunk ids, a clean run {len(clean)}"
    assert len(got) == len(set(got))
    runner.assert_consistent()
    return delays
