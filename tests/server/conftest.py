"""A real ``rag serve`` on loopback (uvicorn in a thread, a free port) over real stores, with fakes only at our seams:
the bag-of-words embedder and an LLM that answers by quoting its sources (so anything that reaches a prompt shows up
in the reply: the leak tests rely on it)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rag.config import Settings
from rag.identity import IdentityStore
from rag.types import Completion, Message

SECRET = "quokka-7731-lavender"  # appears only in the hr document
SECRET_FILE = "salaries_2025.md"


class QuotingLLM:
    """Answers "From the sources: <each source's first words> [n] ..." for every source in the prompt."""

    model = "quoting-fake"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def _reply(self, messages: Sequence[Message]) -> str:
        prompt = messages[-1].content
        self.prompts.append(prompt)
        if "Rewrite the user's last question" in messages[0].content:  # the follow-up rewrite
            return prompt.strip().splitlines()[-1].removeprefix("Question:").strip()
        blocks = re.findall(r"\[(\d+)\][^\n]*\n<<<\n(.*?)\n>>>", prompt, flags=re.S)
        if not blocks:
            return "I don't know: the documents do not contain the answer."
        return " ".join(f"{' '.join(text.split()[:12])} [{n}]." for n, text in blocks)

    def complete(self, messages: Sequence[Message], **kwargs: Any) -> list[Completion]:
        return [Completion(text=self._reply(messages), finish_reason="stop")]

    def stream(self, messages: Sequence[Message], **kwargs: Any) -> Iterator[str]:
        text = self._reply(messages)
        for i in range(0, len(text), 7):
            yield text[i : i + 7]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    url: str
    app: Any
    keys: dict[str, str]
    settings: Settings
    llm: QuotingLLM

    def client(self, who: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def wait_job(self, job: dict[str, Any], who: str = "admin") -> dict[str, Any]:
        with self.client(who) as c:
            for _ in range(600):
                state = c.get(f"/v1/jobs/{job['id']}").json()
                if state["state"] in ("succeeded", "failed"):
                    return state
                time.sleep(0.05)
        raise AssertionError(f"job {job['id']} did not finish")


def start_server(app: Any) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


def make_users(ids: IdentityStore) -> dict[str, str]:
    """admin; alice (reader, hr); bob (reader, no group); eve (editor, no group); carol (reader of 'other' only)."""
    ids.add_user("admin", "admin-password-1", role="admin")
    ids.add_user("alice", "alice-password-1", role="reader", groups=["hr"])
    ids.add_user("bob", "bob-password-12", role="reader")
    ids.add_user("eve", "eve-password-12", role="editor", groups=["sales"])
    ids.add_user("carol", "carol-password1", role="reader")
    for user, level in (("alice", "reader"), ("bob", "reader"), ("eve", "editor")):
        ids.grant(user, "team", level)
    ids.grant("carol", "other", "reader")
    return {u: ids.create_key(u, "test").secret for u in ("admin", "alice", "bob", "eve", "carol")}


def write_docs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    docs = {
        "handbook": folder / "handbook.md",
        "lunch": folder / "lunch.txt",
        "secret": folder / SECRET_FILE,
    }
    docs["handbook"].write_text("# Staff handbook\n\nThe office opens at nine. Salaries are paid on the 25th of each "
                                "month. Questions about salary go to the HR team.\n")
    docs["lunch"].write_text("Lunch is served at noon in the canteen on the ground floor.\n")
    docs["secret"].write_text(f"# Salaries 2025\n\nThe salary of the chief engineer is 180,000 euros. The salary "
                              f"review code word is {SECRET}. Salary bands are confidential.\n")
    return docs


def serve(tmp_path: Path, backend: str, fake_embedder: Any, *, auth: bool = True) -> Iterator[Running]:
    from server.app import create_app
    from server.parts import Parts

    store: dict[str, Any] = {"backend": backend}
    if backend == "faiss":
        store["use_gpu"] = "never"
    settings = Settings(data_dir=tmp_path / "data", store=store, retrieval={"k": 4, "min_dense_score": -1},
                        ingest={"allowed_roots": [str(tmp_path / "allowed")]})  # fmt: skip
    llm = QuotingLLM()
    ids = IdentityStore(settings.identity_path)
    keys = make_users(ids) if auth else {}
    app = create_app(settings, auth=auth, parts=Parts(settings, embedder=fake_embedder, llm=llm), identity=ids)
    url, server, thread = start_server(app)
    try:
        yield Running(url, app, keys, settings, llm)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the test server must stop"


def upload(running: Running, who: str, collection: str, files: dict[str, Path], groups: str = "") -> httpx.Response:
    with running.client(who) as c:
        return c.post(
            f"/v1/collections/{collection}/documents",
            files=[("files", (name, path.read_bytes(), "text/plain")) for name, path in files.items()],
            data={"groups": groups},
        )


def seed(running: Running, docs: dict[str, Path]) -> None:
    """As admin: the public files, then the secret one labelled hr, into 'team' (through the API, as users do)."""
    r = upload(running, "admin", "team", {p.name: p for k, p in docs.items() if k != "secret"})
    assert r.status_code == 202, r.text
    assert running.wait_job(r.json()["job"])["state"] == "succeeded"
    r = upload(running, "admin", "team", {SECRET_FILE: docs["secret"]}, groups="hr")
    assert r.status_code == 202, r.text
    assert running.wait_job(r.json()["job"])["summary"]["new"] == 1
