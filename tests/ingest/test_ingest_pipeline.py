"""The ingestion pipeline end to end on real files, a real FAISS store on disk and the fake embedder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest import parse, pipeline
from ingest.pipeline import ingest_paths
from rag.collection import Collection
from rag.config import Settings
from rag.errors import StoreError, UsageError
from rag.wiring import Wiring


class FailingEmbedder:
    """The fake embedder, but the ``fail_on``-th embedding call raises (a crash in the middle of a run)."""

    def __init__(self, inner: Any, fail_on: int, error: BaseException | None = None) -> None:
        self.inner, self.fail_on, self.calls, self.texts = inner, fail_on, 0, 0
        self.name, self.dim = inner.name, inner.dim
        self.error = error or RuntimeError("simulated crash")

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_on:
            raise self.error
        self.texts += len(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def _store(settings: Settings, emb: Any) -> Any:
    """The collection's store, opened through the composition root (close it when done)."""
    return Wiring(settings, embedder=emb).collection().store


def _collection(settings: Settings, emb: Any) -> Collection:
    return Wiring(settings, embedder=emb).collection()


def test_mixed_folder_twice_second_run_adds_nothing(mixed_folder: Path, fake_embedder: Any) -> None:
    settings = Settings()
    seen: list[pipeline.IngestProgress] = []
    first = ingest_paths([mixed_folder], settings, embedder=fake_embedder, progress=seen.append)
    assert (first.files_seen, first.new, first.unchanged, first.failed) == (4, 4, 0, ())
    assert seen[-1].files_done == seen[-1].files_total == 4 and seen[-1].chunks_added == first.chunks_added
    assert any(p.current.startswith("embedding") for p in seen)  # the bar says what it waits for
    assert first.chunks_added > 4
    assert [Path(s.path).name for s in first.skipped] == ["slides.key"]

    counting = FailingEmbedder(fake_embedder, fail_on=-1)
    second = ingest_paths([mixed_folder], settings, embedder=counting)
    assert (second.new, second.changed, second.unchanged, second.chunks_added, second.chunks_removed) == (0, 0, 4, 0, 0)
    assert counting.calls == 0  # nothing was embedded

    store = _store(settings, fake_embedder)
    try:
        assert store.count() == first.chunks_added
        hit = store.search(fake_embedder.embed_query("Danube river Black Sea"), k=1)[0]
        assert hit.chunk.source.endswith("notes.md") and "Danube" in hit.chunk.text
        pdf_hits = store.search(fake_embedder.embed_query("ribosomes proteins"), k=3, filters={"file_type": "pdf"})
        assert pdf_hits[0].chunk.page == 3
    finally:
        store.close()
    assert _collection(settings, fake_embedder).bm25_dir.exists()


def test_touched_but_identical_file_is_unchanged(mixed_folder: Path, fake_embedder: Any) -> None:
    settings = Settings()
    ingest_paths([mixed_folder], settings, embedder=fake_embedder)
    md = mixed_folder / "notes.md"
    os.utime(md, (1, 1))  # new mtime, same bytes
    again = ingest_paths([mixed_folder], settings, embedder=fake_embedder)
    assert (again.unchanged, again.changed, again.chunks_added) == (4, 0, 0)


def test_changed_file_replaces_exactly_its_chunks(mixed_folder: Path, fake_embedder: Any) -> None:
    settings = Settings()
    ingest_paths([mixed_folder], settings, embedder=fake_embedder)
    store = _store(settings, fake_embedder)
    before = store.sources()
    store.close()
    md = mixed_folder / "notes.md"
    md.write_text("# Lakes\n\nLake Baikal is the deepest lake on Earth.\n", encoding="utf-8")
    summary = ingest_paths([mixed_folder], settings, embedder=fake_embedder)
    assert (summary.changed, summary.unchanged, summary.new) == (1, 3, 0)
    assert summary.chunks_removed == before[str(md)]
    store = _store(settings, fake_embedder)
    try:
        after = store.sources()
        assert {k: v for k, v in after.items() if k != str(md)} == {k: v for k, v in before.items() if k != str(md)}
        texts = [c.text for c in store.chunks({"source": str(md)})]
        assert texts and all("Danube" not in t for t in texts) and any("Baikal" in t for t in texts)
    finally:
        store.close()


def test_prune_removes_vanished_files(mixed_folder: Path, fake_embedder: Any) -> None:
    settings = Settings()
    ingest_paths([mixed_folder], settings, embedder=fake_embedder)
    gone = mixed_folder / "page.html"
    gone.unlink()
    kept = ingest_paths([mixed_folder], settings, embedder=fake_embedder)
    assert kept.pruned_files == 0 and str(gone) in dict(list_documents_with(settings, fake_embedder))
    pruned = ingest_paths([mixed_folder], settings, prune=True, embedder=fake_embedder)
    assert pruned.pruned_files == 1 and pruned.chunks_removed >= 1
    assert str(gone) not in dict(list_documents_with(settings, fake_embedder))


def list_documents_with(settings: Settings, emb: Any) -> list[tuple[str, int]]:
    with _collection(settings, emb) as collection:
        return collection.documents()


@pytest.mark.parametrize("error", [RuntimeError("simulated crash"), KeyboardInterrupt()], ids=["crash", "ctrl-c"])
def test_crash_mid_run_keeps_committed_files_and_resumes(tmp_path: Path, fake_embedder: Any, error: BaseException,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "EMBED_BUFFER", 1)  # one embedding call per file
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"f{i}.txt").write_text(f"Document number {i} talks about topic {i} at length.\n")
    settings = Settings()
    crashing = FailingEmbedder(fake_embedder, fail_on=4, error=error)
    with pytest.raises(type(error)):
        ingest_paths([folder], settings, embedder=crashing)
    store = _store(settings, fake_embedder)
    committed = store.sources()
    store.close()
    assert len(committed) == 3  # files embedded before the crash are in the store

    resumed_embedder = FailingEmbedder(fake_embedder, fail_on=-1)
    resumed = ingest_paths([folder], settings, embedder=resumed_embedder)
    assert (resumed.unchanged, resumed.new) == (3, 3)
    assert resumed_embedder.texts == resumed.chunks_added  # only the remaining files were embedded
    assert len(list_documents_with(settings, fake_embedder)) == 6


def test_bad_files_are_reported_and_the_rest_indexed(tmp_path: Path, fake_embedder: Any, kit: Any) -> None:
    folder = tmp_path / "bad batch"
    folder.mkdir()
    kit.write_pdf(folder / "good.pdf", kit.PAGES)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4 broken")
    kit.write_encrypted_pdf(folder / "locked.pdf", "pw", folder / "good.pdf")
    kit.write_image_only_pdf(folder / "scan.pdf")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 10)
    (folder / "latin1.txt").write_bytes("Crème brûlée à la française".encode("latin-1"))
    (folder / "spaced ünï name.md").write_text("Unicode names are fine.\n")
    summary = ingest_paths([folder], Settings(), embedder=fake_embedder)
    reasons = {Path(f.path).name: f.reason for f in summary.failed}
    assert set(reasons) == {"corrupt.pdf", "locked.pdf", "scan.pdf", "empty.txt", "binary.txt"}
    assert "corrupt PDF" in reasons["corrupt.pdf"]
    assert "encrypted" in reasons["locked.pdf"]
    assert "no extractable text" in reasons["scan.pdf"]
    assert "empty" in reasons["empty.txt"]
    assert "binary" in reasons["binary.txt"]
    assert summary.new == 3
    docs = dict(list_documents_with(Settings(), fake_embedder))
    assert str(folder / "spaced ünï name.md") in docs
    store = _store(Settings(), fake_embedder)
    try:
        (chunk,) = store.chunks({"source": str(folder / "latin1.txt")})
        assert chunk.text == "Crème brûlée à la française"
    finally:
        store.close()


def test_file_vanishing_during_the_run(tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "stays.txt").write_text("this one stays")
    doomed = folder / "doomed.txt"
    doomed.write_text("this one is deleted after discovery")
    real_plan = pipeline._Run.plan

    def plan_then_delete(self: Any, files: list[Path]) -> Any:
        todo = real_plan(self, files)
        doomed.unlink()  # discovered and planned, gone before it is read
        return todo

    monkeypatch.setattr(pipeline._Run, "plan", plan_then_delete)
    summary = ingest_paths([folder], Settings(), embedder=fake_embedder)
    assert [(Path(f.path).name, f.reason) for f in summary.failed] == [
        ("doomed.txt", "file vanished during the run (deleted or moved)")
    ]
    assert summary.new == 1


def test_too_large_file_is_skipped_with_reason(tmp_path: Path, fake_embedder: Any) -> None:
    big = tmp_path / "big.txt"
    big.write_text("word " * 300_000)
    summary = ingest_paths([big], Settings(ingest={"max_file_mb": 1}), embedder=fake_embedder)
    (failed,) = summary.failed
    assert "over the 1 MB limit" in failed.reason and "RAG_INGEST__MAX_FILE_MB" in failed.reason


def test_large_text_file_is_streamed(tmp_path: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest import load

    monkeypatch.setattr(parse, "STREAM_BYTES", 50_000)
    monkeypatch.setattr(pipeline, "EMBED_BUFFER", 64)
    monkeypatch.setattr(load, "TEXT_PIECE_CHARS", 20_000)
    lines = [f"Entry {i}: the quick brown fox number {i} jumps over the lazy dog.\n" for i in range(8000)]
    text = "".join(lines)
    big = tmp_path / "huge log.txt"
    big.write_text(text)
    calls: list[int] = []
    real = fake_embedder.embed_documents
    monkeypatch.setattr(fake_embedder, "embed_documents", lambda t: calls.append(len(t)) or real(t))
    summary = ingest_paths([big], Settings(), embedder=fake_embedder)
    assert summary.new == 1 and summary.failed == ()
    assert max(calls) <= 64 and len(calls) > 5  # embedded piece by piece, never all at once
    store = _store(Settings(), fake_embedder)
    try:
        chunks = list(store.chunks())
        assert len(chunks) == summary.chunks_added
        for c in chunks[::50]:
            assert text[c.start : c.end] == c.text  # spans index into the whole file
        assert any("Entry 7999:" in c.text for c in chunks)
    finally:
        store.close()


def test_missing_path_is_an_error(fake_embedder: Any) -> None:
    with pytest.raises(UsageError, match="path not found"):
        ingest_paths(["/no/such/folder"], Settings(), embedder=fake_embedder)


def test_other_embedding_model_is_refused(mixed_folder: Path, fake_embedder: Any) -> None:
    ingest_paths([mixed_folder], Settings(), embedder=fake_embedder)

    class Other(type(fake_embedder)):  # type: ignore[misc]
        name = "another-model"

    (mixed_folder / "new.txt").write_text("a new file")
    with pytest.raises(StoreError, match="built with embedding model 'fake-bow-64'"):
        ingest_paths([mixed_folder], Settings(), embedder=Other())


def test_delete_and_list_documents(mixed_folder: Path, fake_embedder: Any) -> None:
    settings = Settings()
    ingest_paths([mixed_folder], settings, embedder=fake_embedder)
    docs = dict(list_documents_with(settings, fake_embedder))
    md = str(mixed_folder / "notes.md")
    assert len(docs) == 4 and docs[md] >= 1
    with _collection(settings, fake_embedder) as collection:
        assert collection.delete_document(md) == docs[md]
        assert md not in dict(collection.documents())
        assert not any(c.source == md for c in collection.store.chunks())
    from rag.lexical import BM25Index

    bm25 = BM25Index.load(_collection(settings, fake_embedder).bm25_dir)
    assert not any(c.source == md for c in bm25.chunks)  # the keyword index forgot it too
    again = ingest_paths([mixed_folder], settings, embedder=fake_embedder)
    assert again.new == 1  # the manifest forgot it too, so it comes back


def test_big_pdfs_are_streamed_page_by_page(tmp_path: Path, fake_embedder: Any, kit: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "STREAM_BYTES", 1)  # every file counts as big
    monkeypatch.setattr(pipeline, "EMBED_BUFFER", 2)
    kit.write_pdf(tmp_path / "book.pdf", kit.PAGES * 2)
    kit.write_image_only_pdf(tmp_path / "scan.pdf")
    calls: list[int] = []
    real = fake_embedder.embed_documents
    monkeypatch.setattr(fake_embedder, "embed_documents", lambda t: calls.append(len(t)) or real(t))
    summary = ingest_paths([tmp_path], Settings(), embedder=fake_embedder)
    assert summary.new == 1 and summary.chunks_added == 6 and max(calls) <= 2
    assert [(Path(f.path).name, "no extractable text" in f.reason) for f in summary.failed] == [("scan.pdf", True)]
    docs = dict(list_documents_with(Settings(), fake_embedder))
    assert list(docs) == [str(tmp_path / "book.pdf")]
    store = _store(Settings(), fake_embedder)
    try:
        assert sorted(c.page for c in store.chunks()) == [1, 2, 3, 4, 5, 6]
    finally:
        store.close()


def test_bm25_is_rebuilt_after_a_run_that_died_before_building_it(
    mixed_folder: Path, fake_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.lexical import BM25Index

    settings = Settings()
    ingest_paths([mixed_folder], settings, embedder=fake_embedder)  # a BM25 index exists from here on
    (mixed_folder / "glaciers.txt").write_text("Glaciers carve fjords into the coastline of Norway.")

    def die(*_a: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Collection, "rebuild_bm25", die)
        with pytest.raises(KeyboardInterrupt):
            ingest_paths([mixed_folder], settings, embedder=fake_embedder)  # glaciers.txt committed, BM25 not rebuilt
    bm25 = _collection(settings, fake_embedder).bm25_dir
    assert not BM25Index.load(bm25).search("glaciers fjords Norway", k=1, filters={"file_type": "txt"}) or \
        not BM25Index.load(bm25).search("glaciers fjords Norway", k=1)[0].chunk.source.endswith("glaciers.txt")
    again = ingest_paths([mixed_folder], settings, embedder=fake_embedder)
    assert again.unchanged == 5 and again.chunks_added == 0  # nothing re-embedded ...
    hits = BM25Index.load(bm25).search("glaciers fjords Norway", k=1)
    assert hits and hits[0].chunk.source.endswith("glaciers.txt")  # ... but the lexical index caught up


def test_switching_store_backend_ingests_into_the_new_store(mixed_folder: Path, fake_embedder: Any) -> None:
    faiss = Settings()
    first = ingest_paths([mixed_folder], faiss, embedder=fake_embedder)
    assert first.new == 4

    memory = Settings(store={"backend": "memory"})  # same collection, another store: nothing is in it yet
    switched = ingest_paths([mixed_folder], memory, embedder=fake_embedder)
    assert (switched.new, switched.unchanged, switched.chunks_added) == (4, 0, first.chunks_added)
    store = _store(memory, fake_embedder)
    try:
        assert store.count() == first.chunks_added
    finally:
        store.close()
    again = ingest_paths([mixed_folder], faiss, embedder=fake_embedder)  # the FAISS manifest is untouched
    assert (again.unchanged, again.chunks_added) == (4, 0)


def test_ragignore_keeps_files_and_folders_out(tmp_path: Path, fake_embedder: Any) -> None:
    root = tmp_path / "notes"
    (root / "drafts").mkdir(parents=True)
    (root / "private" / "deep").mkdir(parents=True)
    (root / "keep.md").write_text("# Keep\n\nThe Danube flows into the Black Sea.")
    (root / "README.md").write_text("# About this folder\n\nNot a document.")
    (root / "drafts" / "d.txt").write_text("A draft about rivers.")
    (root / "private" / "deep" / "secret.md").write_text("# Secret\n\nPasswords.")
    (root / "private" / "public.md").write_text("# Public\n\nThe Rhine flows into the North Sea.")
    (root / ".ragignore").write_text("# not documents\nREADME.md\ndrafts/\nprivate/deep/*.md\n")

    summary = ingest_paths([root], Settings(), embedder=fake_embedder)
    settings = Settings()
    names = sorted(Path(source).name for source, _ in list_documents_with(settings, fake_embedder))
    assert names == ["keep.md", "public.md"] and summary.files_seen == 2
    named = ingest_paths([root / "README.md"], settings, embedder=fake_embedder)  # named on purpose: ingested
    assert named.new == 1
