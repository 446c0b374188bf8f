"""The web app with sign-in on (``RAG_AUTH__MODE=on``), driven headless by ``AppTest`` over a real FAISS collection:
the sign-in form, collections and documents limited to the user's, a reader without upload, folders only for
admins below the allowed roots, and the leak test: a user outside ``hr`` never sees the hr document's phrase or
file name, in the document list or in a chat answer and its sources. Fakes only at our seams (embedder, LLM)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rag.config import Settings
from rag.identity import IdentityStore
from tests.server.conftest import SECRET, SECRET_FILE, QuotingLLM, write_docs
from tests.ui.test_ui_app import finish_jobs, texts

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
PASSWORDS = {"admin": "admin-password-1", "alice": "alice-password-1", "bob": "bob-password-12",
             "eve": "eve-password-12"}  # fmt: skip


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_embedder: Any, _isolated_data_dir: Path
          ) -> Iterator[dict[str, Any]]:  # fmt: skip
    from ingest.pipeline import ingest_paths
    from rag.wiring import Wiring
    from ui import services

    allowed = tmp_path / "allowed"
    (allowed / "policies").mkdir(parents=True)
    (allowed / "policies" / "travel.md").write_text("# Travel\n\nTrain tickets are refunded within 30 days.\n")
    monkeypatch.setenv("RAG_AUTH__MODE", "on")
    monkeypatch.setenv("RAG_COLLECTION", "team")
    monkeypatch.setenv("RAG_RETRIEVAL__MIN_DENSE_SCORE", "-1")
    monkeypatch.setenv("RAG_INGEST__ALLOWED_ROOTS", str(allowed))
    settings = Settings()
    docs = write_docs(tmp_path / "docs")
    ingest_paths([docs["handbook"], docs["lunch"]], settings, embedder=fake_embedder)
    ingest_paths([docs["secret"]], settings, embedder=fake_embedder, groups=["hr"])
    ingest_paths([docs["lunch"]], settings.model_copy(update={"collection": "other"}), embedder=fake_embedder)
    ids = IdentityStore(settings.identity_path)
    ids.add_user("admin", PASSWORDS["admin"], role="admin")
    ids.add_user("alice", PASSWORDS["alice"], groups=["hr"])
    ids.add_user("bob", PASSWORDS["bob"])
    ids.add_user("eve", PASSWORDS["eve"], role="editor")
    for user, level in (("alice", "reader"), ("bob", "reader"), ("eve", "editor")):
        ids.grant(user, "team", level)
    quoting = QuotingLLM()
    monkeypatch.setattr(services, "make_embedder", lambda s: fake_embedder)
    monkeypatch.setattr(services, "make_pipeline",
                        lambda s, embedder, llm=None: Wiring(s, embedder=fake_embedder, llm=quoting).pipeline())
    st.cache_resource.clear()
    yield {"settings": settings, "llm": quoting, "allowed": allowed}
    st.cache_resource.clear()


def sign_in(user: str, password: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    at.text_input[0].set_value(user)
    at.text_input[1].set_value(password or PASSWORDS[user])
    at.button(key="FormSubmitter:sign-in-Sign in").click().run()
    assert not at.exception, at.exception
    return at


def _leaks(page: str) -> bool:
    return SECRET in page or SECRET_FILE in page or "180,000" in page


def test_nothing_but_the_sign_in_form_without_a_password(world: dict[str, Any]) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert not at.tabs and not at.chat_input and not at.sidebar.selectbox  # no collection, no chat, no documents
    assert "team" not in texts(at) and "handbook" not in texts(at)
    at = sign_in("bob", "wrong-password-1")
    assert any("wrong user name or password" in e.value for e in at.error)
    assert not at.chat_input


def test_a_reader_outside_the_group_sees_only_what_is_shared(world: dict[str, Any]) -> None:
    at = sign_in("bob")
    assert at.sidebar.selectbox[0].options == ["team"]  # not 'other'
    page = texts(at)
    assert "Signed in as **bob**" in page
    listed = list(at.dataframe[0].value["document"])
    assert sorted(listed) == ["handbook.md", "lunch.txt"]
    assert not at.file_uploader and not [t for t in at.text_input if "folder" in t.label]  # a reader adds nothing
    assert not at.sidebar.expander  # nor changes the LLM endpoint
    for question in (f"What is the salary review code word {SECRET}?", "salary of the chief engineer"):
        at.chat_input[0].set_value(question).run()
        assert not at.exception, at.exception
    answers = [m for m in at.chat_message if m.name == "assistant"]
    assert len(answers) == 2
    page = texts(at).replace(f"What is the salary review code word {SECRET}?", "")  # the question bob typed
    assert "Sources (" in page and not _leaks(page)
    sources = [p.rsplit("Question:", 1)[0] for p in world["llm"].prompts if p.startswith("Sources:")]
    assert sources and not any(_leaks(s) for s in sources)


def test_a_member_of_the_group_sees_it(world: dict[str, Any]) -> None:
    at = sign_in("alice")
    assert SECRET_FILE in list(at.dataframe[0].value["document"])
    at.chat_input[0].set_value("salary of the chief engineer").run()
    assert "180,000" in texts(at)


def test_an_editor_uploads_into_her_folder_but_indexes_no_server_folder(world: dict[str, Any]) -> None:
    at = sign_in("eve")
    assert at.file_uploader and not [t for t in at.text_input if "folder" in t.label]
    at.file_uploader[0].set_value([("../../x.md", b"# Parking\n\nOn level minus two.\n", "text/markdown")])
    at.button(key="FormSubmitter:upload-Upload and index").click().run()
    assert not at.exception, at.exception
    finish_jobs(at)  # indexing runs as a background job
    data = Path(world["settings"].data_dir)
    assert (data / "uploads" / "team" / "eve" / "x.md").is_file()
    assert not (data / "x.md").exists() and not (data / "uploads" / "x.md").exists()
    assert "x.md" in list(at.dataframe[0].value["document"])


def test_an_admin_indexes_folders_only_below_the_allowed_roots(world: dict[str, Any]) -> None:
    at = sign_in("admin")
    assert set(at.sidebar.selectbox[0].options) >= {"team", "other"}
    assert SECRET_FILE in list(at.dataframe[0].value["document"])  # admins see every document
    folder = next(t for t in at.text_input if "folder" in t.label)
    folder.set_value("/etc")
    at.button(key="FormSubmitter:folder-Index folder").click().run()
    assert any("not below an allowed folder" in e.value for e in at.error)
    assert "rgb.txt" not in texts(at)
    folder = next(t for t in at.text_input if "folder" in t.label)
    folder.set_value(str(world["allowed"] / "policies"))
    at.button(key="FormSubmitter:folder-Index folder").click().run()
    assert not at.exception, at.exception
    finish_jobs(at)
    assert "travel.md" in list(at.dataframe[0].value["document"])


def test_sign_out_forgets_the_user_and_the_conversation(world: dict[str, Any]) -> None:
    at = sign_in("alice")
    at.chat_input[0].set_value("salary of the chief engineer").run()
    next(b for b in at.sidebar.button if b.label == "Sign out").click().run()
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert not at.chat_message and not _leaks(texts(at))
