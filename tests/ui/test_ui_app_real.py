"""The app with the real parts behind ``ui.services``: real ingestion (packaged MiniLM, FAISS on disk), the real
``RagPipeline`` and the real OpenAI-compatible client pointed at a port where nothing listens.

One test walks the whole way, so the embedding model loads once: an empty collection says so, uploads (one good
file, one broken PDF) get indexed with the summary naming the failure, the documents list shows chunk counts, a
question with the LLM down shows the client's message instead of a traceback, and deleting a document works.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

pytest.importorskip("ingest.pipeline")
pytest.importorskip("rag.pipeline")

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "ui" / "app.py"
CORPUS = ROOT / "evals" / "data" / "corpus"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # free once the socket closes: nothing will be listening there


def test_real_upload_index_ask_with_llm_down_and_delete(
    monkeypatch: pytest.MonkeyPatch, _isolated_data_dir: Path
) -> None:
    down = f"http://127.0.0.1:{_closed_port()}/v1"
    monkeypatch.setenv("RAG_LLM__BASE_URL", down)
    monkeypatch.setenv("RAG_LLM__MAX_RETRIES", "0")
    monkeypatch.setenv("RAG_LLM__MODEL", "any")  # skip the model-list request: the first call is the chat itself
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.run()
    assert not at.exception, at.exception
    assert any("No documents yet" in e.value for e in at.info)

    at.chat_input[0].set_value("What do aardvarks eat?").run()
    assert not at.exception, at.exception
    assert any("No documents yet" in e.value for e in at.info)

    text = (CORPUS / "Aardvark.md").read_bytes()
    at.file_uploader[0].set_value(
        [
            ("../Aardvark.md", text, "text/markdown"),
            ("scan.pdf", b"%PDF-1.4 this is not really a pdf", "application/pdf"),
        ]
    )
    at.button(key="FormSubmitter:upload-Upload and index").click().run()
    assert not at.exception, at.exception
    deadline = time.monotonic() + 240
    while at.session_state["ingest_job"] is not None:  # indexing runs as a background job; the page polls it
        assert time.monotonic() < deadline, "indexing did not finish"
        time.sleep(0.2)
        at.run()
        assert not at.exception, at.exception
    summary = " ".join(e.value for e in at.warning)
    assert "2 files" in summary and "1 new" in summary and "1 failed" in summary
    failed = at.table[0].value
    assert list(failed["file"]) == ["scan.pdf"] and failed["reason"].iloc[0]  # the reason is spelled out
    listed = at.dataframe[0].value
    assert list(listed["document"]) == ["Aardvark.md"]
    assert int(listed["chunks"].iloc[0]) > 1
    assert (_isolated_data_dir / "uploads" / "default" / "Aardvark.md").read_bytes() == text

    at.chat_input[0].set_value("What do aardvarks eat?").run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(f"cannot reach LLM at {down}" in e for e in errors), errors

    at.button(key="FormSubmitter:delete-Delete").click().run()
    assert not at.exception, at.exception
    assert any("The collection is empty" in e.value for e in at.info)
    assert not (_isolated_data_dir / "uploads" / "default" / "Aardvark.md").exists()
    st.cache_resource.clear()
