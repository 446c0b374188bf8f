"""The Streamlit app driven headless with ``AppTest``, with fakes at our own seams (``ui.services``).

Real-pipeline runs of the same app are in ``test_ui_app_real.py``; a real browser is in ``test_ui_browser.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rag.errors import LLMError
from rag.types import Answer, Chunk, Citation, Message, ScoredChunk
from ui import services

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"

FRANCE = Chunk(
    id="c1", text="Cats sleep a lot. Paris is the capital of France. It has many museums.",
    source="/docs/geography/france.md", page=None, start=0, end=70, content_hash="h1", file_hash="f1", file_type="md",
)  # fmt: skip
PRICES = Chunk(
    id="c2", text="A croissant costs two euros.", source="/docs/prices.pdf", page=4,
    start=0, end=28, content_hash="h2", file_hash="f2", file_type="pdf",
)  # fmt: skip


@dataclass
class FakePipeline:
    """Streams a fixed cited answer; records what it was asked (the RagPipeline seam)."""

    calls: list[tuple[str, tuple[Message, ...], int | None]] = field(default_factory=list)
    error: Exception | None = None

    def stream(self, question: str, *, history: Sequence[Message] = (), k: int | None = None, filters: Any = None
               ) -> Iterator[str | Answer]:  # fmt: skip
        self.calls.append((question, tuple(history), k))
        if self.error is not None:
            raise self.error
        text = "Paris is the capital of France [1]."
        yield from ("Paris is ", "the capital ", "of France [1].")
        hits = (ScoredChunk(FRANCE, 0.81), ScoredChunk(PRICES, 0.42))
        yield Answer(question=question, text=text, citations=(Citation(1, hits[0]),), retrieved=hits, timings={})


@dataclass(frozen=True)
class FakeFailed:
    path: str
    reason: str


@dataclass(frozen=True)
class FakeSummary:
    files_seen: int = 2
    new: int = 1
    changed: int = 0
    unchanged: int = 0
    failed: tuple[FakeFailed, ...] = ()
    chunks_added: int = 3
    chunks_removed: int = 0
    pruned_files: int = 0
    seconds: float = 0.4
    skipped: tuple[FakeFailed, ...] = ()
    collection: str = "default"
    chunks_total: int | None = 7
    ocr_pages: int = 0
    cancelled: bool = False


@dataclass
class World:
    """What the fakes share: the documents in the index, the pipeline, what ingestion was given."""

    docs: list[tuple[str, int]] = field(default_factory=lambda: [("/docs/geography/france.md", 1)])
    pipeline: FakePipeline = field(default_factory=FakePipeline)
    ingested: list[list[Path]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    slow_ingest: bool = False


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = World()

    def fake_ingest(paths: Sequence[Path], settings: Any, *, progress: Any, embedder: Any,
                    cancel: Any = None, groups: Any = ()) -> FakeSummary:
        w.ingested.append(list(paths))
        if w.slow_ingest:  # a long job: it reports progress and stops only when cancelled
            progress(type("P", (), {"files_done": 1, "files_total": 40, "current": str(paths[0]),
                                    "chunks_added": 2})())  # fmt: skip
            assert cancel.wait(30), "the Cancel button never reached the job"
            return FakeSummary(files_seen=40, new=1, cancelled=True)
        failed = []
        for i, p in enumerate(paths, start=1):
            if p.name.endswith(".broken.pdf"):
                failed.append(FakeFailed(str(p), "not a PDF file (PdfReadError)"))
            else:
                w.docs.append((str(p), 2))
            progress(type("P", (), {"files_done": i, "files_total": len(paths), "current": str(p),
                                    "chunks_added": 2})())  # fmt: skip
        scans = sum(p.suffix in (".png", ".jpg", ".tiff") for p in paths)  # images are read by OCR
        return FakeSummary(files_seen=len(paths), new=len(paths) - len(failed), failed=tuple(failed), ocr_pages=scans)

    def fake_delete(source: str, settings: Any, **kw: Any) -> int:
        w.deleted.append(source)
        n = dict(w.docs)[source]
        w.docs[:] = [d for d in w.docs if d[0] != source]
        return n

    monkeypatch.setattr(services, "make_embedder", lambda settings: object())
    monkeypatch.setattr(services, "make_pipeline", lambda settings, embedder, llm: w.pipeline)
    monkeypatch.setattr(services, "list_documents", lambda settings, **kw: list(w.docs))
    monkeypatch.setattr(services, "ingest", fake_ingest)
    monkeypatch.setattr(services, "delete_document", fake_delete)
    st.cache_resource.clear()
    yield w
    st.cache_resource.clear()


def run_app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def finish_jobs(at: AppTest, timeout: float = 30) -> AppTest:
    """Rerun the page until the background indexing job is over and its outcome is drawn."""
    deadline = time.monotonic() + timeout
    while at.session_state["ingest_job"] is not None if "ingest_job" in at.session_state else False:
        assert time.monotonic() < deadline, "the indexing job did not finish"
        time.sleep(0.1)
        at.run()
        assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Everything the user can read on the page (markdown, captions, alerts, expander and popover labels)."""
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for kind in ("info", "error", "warning", "success") for e in getattr(at, kind)]
    parts += [e.label for e in at.expander]
    parts += popover_labels(at)
    return "\n".join(str(p) for p in parts).replace("\\", "")  # as read: markdown escapes are not shown


def popover_labels(at: AppTest) -> list[str]:
    """Labels of the citation popovers (AppTest has no accessor for popovers yet: walk the element tree)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if getattr(node, "type", None) == "popover":
            found.append(node.proto.popover.label)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def test_question_gets_streamed_answer_with_citation_and_sources(world: World) -> None:
    at = run_app()
    at.chat_input[0].set_value("What is the capital of France?").run()
    assert not at.exception, at.exception
    page = texts(at)
    assert "Paris is the capital of France :blue-badge[1]." in page  # the [1] is shown as a badge
    assert "Sources (2)" in page  # the sources panel lists everything put in the prompt
    assert "[1] france.md" in page  # the citation opens the passage: file name...
    assert "<mark>Paris is the capital of France.</mark>" in page  # ...and the cited part highlighted
    assert "prices.pdf · p. 4" in page  # pages are shown for paged formats
    assert world.pipeline.calls == [("What is the capital of France?", (), 5)]
    assert [m.name for m in at.chat_message] == ["user", "assistant"]


def test_follow_up_passes_history_and_new_chat_starts_over(world: World) -> None:
    at = run_app()
    at.chat_input[0].set_value("What is the capital of France?").run()
    at.chat_input[0].set_value("And what does a croissant cost there?").run()
    question, history, _ = world.pipeline.calls[-1]
    assert question == "And what does a croissant cost there?"
    assert history == (
        Message("user", "What is the capital of France?"),
        Message("assistant", "Paris is the capital of France [1]."),
    )
    assert len(at.chat_message) == 4  # both turns stay on the page

    at.sidebar.button[0].click().run()  # "New chat"
    assert at.sidebar.button[0].label == "New chat"
    assert len(at.chat_message) == 0
    at.chat_input[0].set_value("Capital?").run()
    assert world.pipeline.calls[-1][1] == ()  # a fresh conversation has no history


def test_sidebar_settings_reach_the_pipeline(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(
        services, "make_pipeline", lambda settings, embedder, llm: seen.append(settings) or world.pipeline
    )
    at = run_app()
    at.sidebar.slider[0].set_value(3)
    at.sidebar.radio[0].set_value("reranked")
    at.sidebar.text_input[0].set_value("http://gpu-box:8000/v1")
    at.run()
    at.chat_input[0].set_value("Capital?").run()
    s = seen[-1]
    assert (s.retrieval.k, s.retrieval.mode, s.retrieval.rerank, s.llm.base_url) == (
        3,
        "hybrid",
        True,
        "http://gpu-box:8000/v1",
    )
    assert world.pipeline.calls[-1][2] == 3


def test_llm_down_shows_a_message_not_a_traceback(world: World) -> None:
    world.pipeline.error = LLMError("cannot reach the LLM at http://127.0.0.1:9/v1: is the server up? (rag serve-llm)")
    at = run_app()
    at.chat_input[0].set_value("What is the capital of France?").run()
    assert not at.exception
    assert any("cannot reach the LLM" in e.value for e in at.error)
    # the failed turn is not sent as history with the next question
    world.pipeline.error = None
    at.chat_input[0].set_value("Capital?").run()
    assert world.pipeline.calls[-1][1] == ()


def test_empty_index_says_to_upload_and_does_not_ask_the_llm(world: World) -> None:
    world.docs.clear()
    at = run_app()
    assert any("No documents yet: upload some in **Documents**" in e.value for e in at.info)
    at.chat_input[0].set_value("What is the capital of France?").run()
    assert not at.exception
    assert world.pipeline.calls == []
    assert sum("No documents yet" in e.value for e in at.info) >= 1


def test_empty_index_offers_the_sample_documents(world: World) -> None:
    world.docs.clear()
    at = run_app()
    [try_samples] = [b for b in at.main.button if b.label == "Try it on the sample documents"]
    try_samples.click().run()
    assert not at.exception, at.exception
    finish_jobs(at)
    assert world.ingested == [services.sample_documents()]
    assert {p.name for p in world.ingested[0]} >= {"lppl.pdf", "Aardwolf.txt"}
    n = len(world.ingested[0])
    assert any(f"Indexed {n} files" in e.value for e in at.success)
    assert not any("No documents yet" in e.value for e in at.info)  # the chat is ready


def test_upload_is_saved_safely_indexed_and_listed(world: World, _isolated_data_dir: Path) -> None:
    at = run_app()
    at.file_uploader[0].set_value([
        ("../../etc/notes.md", b"# Notes\nThe meeting is on Tuesday.", "text/markdown"),
        ("Résumé.txt", b"Worked at the bakery.", "text/plain"),
    ])  # fmt: skip
    at.button(key="FormSubmitter:upload-Upload and index").click().run()
    assert not at.exception, at.exception
    finish_jobs(at)
    uploads = _isolated_data_dir / "uploads" / "default"
    assert sorted(p.name for p in uploads.iterdir()) == ["Résumé.txt", "notes.md"]  # no traversal, unicode kept
    assert world.ingested == [[uploads / "notes.md", uploads / "Résumé.txt"]]
    assert any("Indexed 2 files" in e.value and "2 new" in e.value for e in at.success)
    listed = at.dataframe[0].value
    assert set(listed["document"]) == {"france.md", "notes.md", "Résumé.txt"}
    assert int(listed.loc[listed["document"] == "notes.md", "chunks"].iloc[0]) == 2


def test_failed_files_are_reported_with_their_reason(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    at = run_app()
    folder_input = [t for t in at.text_input if "folder" in t.label][0]
    folder_input.set_value(str(folder / "scan.broken.pdf"))
    at.button(key="FormSubmitter:folder-Index folder").click().run()
    assert any("No such file or folder" in e.value for e in at.error)  # a path that does not exist
    assert world.ingested == []

    (folder / "scan.broken.pdf").write_bytes(b"not a pdf")
    folder_input = [t for t in at.text_input if "folder" in t.label][0]
    folder_input.set_value(str(folder / "scan.broken.pdf"))
    at.button(key="FormSubmitter:folder-Index folder").click().run()
    assert not at.exception, at.exception
    finish_jobs(at)
    assert any("1 failed" in e.value for e in at.warning)
    failed = at.table[0].value
    assert list(failed["file"]) == ["scan.broken.pdf"]
    assert list(failed["reason"]) == ["not a PDF file (PdfReadError)"]


def test_delete_removes_a_document(world: World) -> None:
    world.docs.append(("/docs/prices.pdf", 3))
    at = run_app()
    delete_box = [s for s in at.selectbox if s.label.startswith("Remove")][0]
    delete_box.set_value("/docs/prices.pdf")
    at.button(key="FormSubmitter:delete-Delete").click().run()
    assert not at.exception, at.exception
    assert world.deleted == ["/docs/prices.pdf"]
    assert list(at.dataframe[0].value["document"]) == ["france.md"]


def test_oversized_upload_is_rejected_with_a_message(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_UI__MAX_UPLOAD_MB", "1")
    at = run_app()
    at.file_uploader[0].set_value([("big.txt", b"x" * (1024 * 1024 + 1), "text/plain")])
    at.button(key="FormSubmitter:upload-Upload and index").click().run()
    assert not at.exception, at.exception
    assert any("Upload failed for big.txt" in e.value and "1 MB" in e.value for e in at.error)
    assert world.ingested == []


def test_a_rejected_upload_stays_reported_beside_the_summary_of_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file over the limit, one valid: indexing the valid one reruns the page, and the rejection must survive."""
    monkeypatch.setenv("RAG_UI__MAX_UPLOAD_MB", "1")
    at = run_app()
    at.file_uploader[0].set_value([
        ("big.txt", b"x" * (1024 * 1024 + 1), "text/plain"),
        ("small.md", b"# Small\nThe bakery opens at seven.", "text/markdown"),
    ])  # fmt: skip
    at.button(key="FormSubmitter:upload-Upload and index").click().run()
    assert not at.exception, at.exception
    finish_jobs(at)
    assert [p.name for p in world.ingested[0]] == ["small.md"]
    assert any("Indexed 1 file" in e.value for e in at.success)
    assert any("Upload failed for big.txt" in e.value and "1 MB" in e.value for e in at.error), [
        e.value for e in at.error
    ]
    at.run()  # another rerun (any widget): still there until the next upload
    assert any("Upload failed for big.txt" in e.value for e in at.error)


def test_upload_accepts_every_type_ingestion_reads(world: World) -> None:
    at = run_app()
    accepted = set(at.file_uploader[0].proto.type)
    assert {".docx", ".pptx", ".xlsx", ".csv", ".eml", ".png", ".jpg", ".tiff", ".pdf", ".md"} <= accepted
    at.file_uploader[0].set_value([("receipt.png", b"\x89PNG fake", "image/png"),
                                   ("deck.pptx", b"PK fake", "application/octet-stream")])
    at.button(key="FormSubmitter:upload-Upload and index").click().run()
    assert not at.exception, at.exception
    finish_jobs(at)
    assert any("Indexed 2 files" in e.value and "1 page read by OCR" in e.value for e in at.success)


def test_a_running_job_shows_progress_and_can_be_cancelled(world: World, tmp_path: Path) -> None:
    world.slow_ingest = True
    (tmp_path / "big").mkdir()
    at = run_app()
    folder_input = [t for t in at.text_input if "folder" in t.label][0]
    folder_input.set_value(str(tmp_path / "big"))
    at.button(key="FormSubmitter:folder-Index folder").click().run()
    assert not at.exception, at.exception
    job = at.session_state["ingest_job"]
    assert job is not None and job.running
    deadline = time.monotonic() + 10
    while job.progress.files_total == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()
    assert any("Indexing: 1/40 files" in str(e.proto.text) for e in at.get("progress"))
    at.button(key="cancel_ingest").click().run()
    assert job.cancel.is_set()
    finish_jobs(at)
    assert any("Cancelled" in e.value for e in at.warning)
    assert at.session_state["ingest_job"] is None
