"""``rag ingest --ray`` on a local Ray instance (``ray.init(num_cpus=2)``): the same chunk ids, access groups and
vectors as the local pipeline with the real packaged model, and ``kill -9`` of a Ray ingest at random points loses and
duplicates nothing (``tests/reliability.py``'s check). Kept small: starting Ray costs seconds on 2 busy cores.
Skipped when Ray is not installed (the ``ray`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest import parse
from ingest.pipeline import ingest_paths
from rag.config import Settings
from rag.wiring import Wiring

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

from tests.ingest.test_parallel_ingest import killable_runner, make_corpus  # noqa: E402
from tests.reliability import assert_survives_random_kills, write_corpus  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 << 20)
    yield ray
    ray.shutdown()


def _vectors(settings: Settings) -> dict[str, np.ndarray]:
    """chunk id -> vector, read back from the FAISS store's database."""
    import sqlite3

    with Wiring(settings).collection() as c:
        db = sqlite3.connect(c.store_dir / "chunks.sqlite")
        try:
            return {i: np.frombuffer(v, dtype=np.float32) for i, v in db.execute("SELECT id, vector FROM chunks")}
        finally:
            db.close()


def _groups(settings: Settings) -> dict[str, tuple[str, ...]]:
    with Wiring(settings).collection() as c:
        return {ch.id: ch.groups for ch in c.store.chunks()}


def test_ray_gives_the_same_chunk_ids_groups_and_vectors_as_the_local_path(
    local_ray: Any, tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docx

    from ingest.ray_ingest import ingest_with_ray

    folder = make_corpus(tmp_path / "corpus", 12)
    kit.write_pdf(folder / "biology.pdf", kit.PAGES)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    (folder / "big.txt").write_text("\n\n".join(f"Paragraph {i} about the orbit of comet {i}." for i in range(400)))
    report = docx.Document()  # an Office file: issue 14's loaders run inside the Ray tasks
    report.add_heading("Harbour report", level=1)
    report.add_paragraph("The lighthouse keeper logged forty ships in March.")
    report.save(str(folder / "sub1" / "harbour.docx"))
    (folder / "sub1" / ".raggroups").write_text("hr\n")  # the files below are for hr only, the rest for staff
    monkeypatch.setattr(parse, "STREAM_BYTES", 8_000)  # big.txt is streamed (the spec carries it to the tasks)
    chunk = {"size_tokens": 48, "overlap_tokens": 8}
    local = Settings(data_dir=tmp_path / "local", chunk=chunk)
    on_ray = Settings(data_dir=tmp_path / "ray", chunk=chunk)
    a = ingest_paths([folder], local, groups=["staff"])
    b = ingest_with_ray([folder], on_ray, groups=["staff"])
    assert (b.new, b.chunks_added, [f.path for f in b.failed]) == (a.new, a.chunks_added, [f.path for f in a.failed])
    assert a.new == 15 and "corrupt PDF" in b.failed[0].reason
    va, vb = _vectors(local), _vectors(on_ray)
    assert sorted(va) == sorted(vb) and len(va) == a.chunks_added > 400 // 8
    diff = max(float(np.abs(va[k] - vb[k]).max()) for k in va)
    assert diff < 1e-4, diff  # the same model on the same chunks (onnxruntime batches them differently)
    ga, gb = _groups(local), _groups(on_ray)  # .raggroups and --groups reach every chunk, through the Ray tasks
    hr = _ids_under(on_ray, folder / "sub1")
    assert ga == gb and hr and all(g == (("hr",) if i in hr else ("staff",)) for i, g in gb.items())
    with Wiring(on_ray).collection() as c:
        check = c.check()
        assert check.clean, check.problems()
        assert sorted(c.store.sources()) == sorted(Wiring(local).collection().store.sources())
    again = ingest_with_ray([folder], on_ray, groups=["staff"])  # unchanged files are not sent to Ray
    assert (again.new, again.unchanged, again.chunks_added, len(again.failed)) == (0, 15, 0, 1)


def _ids_under(settings: Settings, folder: Path) -> set[str]:
    with Wiring(settings).collection() as c:
        return {ch.id for ch in c.store.chunks() if Path(ch.source).parent == folder}


def test_kill_9_of_a_ray_ingest_at_random_points_then_rerun(tmp_path: Path) -> None:
    """The project's crash check on ``rag ingest --ray`` (a local Ray instance per run, started by the command)."""
    docs = write_corpus(tmp_path / "docs", 60)
    assert_survives_random_kills(killable_runner(tmp_path), ["ingest", str(docs), "--ray"], seed=7, times=2,
                                 min_landed=1)  # fmt: skip
