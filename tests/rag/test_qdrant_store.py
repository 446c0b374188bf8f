"""What is particular to the Qdrant store: modes, folder locks across processes, index building, server errors.

The behaviour shared with every store (hits, filters, deletes, persistence, mismatch) is in test_store_contract.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

from rag.collection import Collection  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.errors import ConfigError, StoreError  # noqa: E402
from rag.stores.qdrant_store import QdrantClientStore, QdrantEdgeStore, point_id  # noqa: E402
from rag.types import Chunk  # noqa: E402
from tests.fakes import store_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def chunk(i: int, source: str = "/d/a.md") -> Chunk:
    return Chunk(id=f"id{i}", text=f"text {i}", source=source, page=None, start=0, end=6, content_hash=f"h{i}",
                 file_hash="f", file_type="md")


def unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def settings(mode: str, **store: object) -> Settings:
    return Settings(store={"backend": "qdrant", "qdrant_mode": mode, **store})


def test_point_ids_are_stable_uuids_of_chunk_ids() -> None:
    assert point_id("abc") == point_id("abc") != point_id("abd")
    assert len(point_id("abc")) == 36  # a UUID string, which every Qdrant accepts as a point id


@pytest.mark.parametrize(("mode", "cls"), [("embedded", QdrantEdgeStore), ("edge", QdrantEdgeStore),
                                           ("local", QdrantClientStore)])
def test_modes_pick_their_engine_and_folder(mode: str, cls: type, tmp_path: Path) -> None:
    s = settings(mode)
    store = store_for(s, 8, "m")
    assert isinstance(store, cls)
    store.upsert([chunk(1)], unit(1, 8))
    store.close()
    folder = "qdrant_edge" if cls is QdrantEdgeStore else "qdrant_local"
    assert (Collection(s, embedder=lambda: None).root / folder).is_dir()


def test_embedded_is_the_default_qdrant_mode() -> None:
    assert Settings().store.qdrant_mode == "embedded"


def test_server_mode_without_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="RAG_STORE__QDRANT_URL"):
        store_for(settings("server"), 8, "m")


def test_unreachable_server_is_a_store_error_that_says_what_to_check() -> None:
    with pytest.raises(StoreError, match="cannot reach Qdrant at http://127.0.0.1:9.*server up"):
        store_for(settings("server", qdrant_url="http://127.0.0.1:9"), 8, "m")


_SECOND_PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    from rag.config import Settings
    from rag.errors import StoreError
    from tests.fakes import store_for
    try:
        store = store_for(Settings(store={{"backend": "qdrant", "qdrant_mode": {mode!r}}}), 8, "m")
        print(json.dumps({{"opened": True, "count": store.count()}}))
    except StoreError as e:
        print(json.dumps({{"opened": False, "error": str(e)}}))
    """
)


@pytest.mark.parametrize("mode", ["embedded", "local"])
def test_a_second_process_gets_a_clear_error_while_the_folder_is_open(mode: str) -> None:
    """In-process engines lock their folder; a second process (say `rag search` during `rag ingest`) is told why."""
    store = store_for(settings(mode), 8, "m")
    store.upsert([chunk(1)], unit(1, 8))
    code = _SECOND_PROCESS.format(root=str(ROOT), mode=mode)
    run = lambda: json.loads(  # noqa: E731
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True,
                       timeout=120).stdout.strip().splitlines()[-1]
    )
    busy = run()
    assert busy["opened"] is False
    assert "another process" in busy["error"] and "RAG_STORE__QDRANT_MODE=server" in busy["error"]
    store.close()
    free = run()  # once the first process closed it, the next one opens it and sees the data
    assert free == {"opened": True, "count": 1}


def test_embedded_creates_payload_indexes_on_the_filter_fields() -> None:
    store = store_for(settings("embedded"), 8, "m")
    assert isinstance(store, QdrantEdgeStore)
    assert store.info()["payload_indexes"] == 4  # source, file_type, page, groups (HNSW: test_store_contract.py)
    store.close()


def test_local_mode_records_the_model_in_collection_metadata() -> None:
    s = settings("local")
    store = store_for(s, 8, "my-model")
    assert isinstance(store, QdrantClientStore)
    meta = store._client.get_collection(s.collection).config.metadata
    assert meta["embedding_model"] == "my-model" and meta["dim"] == 8
    store.close()


QUESTIONS = [
    "How many atomic clocks are averaged to produce International Atomic Time?",
    "How many termites can an aardwolf eat in a single night?",
    "After how long without contact does an LPPL work become unmaintained?",
    "How do I plot a function in Octave?",
    "leap seconds and UTC",
]


def _rag(args: list[str], backend: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(data_dir), "RAG_STORE__BACKEND": backend,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", "from rag.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_rag_ingest_then_search_gives_the_same_top_sources_with_qdrant_as_with_faiss(tmp_path: Path) -> None:
    """The acceptance check: `RAG_STORE__BACKEND=qdrant rag ingest DIR && rag search Q` == the same with faiss.

    Ingestion and retrieval run in-process with one embedder (the CLI around them is tested in tests/ingest and
    tests/rag/test_pipeline.py); one real `rag search` subprocess with RAG_STORE__BACKEND=qdrant closes the loop.
    """
    from ingest.pipeline import ingest_paths
    from rag.wiring import Wiring

    samples = ROOT / "docs" / "samples"
    if not samples.is_dir():
        pytest.skip("docs/samples is not there")
    folder = tmp_path / "docs"  # the sample documents, without the file that lists these very questions
    shutil.copytree(samples, folder, ignore=shutil.ignore_patterns("questions.txt"))
    embedder = Wiring(Settings()).embedder()
    top: dict[str, list[list[tuple[str, int | None]]]] = {}
    for backend in ("faiss", "qdrant"):
        s = Settings(data_dir=tmp_path / backend, store={"backend": backend})
        assert ingest_paths([folder], s, embedder=embedder).chunks_added > 10
        wiring = Wiring(s, embedder=embedder)
        pipeline = wiring.pipeline()
        top[backend] = [
            [(Path(h.chunk.source).name, h.chunk.page) for h in pipeline.retrieve(q, k=3, mode=mode)]
            for mode in ("dense", "hybrid")
            for q in QUESTIONS
        ]
        wiring.close()
    assert (tmp_path / "qdrant" / "collections" / "default" / "qdrant_edge").is_dir()  # qdrant really ran
    assert top["qdrant"] == top["faiss"]
    assert top["faiss"][0][0][0] == "International_Atomic_Time.md"  # and they are the right documents
    assert top["faiss"][1][0][0] == "Aardwolf.txt"
    found = _rag(["search", QUESTIONS[1], "--json", "--k", "3"], "qdrant", tmp_path / "qdrant")
    assert found.returncode == 0, found.stderr
    hits = [(Path(h["source"]).name, h["page"]) for h in json.loads(found.stdout)["hits"]]
    assert hits == top["qdrant"][len(QUESTIONS) + 1]  # the CLI's default mode is hybrid
