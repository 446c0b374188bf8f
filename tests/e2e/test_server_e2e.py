"""``rag serve`` end to end: the real MiniLM, FAISS, and the embedded llama.cpp LLM behind the API, asked through the
official ``openai`` client with an API key; non-streaming and streaming, sources with file and page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from rag.config import Settings
from rag.identity import IdentityStore

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
QUESTION = "At what temperature does zorbium melt?"


@pytest.fixture(scope="module")
def api(e2e_settings: Settings) -> Iterator[tuple[str, str]]:
    from server.app import create_app
    from tests.server.conftest import start_server

    ids = IdentityStore(e2e_settings.identity_path)
    if not ids.has_users():
        ids.add_user("reader", None, role="reader")
        ids.grant("reader", "e2e", "reader")
    key = ids.create_key("reader", "e2e").secret
    url, server, thread = start_server(create_app(e2e_settings, auth=True))
    try:
        yield url, key
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def _check_sources(sources: list[dict[str, Any]]) -> None:
    assert sources, "the answer must come with the sources the model was given"
    top = sources[0]
    assert top["file"] == "zorbium.pdf" and top["page"] == 2 and "1,412" in top["text"]
    assert {"n", "cited", "source", "chunk_id", "score"} <= set(top)


def test_openai_client_against_rag_serve_with_the_real_llm(api: tuple[str, str]) -> None:
    url, key = api
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=600)
    assert [m.id for m in client.models.list()] == ["e2e"]
    reply = client.chat.completions.create(model="e2e", messages=[{"role": "user", "content": QUESTION}])
    text = reply.choices[0].message.content or ""
    assert "1,412" in text or "1412" in text, text
    sources = reply.model_extra["sources"]  # type: ignore[index]
    _check_sources(sources)
    assert all(f"[{s['n']}]" in text for s in sources if s["cited"])

    stream = client.chat.completions.create(model="e2e", messages=[{"role": "user", "content": QUESTION}],
                                            stream=True)  # fmt: skip
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.strip() == text  # temperature 0: the same answer
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    _check_sources(final[-1].model_extra["sources"])  # type: ignore[index]
