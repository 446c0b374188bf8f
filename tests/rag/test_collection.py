"""A collection's files: where they live, typed errors, and the invariant that manifest, store and BM25 agree."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ingest.pipeline import ingest_paths
from rag.collection import Collection, list_collections
from rag.config import Settings
from rag.errors import CollectionNotFound
from rag.wiring import Wiring
from tests.fakes import make_chunk


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, topic in enumerate(("glaciers carve fjords", "volcanoes build islands", "rivers cut canyons")):
        (docs / f"n{i}.md").write_text(f"# Note {i}\n\nSlowly, {topic} over thousands of years.\n")
    return docs


def test_paths_are_decided_in_one_place_and_reading_creates_nothing(tmp_path: Path) -> None:
    c = Collection(Settings(data_dir=tmp_path, collection="x", store={"backend": "qdrant"}), embedder=lambda: None)
    assert c.root == tmp_path / "collections" / "x"
    assert (c.store_dir.name, c.manifest_path.name) == ("qdrant_edge", "manifest-qdrant-embedded.sqlite")
    assert c.documents() == [] and not c.exists() and list_collections(c.settings) == []
    with pytest.raises(CollectionNotFound):
        c.require()
    assert not c.root.exists()


@pytest.mark.parametrize("backend", ["faiss", "memory", "qdrant"])
def test_check_is_clean_after_ingest_and_repair_fixes_each_kind_of_drift(
    backend: str, folder: Path, fake_embedder
) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(store={"backend": backend})
    ingest_paths([folder], settings, embedder=fake_embedder)
    wiring = Wiring(settings, embedder=fake_embedder)
    with wiring.collection() as c:
        report = c.check()
        assert report.clean, report.problems()
        assert (report.files, report.chunks) == (3, 3)
        # drift of every kind: an orphan chunk, a file left pending, a file whose chunks went missing
        orphan = make_chunk(str(folder / "gone.md"), "an orphan chunk nobody ingested")
        c.store.upsert([orphan], fake_embedder.embed_documents([orphan.text]))
        c.manifest.mark_pending(str(folder / "n0.md"))
        c.store.delete_source(str(folder / "n1.md"))
        report = c.check()
        assert report.orphans == [str(folder / "gone.md")] and report.pending == [str(folder / "n0.md")]
        assert report.count_mismatch == [(str(folder / "n1.md"), 1, 0)]
        assert report.bm25_extra >= 1 and len(report.problems()) >= 4
        c.repair()
        assert c.check().clean
    again = ingest_paths([folder], settings, embedder=fake_embedder)  # the next run brings the removed files back
    assert (again.new, again.unchanged) == (2, 1)
    with wiring.collection() as c:
        assert c.check().clean and c.check().files == 3


def test_rag_doctor_reports_drift_repairs_it_and_exits_accordingly(folder: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from rag.cli import app
    from rag.wiring import overriding

    settings = Settings()
    ingest_paths([folder], settings, embedder=fake_embedder)
    runner = CliRunner()
    with overriding(embedder=fake_embedder):
        clean = runner.invoke(app, ["doctor"])
        assert clean.exit_code == 0 and "agree" in clean.stdout
        with Wiring(settings, embedder=fake_embedder).collection() as c:
            # a stale version: the manifest records another file hash than the stored chunks carry
            record = c.manifest.get(str(folder / "n2.md"))
            assert record is not None
            c.manifest.mark_done(replace(record, file_hash="another-version"))
            c.bm25_stale_marker.touch()
        found = runner.invoke(app, ["doctor", "--json"])
        assert found.exit_code == 1
        report = json.loads(found.stdout)
        assert report["stale_versions"] == [str(folder / "n2.md")] and report["bm25_stale"]
        assert not report["clean"] and len(report["problems"]) == 2
        repaired = runner.invoke(app, ["doctor", "--repair"])
        assert repaired.exit_code == 0 and "rag ingest" in repaired.stdout
        assert runner.invoke(app, ["doctor"]).exit_code == 0
        missing = runner.invoke(app, ["doctor", "--collection", "nope"])
        assert missing.exit_code == 2 and "no collection 'nope'" in missing.stderr
    again = ingest_paths([folder], settings, embedder=fake_embedder)
    assert again.new == 1  # the removed file is indexed again, cleanly


def test_the_writer_lock_is_one_writer_at_a_time_across_threads_and_processes(tmp_path: Path) -> None:
    import subprocess
    import sys
    import threading

    from rag.errors import StoreError

    settings = Settings(data_dir=tmp_path, collection="x", store={"backend": "memory", "lock_timeout_s": 0.5})
    c = Collection(settings, embedder=lambda: None)  # type: ignore[arg-type, return-value]
    c.acquire_writer()
    seen: dict[str, object] = {}

    def other_thread() -> None:
        with c.writing(wait=False) as got:
            seen["nowait"] = got
        try:
            with c.writing():
                seen["wait"] = True
        except StoreError as e:
            seen["wait"] = str(e)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert seen["nowait"] is False and "another thread of this process" in str(seen["wait"])
    code = ("from rag.config import Settings; from rag.collection import Collection\n"
            f"c = Collection(Settings(data_dir={str(tmp_path)!r}, collection='x', store={{'backend': 'memory', "
            "'lock_timeout_s': 0.5}), embedder=lambda: None)\n"
            "c.acquire_writer()\n")  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    busy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert busy.returncode != 0 and "another process (pid" in busy.stderr
    c.close()  # releases it
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert free.returncode == 0, free.stderr


def test_the_keyword_index_catches_up_with_the_store_after_a_writer_died(folder: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    """A writer killed between its store write and its BM25 rebuild: the next search (no writer running) rebuilds
    it; a keyword index that silently lacks chunks (no marker) is rebuilt by the next ingest, which counts."""
    settings = Settings()
    ingest_paths([folder], settings, embedder=fake_embedder)
    wiring = Wiring(settings, embedder=fake_embedder)
    late = make_chunk(str(folder / "late.md"), "quetzalcoatl feathered serpent")
    with wiring.collection() as c:  # what the dead writer left: chunks in the store, the marker, no rebuild
        c.mark_bm25_stale()
        c.store.upsert([late], fake_embedder.embed_documents([late.text]))
    hits = Wiring(settings, embedder=fake_embedder).retriever().search("quetzalcoatl", mode="bm25")
    assert [h.chunk.id for h in hits] == [late.id]
    with wiring.collection() as c:
        assert not c.bm25_stale_marker.exists()
        c.store.delete_source(late.source)  # drift without a marker: the store lost a chunk the index still has
    again = ingest_paths([folder], settings, embedder=fake_embedder)
    assert again.unchanged == 3
    assert Wiring(settings, embedder=fake_embedder).retriever().search("quetzalcoatl", mode="bm25") == []
