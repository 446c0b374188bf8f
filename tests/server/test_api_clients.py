"""The API as other programs meet it: the official ``openai`` client and LangChain's ``ChatOpenAI`` against a real
``rag serve`` on loopback (FAISS on disk, the fake embedder and a quoting fake LLM at our seams)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import SECRET_FILE, Running, seed, serve, write_docs

QUESTION = "When is lunch served in the canteen?"


@pytest.fixture
def running(tmp_path: Path, fake_embedder: Any) -> Iterator[Running]:
    yield from serve(tmp_path, "faiss", fake_embedder)


@pytest.fixture
def seeded(running: Running, tmp_path: Path) -> Running:
    seed(running, write_docs(tmp_path / "docs"))
    return running


def _client(running: Running, who: str | None, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{running.url}/v1", api_key=key or (running.keys[who] if who else "x"),
                         max_retries=0)  # fmt: skip


def test_openai_client_chat_carries_citations_and_sources(seeded: Running) -> None:
    client = _client(seeded, "bob")
    reply = client.chat.completions.create(model="team", messages=[{"role": "user", "content": QUESTION}])
    assert reply.object == "chat.completion" and reply.model == "team"
    text = reply.choices[0].message.content or ""
    assert "[1]" in text and reply.choices[0].finish_reason == "stop"
    sources = reply.model_extra["sources"]  # type: ignore[index]
    assert sources and sources[0]["file"] == "lunch.txt"
    # citation verification rides along: the checked text and each sentence's supporting sources
    sentences = reply.model_extra["sentences"]  # type: ignore[index]
    assert sentences and any(s["supported"] and 1 in s["citations"] for s in sentences)
    assert "noon" in reply.model_extra["verified_answer"]  # type: ignore[index]
    first = sources[0]
    assert set(first) >= {"n", "cited", "source", "file", "page", "chunk_id", "score", "text"}
    assert first["n"] == 1 and first["cited"] is True and "noon" in first["text"]
    assert first["source"].endswith("/lunch.txt") and isinstance(first["score"], float)
    # the [n] in the text are the sources' numbers; the quoting model cites every source it was given
    assert all(s["cited"] for s in sources) and all(f"[{s['n']}]" in text for s in sources)
    assert reply.usage is not None and reply.usage.total_tokens > 0
    # the same hits as /v1/search (the schema of `rag search --json`)
    with seeded.client("bob") as c:
        hits = c.post("/v1/search", json={"collection": "team", "query": QUESTION, "k": 4}).json()["hits"]
    assert [h["chunk_id"] for h in hits] == [s["chunk_id"] for s in sources]
    assert set(hits[0]) == {"source", "page", "section", "ocr", "ocr_confidence", "chunk_id", "score", "text"}


def test_openai_client_streaming_sends_chunks_then_sources_before_done(seeded: Running) -> None:
    client = _client(seeded, "bob")
    whole = client.chat.completions.create(model="team", messages=[{"role": "user", "content": QUESTION}])
    chunks = list(client.chat.completions.create(
        model="team", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    assert all(c.object == "chat.completion.chunk" and c.model == "team" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # really streamed
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(final) == 1
    assert final[0].model_extra["sources"] == whole.model_extra["sources"]  # type: ignore[index]
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_follow_up_uses_the_history(seeded: Running) -> None:
    client = _client(seeded, "bob")
    reply = client.chat.completions.create(model="team", messages=[
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "When does the office open?"},
        {"role": "assistant", "content": "The office opens at nine [1]."},
        {"role": "user", "content": [{"type": "text", "text": "And when is lunch served in the canteen?"}]},
    ])  # fmt: skip
    assert reply.model_extra["standalone_question"]  # type: ignore[index]
    assert reply.model_extra["sources"][0]["file"] == "lunch.txt"  # type: ignore[index]


def test_langchain_chat_openai_invoke_and_stream(seeded: Running) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{seeded.url}/v1", api_key=seeded.keys["bob"], model="team", max_retries=0)  # type: ignore[arg-type]
    reply = llm.invoke(QUESTION)
    assert "[1]" in str(reply.content) and "noon" in str(reply.content)
    streamed = "".join(str(part.content) for part in llm.stream(QUESTION))
    assert streamed == reply.content


def test_models_lists_the_collections_the_caller_may_read(seeded: Running) -> None:
    assert [m.id for m in _client(seeded, "bob").models.list()] == ["team"]
    assert [m.id for m in _client(seeded, "carol").models.list()] == []  # 'other' does not exist yet
    assert _client(seeded, "bob").models.retrieve("team").id == "team"


def test_errors_have_openai_shape_and_classes(seeded: Running) -> None:
    msgs = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.AuthenticationError) as no_key:
        _client(seeded, None, key="rag_nothing_here").chat.completions.create(model="team", messages=msgs)  # type: ignore[arg-type]
    assert no_key.value.status_code == 401 and no_key.value.code == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError) as forbidden:
        _client(seeded, "carol").chat.completions.create(model="team", messages=msgs)  # type: ignore[arg-type]
    assert forbidden.value.code == "permission_denied" and forbidden.value.type == "permission_error"
    with pytest.raises(openai.NotFoundError) as missing:
        _client(seeded, "admin").chat.completions.create(model="nope", messages=msgs)  # type: ignore[arg-type]
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        _client(seeded, "bob").chat.completions.create(model="team", messages=[])
    assert bad.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    # a collection the caller may not read is 403 whether or not it exists: no existence oracle
    with pytest.raises(openai.PermissionDeniedError):
        _client(seeded, "carol").chat.completions.create(model="no-such-collection", messages=msgs)  # type: ignore[arg-type]
    with httpx.Client(base_url=seeded.url) as c:
        r = c.post("/v1/chat/completions", json={"model": "team", "messages": msgs})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert c.get("/v1/nowhere").json()["error"]["type"] == "invalid_request_error"


def test_request_ids_size_limits_health_metrics_and_docs(seeded: Running) -> None:
    with seeded.client("bob") as c:
        r = c.get("/v1/models", headers={"X-Request-ID": "trace-42"})
        assert r.headers["x-request-id"] == "trace-42"
        assert len(c.get("/v1/models").headers["x-request-id"]) == 32  # made up when none is sent
        assert c.get("/v1/models", headers={"X-Request-ID": "bad id <x>"}).headers["x-request-id"] != "bad id <x>"
        huge = {"model": "team", "messages": [{"role": "user", "content": "x" * (600 * 1024)}]}
        r = c.post("/v1/chat/completions", json=huge)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert c.get("/healthz").json()["status"] == "ok"
        metrics = c.get("/metrics").text
        assert 'rag_http_requests_total{method="GET",route="/v1/models",status="200"}' in metrics
        assert "rag_http_request_seconds_bucket" in metrics and "rag_ingest_files_total" in metrics
        assert 'rag_ingest_jobs_total{state="succeeded"} 2.0' in metrics
        assert c.get("/docs").status_code == 200
        assert "/v1/chat/completions" in c.get("/openapi.json").json()["paths"]


def test_upload_job_lists_and_deletes_documents(seeded: Running, tmp_path: Path) -> None:
    from tests.server.conftest import upload

    note = tmp_path / "evil.md"
    note.write_text("# Parking\n\nParking spaces are on level minus two.\n")
    r = upload(seeded, "eve", "team", {"../../evil.md": note, "run.sh": note})
    assert r.status_code == 202, r.text
    assert r.json()["saved"] == ["evil.md"] and r.json()["rejected"][0]["file"] == "run.sh"
    job = seeded.wait_job(r.json()["job"], "eve")
    assert job["state"] == "succeeded" and job["summary"]["new"] == 1 and job["files_done"] == 1
    saved = Path(seeded.settings.data_dir) / "uploads" / "team" / "eve" / "evil.md"
    assert saved.is_file()  # ../../ stayed inside the uploader's folder
    with seeded.client("eve") as c:
        docs = c.get("/v1/collections/team/documents").json()["data"]
        assert {d["file"] for d in docs} == {"handbook.md", "lunch.txt", "evil.md"}  # not the hr file
        evil = next(d for d in docs if d["file"] == "evil.md")
        assert c.delete(f"/v1/collections/team/documents/{evil['id']}").json()["deleted"] is True
        assert not saved.exists()
        hits = c.post("/v1/search", json={"collection": "team", "query": "parking level"}).json()["hits"]
        assert all("Parking" not in h["text"] for h in hits)
    with seeded.client("bob") as c:  # someone else's job looks like none
        assert c.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_auth_off_serves_the_local_operator(tmp_path: Path, fake_embedder: Any) -> None:
    for running in serve(tmp_path, "memory", fake_embedder, auth=False):
        docs = write_docs(tmp_path / "docs")
        from tests.server.conftest import upload

        r = upload(running, None, "mine", {p.name: p for p in docs.values()}, groups="hr")  # type: ignore[arg-type]
        assert r.status_code == 202, r.text
        assert running.wait_job(r.json()["job"], None)["state"] == "succeeded"  # type: ignore[arg-type]
        with httpx.Client(base_url=running.url) as c:
            assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["mine"]
            files = {d["file"] for d in c.get("/v1/collections/mine/documents").json()["data"]}
            assert SECRET_FILE in files  # the operator sees everything: the explicit local bypass


def test_a_collection_name_that_cannot_exist_is_refused_before_any_file_is_written(seeded: Running,
                                                                                  tmp_path: Path) -> None:  # fmt: skip
    from tests.server.conftest import upload

    note = tmp_path / "n.md"
    note.write_text("# N\n\nA note.\n")
    for name in ("..", ".hidden", "a%20b"):
        r = upload(seeded, "admin", name, {"n.md": note})
        assert r.status_code == 404, (name, r.text)
    data = Path(seeded.settings.data_dir)
    assert not list(data.rglob("n.md"))


def test_a_bug_becomes_an_openai_shaped_500_with_the_request_id(seeded: Running, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:  # fmt: skip
    def boom(collection: str) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(seeded.app.state.parts, "pipeline", boom)
    with seeded.client("bob") as c:
        r = c.post("/v1/search", json={"collection": "team", "query": "lunch"}, headers={"X-Request-ID": "bug-1"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "bug-1"
    assert r.json()["error"]["type"] == "server_error" and "bug-1" in r.json()["error"]["message"]
    assert "secret internals" not in r.text
