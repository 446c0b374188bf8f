"""Parallel ingestion: worker processes, group commits, cancel, the embedding cache, and ``kill -9`` at random points.

Real files, real stores (FAISS and Qdrant's embedded engine), real worker processes and real child processes that
are killed; the embedder is the fake one (a seam of ours), slowed down in the child so kills land mid-run.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ingest import pipeline
from ingest.pipeline import IngestProgress, ingest_paths
from rag.config import Settings
from rag.wiring import Wiring
from tests.reliability import RagRunner, assert_survives_random_kills, write_corpus

WORDS = ("river delta glacier basalt magma orbit comet nebula protein enzyme ribosome membrane theorem lemma "
         "proof matrix vector tensor harbour lighthouse").split()


def make_corpus(folder: Path, n: int, seed: int = 0, paragraphs: int = 3) -> Path:
    """``n`` small text and Markdown files of made-up sentences (distinct texts, a few chunks each)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        paras = []
        for p in range(paragraphs):
            words = [rng.choice(WORDS) for _ in range(rng.randint(30, 90))]
            paras.append(f"Note {i}.{p}: " + " ".join(words) + ".")
        suffix = ".md" if i % 3 == 0 else ".txt"
        (folder / f"sub{i % 4}").mkdir(exist_ok=True)
        (folder / f"sub{i % 4}" / f"note{i:04d}{suffix}").write_text("\n\n".join(paras), encoding="utf-8")
    return folder


def small_chunks(**extra: Any) -> Settings:
    return Settings(chunk={"size_tokens": 32, "overlap_tokens": 4}, **extra)


class CountingEmbedder:
    """The fake embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim, self.texts = inner, inner.name, inner.dim, 0

    def embed_documents(self, texts: list[str]) -> Any:
        self.texts += len(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> Any:
        return self.inner.embed_query(text)


def chunk_ids(settings: Settings, embedder: Any) -> list[str]:
    with Wiring(settings, embedder=embedder).collection() as c:
        return sorted(ch.id for ch in c.store.chunks())


def consistency(settings: Settings, embedder: Any) -> Any:
    with Wiring(settings, embedder=embedder).collection() as c:
        return c.check()


def test_worker_processes_give_the_same_chunks_as_one_thread(tmp_path: Path, fake_embedder: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_corpus(tmp_path / "corpus", 40)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    monkeypatch.setattr(pipeline, "EMBED_BUFFER", 16)  # several group commits
    threaded = small_chunks(data_dir=tmp_path / "a", ingest={"workers": 0})  # one parse thread
    one = ingest_paths([folder], threaded, embedder=fake_embedder)
    pooled = small_chunks(data_dir=tmp_path / "b", ingest={"workers": 2})
    many = ingest_paths([folder], pooled, embedder=fake_embedder)
    assert (many.new, many.chunks_added, len(many.failed)) == (one.new, one.chunks_added, len(one.failed)) == \
        (40, one.chunks_added, 1)
    assert "corrupt PDF" in many.failed[0].reason
    assert one.chunks_added > 80  # several chunks per file, several commits
    assert chunk_ids(threaded, fake_embedder) == chunk_ids(pooled, fake_embedder)
    assert consistency(pooled, fake_embedder).clean
    assert set(many.stages) >= {"scan", "read", "chunk", "embed", "write"} and many.stages["embed"] > 0


def test_a_parallel_ingest_holds_the_writer_lock_while_its_writer_thread_commits(
    tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer (a second ``Collection`` on the same folder takes its own ``flock``, as another process would)
    cannot change the collection while the run's parse processes and writer thread are at work; once it is over,
    it can."""
    from rag.collection import Collection

    folder = make_corpus(tmp_path / "corpus", 30)
    monkeypatch.setattr(pipeline, "EMBED_BUFFER", 8)  # several commits
    settings = small_chunks(ingest={"workers": 2}, store={"lock_timeout_s": 0.2})
    other = Collection(settings, embedder=lambda: fake_embedder)
    free: list[bool] = []

    def probe(p: IngestProgress) -> None:
        if p.chunks_added > 0 and threading.current_thread() is threading.main_thread():  # commits have landed
            with other.writing(wait=False) as got:
                free.append(got)

    summary = ingest_paths([folder], settings, embedder=fake_embedder, progress=probe)
    assert summary.new == 30 and len(free) >= 2 and not any(free)
    with other.writing(wait=False) as got:
        assert got


def test_cancel_stops_early_and_leaves_a_consistent_index(tmp_path: Path, fake_embedder: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_corpus(tmp_path / "corpus", 30)
    monkeypatch.setattr(pipeline, "EMBED_BUFFER", 8)
    settings = small_chunks()
    ingest_paths([folder / "sub0"], settings, embedder=fake_embedder)  # some files are already in
    for f in sorted((folder / "sub0").iterdir())[:3]:  # ... and three of them change
        f.write_text(f.read_text() + "\n\nA new closing paragraph about comets and harbours.")
    reference = ingest_paths([folder], small_chunks(data_dir=tmp_path / "ref"), embedder=fake_embedder)
    cancel = threading.Event()

    def stop_after_first_commit(p: IngestProgress) -> None:
        if p.chunks_added > 0:
            cancel.set()

    summary = ingest_paths([folder], settings, embedder=fake_embedder, cancel=cancel, progress=stop_after_first_commit)
    assert summary.cancelled and 0 < summary.new < 22  # 8 of 30 files were in already
    report = consistency(settings, fake_embedder)
    assert report.clean, report.problems()
    assert report.files == 8 + summary.new  # committed files are in, the others untouched
    resumed = ingest_paths([folder], settings, embedder=fake_embedder)
    assert not resumed.cancelled and resumed.new + summary.new == 22
    assert resumed.chunks_total == reference.chunks_added
    assert consistency(settings, fake_embedder).clean


def test_ctrl_c_in_the_middle_leaves_a_consistent_index(tmp_path: Path, fake_embedder: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_corpus(tmp_path / "corpus", 24)
    monkeypatch.setattr(pipeline, "EMBED_BUFFER", 8)
    settings = small_chunks(ingest={"workers": 2})
    pressed = []

    def interrupt(p: IngestProgress) -> None:  # Ctrl-C once, in the main thread, after the first commit
        if p.chunks_added > 0 and threading.current_thread() is threading.main_thread() and not pressed:
            pressed.append(p)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_paths([folder], settings, embedder=fake_embedder, progress=interrupt)
    report = consistency(settings, fake_embedder)
    assert report.clean and 0 < report.files < 24, report.problems()
    again = ingest_paths([folder], settings, embedder=fake_embedder)
    assert again.new == 24 - report.files and consistency(settings, fake_embedder).clean


def test_a_changed_file_re_embeds_only_its_changed_chunks(tmp_path: Path, fake_embedder: Any) -> None:
    folder = make_corpus(tmp_path / "corpus", 6, paragraphs=6)
    counting = CountingEmbedder(fake_embedder)
    settings = small_chunks()
    first = ingest_paths([folder], settings, embedder=counting)
    assert counting.texts == first.chunks_added == first.embedded
    target = sorted(folder.rglob("*.txt"))[0]
    text = target.read_text()
    target.write_text(text + "\n\nOne more paragraph about nebulae and the orbit of a comet.")
    counting.texts = 0
    changed = ingest_paths([folder], settings, embedder=counting)
    assert changed.changed == 1 and changed.chunks_added > 3
    assert 1 <= counting.texts <= 2 and counting.texts == changed.embedded  # the new paragraph (+ its overlap)
    # the collection is the same as if the file had been ingested fresh
    fresh = small_chunks(data_dir=tmp_path / "fresh", embedding={"cache": False})
    ingest_paths([folder], fresh, embedder=fake_embedder)
    assert chunk_ids(settings, fake_embedder) == chunk_ids(fresh, fake_embedder)


def test_new_chunk_settings_reuse_the_vectors_of_unchanged_texts(tmp_path: Path, fake_embedder: Any) -> None:
    folder = make_corpus(tmp_path / "corpus", 8, paragraphs=1)
    (folder / "long.txt").write_text(" ".join(["A long file about glaciers and magma."] * 80))
    counting = CountingEmbedder(fake_embedder)
    ingest_paths([folder], Settings(chunk={"size_tokens": 256, "overlap_tokens": 32}), embedder=counting)
    counting.texts = 0
    again = ingest_paths([folder], Settings(chunk={"size_tokens": 200, "overlap_tokens": 32}), embedder=counting)
    assert again.changed == 9  # new chunk settings: every file is chunked again ...
    assert again.embedded == counting.texts < again.chunks_added  # ... but short files' texts come from the cache
    assert again.chunks_added - counting.texts >= 8


def test_a_pending_file_of_another_folder_is_cleaned_up(tmp_path: Path, fake_embedder: Any) -> None:
    """A run that died mid-commit left a file ``pending``; a later run over another folder removes its chunks."""
    a, b = make_corpus(tmp_path / "a", 3), make_corpus(tmp_path / "b", 2, seed=1)
    settings = small_chunks()
    ingest_paths([a], settings, embedder=fake_embedder)
    with Wiring(settings, embedder=fake_embedder).collection() as c:
        victim = sorted(c.manifest.all())[0]
        c.manifest.mark_pending(victim)  # what a kill between "pending" and "done" leaves
        assert not c.check().clean
    ingest_paths([b], settings, embedder=fake_embedder)
    report = consistency(settings, fake_embedder)
    assert report.clean and report.files == 4, report.problems()


# ------------------------------------------------------------------------------------------------ kill -9
STORES = {
    "faiss": {"RAG_STORE__BACKEND": "faiss"},
    "qdrant": {"RAG_STORE__BACKEND": "qdrant", "RAG_STORE__QDRANT_MODE": "embedded"},
}
# small chunks, small batches, a slower fake model: ~30 group commits over a few seconds, so kills land in every stage
KILLABLE = {"RAG_CHUNK__SIZE_TOKENS": "32", "RAG_CHUNK__OVERLAP_TOKENS": "4", "FAKE_RAG_EMBED_BUFFER": "64",
            "FAKE_RAG_EMBED_DELAY_S": "0.05"}  # fmt: skip


def killable_runner(tmp_path: Path, store: str = "faiss", **extra: str) -> RagRunner:
    """``rag`` processes (the real CLI, the fake model) on one collection, for ``tests/reliability.py``."""
    data = tmp_path / "data"
    data.mkdir()
    return RagRunner(data, store=STORES[store], extra_env={**KILLABLE, **extra})


@pytest.mark.slow
@pytest.mark.parametrize("store", list(STORES))
def test_kill_9_of_a_parallel_ingest_at_random_points_then_rerun(tmp_path: Path, store: str) -> None:
    """The project's crash check (``assert_survives_random_kills``) on two parse processes: kill -9 three times at
    random points, then a run to the end: the chunk ids of a clean run, none twice, ``rag doctor`` clean."""
    if store == "qdrant":
        pytest.importorskip("qdrant_edge")
    docs = write_corpus(tmp_path / "docs", 120)
    assert_survives_random_kills(killable_runner(tmp_path, store), ["ingest", str(docs), "--workers", "2"],
                                 seed=7, times=3, min_landed=1)  # fmt: skip


def test_killed_parent_leaves_no_worker_process(tmp_path: Path) -> None:
    folder = make_corpus(tmp_path / "corpus", 40)
    runner = killable_runner(tmp_path, FAKE_RAG_EMBED_DELAY_S="0.5")
    proc = runner.start("ingest", str(folder), "--workers", "2")
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
        workers = [p for p in _children(proc.pid) if b"ingest.pool" in _cmdline(p)]
        time.sleep(0.1)
    assert len(workers) == 2, "the parse pool never started"
    os.kill(proc.pid, signal.SIGKILL)  # only the parent: its workers must notice and go
    proc.communicate()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and [p for p in workers if _alive(p)]:
        time.sleep(0.2)
    left = [p for p in workers if _alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"orphaned worker processes: {left}"


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _members(ident: int, field: int) -> list[int]:
    """Live processes whose process group (``field=2``) or session (``field=3``) is ``ident``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[field]) == ident and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def test_parse_workers_that_die_cost_only_their_files(tmp_path: Path, fake_embedder: Any) -> None:
    """The kernel kills the parse workers mid-file (as the OOM killer would): the run goes on with new workers, the
    files they held are reported, and the next run ingests them."""
    from ingest.pool import WORKER_DIED

    folder = make_corpus(tmp_path / "corpus", 30)
    # the first file in order, long enough to keep a worker busy for a while
    (folder / "big.txt").write_text("\n\n".join(f"Paragraph {i}: " + " ".join(WORDS) for i in range(20000)))
    settings = small_chunks(ingest={"workers": 2})
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for pid in _members(os.getpgid(0), field=2):
                try:
                    if b"ingest.pool" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") > 1.0:  # busy with big.txt
                    for victim in _members(os.getpgid(0), field=2):
                        with contextlib.suppress(OSError):
                            if b"ingest.pool" in Path(f"/proc/{victim}/cmdline").read_bytes():
                                os.kill(victim, signal.SIGKILL)
                                killed.append(victim)
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    summary = ingest_paths([folder], settings, embedder=fake_embedder)
    thread.join()
    assert killed, "the workers were never seen busy"
    assert [Path(f.path).name for f in summary.failed if f.reason == WORKER_DIED][:1] == ["big.txt"]
    assert {f.reason for f in summary.failed} == {WORKER_DIED} and summary.new + len(summary.failed) == 31
    again = ingest_paths([folder], settings, embedder=fake_embedder)
    assert again.new == len(summary.failed) and not again.failed
    report = consistency(settings, fake_embedder)
    assert report.clean and report.files == 31


def test_switching_to_int8_re_embeds_and_fp32_runtimes_do_not(tmp_path: Path) -> None:
    """The manifest knows the precision: int8 vectors never mix with fp32 ones in a collection."""
    from rag.embedders import SentenceTransformerEmbedder

    class Named(CountingEmbedder):
        def __init__(self, inner: Any, precision: str) -> None:
            super().__init__(inner)
            self.name, self.cache_key = "all-MiniLM-L6-v2", precision

    from tests.fakes import FakeEmbedder

    folder = make_corpus(tmp_path / "corpus", 4)
    settings = small_chunks()
    first = ingest_paths([folder], settings, embedder=Named(FakeEmbedder(), "fp32"))
    same = ingest_paths([folder], settings, embedder=Named(FakeEmbedder(), "fp32"))  # torch / onnx / auto
    assert (same.unchanged, same.changed) == (4, 0)
    int8 = Named(FakeEmbedder(), "int8")
    switched = ingest_paths([folder], settings, embedder=int8)
    assert switched.changed == 4 and int8.texts == first.chunks_added  # all re-embedded, none from fp32's cache
    assert SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu", runtime="onnx-int8").cache_key == "int8"
