"""Who may do what through the API (the access matrix), and the leak test: a unique phrase in a document of group
``hr`` never reaches a user outside the group, through any route, on every store backend.

The fake LLM quotes every source it is given, so a forbidden chunk that reached a prompt would show in the reply:
the leak test looks at the prompts themselves too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.server.conftest import SECRET, SECRET_FILE, Running, seed, serve, upload, write_docs

BACKENDS = ["faiss", "qdrant", "memory"]  # qdrant: the embedded engine (qdrant-edge-py)
PROBES = [  # questions that would surface the secret document first if access were not enforced
    f"What is the salary review code word {SECRET}?",
    "salary of the chief engineer salary bands",
    "Salaries 2025",
]


@pytest.fixture(params=BACKENDS)
def seeded(request: pytest.FixtureRequest, tmp_path: Path, fake_embedder: Any) -> Iterator[Running]:
    if request.param == "qdrant":
        pytest.importorskip("qdrant_edge")
    for running in serve(tmp_path, request.param, fake_embedder):
        seed(running, write_docs(tmp_path / "docs"))
        yield running


def _leaks(text: str) -> bool:
    return SECRET in text or SECRET_FILE in text or "180,000" in text


def test_a_user_outside_the_group_never_sees_the_document(seeded: Running) -> None:
    for outsider in ("bob", "eve"):  # a reader and an editor, neither in hr
        oa = openai.OpenAI(base_url=f"{seeded.url}/v1", api_key=seeded.keys[outsider], max_retries=0)
        with seeded.client(outsider) as c:
            for q in PROBES:
                search = c.post("/v1/search", json={"collection": "team", "query": q, "k": 10, "explain": True})
                assert search.status_code == 200 and search.json()["hits"], search.text
                assert not _leaks(search.text)
                for mode in ("dense", "bm25", "hybrid"):
                    r = c.post("/v1/search", json={"collection": "team", "query": q, "k": 10, "mode": mode})
                    assert not _leaks(r.text), mode
                # a filter naming the secret file, or trying to widen the groups, gets nothing more
                named = c.post("/v1/search", json={"collection": "team", "query": q, "filters": {
                    "source": [str(Path(seeded.settings.data_dir) / "uploads/team/admin" / SECRET_FILE)]}})
                assert named.json()["hits"] == []
                widened = c.post("/v1/search", json={"collection": "team", "query": q, "filters": {"groups": ["hr"]}})
                assert widened.status_code == 400
                before = len(seeded.llm.prompts)
                reply = oa.chat.completions.create(model="team", messages=[{"role": "user", "content": q}])
                assert not _leaks(reply.model_dump_json())
                stream = oa.chat.completions.create(model="team", messages=[{"role": "user", "content": q}],
                                                    stream=True)  # fmt: skip
                assert not _leaks("".join(chunk.model_dump_json() for chunk in stream))
                raw = c.post("/v1/chat/completions", json={"model": "team", "stream": True,
                                                          "messages": [{"role": "user", "content": q}]})  # fmt: skip
                assert raw.status_code == 200 and "data: [DONE]" in raw.text and not _leaks(raw.text)
                sources = [p.rsplit("Question:", 1)[0] for p in seeded.llm.prompts[before:]]  # not the question
                assert sources and not any(_leaks(s) for s in sources), "a forbidden chunk reached a prompt"
            assert not _leaks(c.get("/v1/models").text)
            docs = c.get("/v1/collections/team/documents")
            assert docs.status_code == 200 and not _leaks(docs.text)
            assert {d["file"] for d in docs.json()["data"]} == {"handbook.md", "lunch.txt"}


def test_a_member_of_the_group_does_see_it(seeded: Running) -> None:
    """The positive control: the same probes find the document for alice (hr), so the test above can fail."""
    oa = openai.OpenAI(base_url=f"{seeded.url}/v1", api_key=seeded.keys["alice"], max_retries=0)
    with seeded.client("alice") as c:
        hits = c.post("/v1/search", json={"collection": "team", "query": PROBES[0]}).json()["hits"]
        assert hits[0]["source"].endswith(SECRET_FILE) and SECRET in hits[0]["text"]
        files = {d["file"]: d["groups"] for d in c.get("/v1/collections/team/documents").json()["data"]}
        assert files[SECRET_FILE] == ["hr"]
    reply = oa.chat.completions.create(model="team", messages=[{"role": "user", "content": PROBES[0]}])
    assert "180,000" in (reply.choices[0].message.content or "")  # the quoting model read the hr document
    assert reply.model_extra["sources"][0]["file"] == SECRET_FILE  # type: ignore[index]


def test_an_outsider_cannot_delete_or_overwrite_the_document(seeded: Running, tmp_path: Path) -> None:
    with seeded.client("admin") as c:
        secret = next(d for d in c.get("/v1/collections/team/documents").json()["data"] if d["file"] == SECRET_FILE)
    with seeded.client("eve") as c:  # an editor outside hr: the document does not exist for her
        r = c.delete(f"/v1/collections/team/documents/{secret['id']}")
        assert r.status_code == 404 and not _leaks(r.text)
    fake = tmp_path / SECRET_FILE
    fake.write_text("nothing to see here\n")
    r = upload(seeded, "eve", "team", {SECRET_FILE: fake})  # same name: lands in eve's own upload folder
    assert seeded.wait_job(r.json()["job"], "eve")["state"] == "succeeded"
    with seeded.client("alice") as c:
        hits = c.post("/v1/search", json={"collection": "team", "query": PROBES[0]}).json()["hits"]
        assert any(SECRET in h["text"] for h in hits), "the hr document must still be there"


# --------------------------------------------------------------------------------------------- access matrix
MATRIX = [  # (who, method, path, body, expected status)
    (None, "GET", "/v1/models", None, 401),
    ("bob", "GET", "/v1/models", None, 200),
    ("carol", "POST", "/v1/search", {"collection": "team", "query": "lunch"}, 403),
    ("carol", "GET", "/v1/collections/team/documents", None, 403),
    ("bob", "POST", "/v1/search", {"collection": "team", "query": "lunch"}, 200),
    ("bob", "UPLOAD", "/v1/collections/team/documents", None, 403),  # a reader cannot upload
    ("eve", "UPLOAD", "/v1/collections/team/documents", None, 202),
    ("eve", "UPLOAD", "/v1/collections/other/documents", None, 403),  # no grant there
    ("eve", "POST", "/v1/collections/team/folders", {"path": "/etc"}, 403),  # server folders: admins only
    ("admin", "POST", "/v1/collections/team/folders", {"path": "/etc"}, 403),  # ... and below allowed roots
    ("eve", "GET", "/v1/admin/users", None, 403),  # an editor cannot manage users or keys
    ("eve", "POST", "/v1/admin/keys", {"user": "eve"}, 403),
    ("eve", "DELETE", "/v1/admin/keys/anything", None, 403),
    ("admin", "GET", "/v1/admin/users", None, 200),
    ("admin", "POST", "/v1/admin/keys", {"user": "bob", "name": "ci"}, 201),
]


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One server for the whole matrix (the cases that write do not change what the others may do)."""
    from tests.fakes import FakeEmbedder

    tmp = tmp_path_factory.mktemp("matrix")
    for running in serve(tmp, "memory", FakeEmbedder()):
        seed(running, write_docs(tmp / "docs"))
        yield running


@pytest.mark.parametrize("case", MATRIX, ids=[f"{w}-{m}-{p}" for w, m, p, _, _ in MATRIX])
def test_access_matrix(case: tuple[Any, ...], matrix_server: Running, tmp_path: Path) -> None:
    who, method, path, body, expected = case
    with matrix_server.client(who) as c:
        if method == "UPLOAD":
            note = tmp_path / "note.md"
            note.write_text("# Note\n\nA note.\n")
            r = c.post(path, files=[("files", ("note.md", note.read_bytes(), "text/markdown"))])
        else:
            r = c.request(method, path, json=body)
    assert r.status_code == expected, r.text
    if expected >= 400:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_admin_folder_indexing_below_an_allowed_root_and_key_lifecycle(tmp_path: Path, fake_embedder: Any) -> None:
    for running in serve(tmp_path, "memory", fake_embedder):
        allowed = tmp_path / "allowed" / "policies"
        allowed.mkdir(parents=True)
        (allowed / "travel.md").write_text("# Travel\n\nTrain tickets are refunded within 30 days.\n")
        (tmp_path / "allowed" / "escape").symlink_to(tmp_path / "docs", target_is_directory=True)
        write_docs(tmp_path / "docs")
        with running.client("admin") as c:
            r = c.post("/v1/collections/policies/folders", json={"path": str(allowed), "groups": "staff"})
            assert r.status_code == 202, r.text
            assert running.wait_job(r.json()["job"])["summary"]["new"] == 1
            # a symlink inside the root that points outside it is refused (the path is resolved first)
            r = c.post("/v1/collections/policies/folders", json={"path": str(tmp_path / "allowed" / "escape")})
            assert r.status_code == 403
            r = c.post("/v1/collections/policies/folders", json={"path": str(allowed / ".." / ".." / "docs")})
            assert r.status_code == 403
            key = c.post("/v1/admin/keys", json={"user": "bob"}).json()
        with running.client(None) as anon:
            headers = {"Authorization": f"Bearer {key['key']}"}
            assert anon.get("/v1/models", headers=headers).status_code == 200
            with running.client("admin") as c:
                assert c.delete(f"/v1/admin/keys/{key['id']}").status_code == 200
            assert anon.get("/v1/models", headers=headers).status_code == 401
            metrics = anon.get("/metrics").text
            assert "rag_auth_failures_total 1.0" in metrics
            assert json.dumps(SECRET) not in metrics
