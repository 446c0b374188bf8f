"""A collection's files: where they live, typed errors, and the invariant that manifest, store and BM25 agree."""

from __future__ import annotations

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
