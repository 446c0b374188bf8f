"""``rag users``, ``rag keys`` and ``rag serve`` as a shell user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rag.cli import app
from tests.server.conftest import free_port


def test_users_and_keys_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("RAG_NEW_PASSWORD", "a long enough password")
    r = runner.invoke(app, ["users", "add", "alice", "--role", "editor", "--groups", "hr", "--collections", "papers"])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["users", "grant", "@hr", "contracts", "--as", "reader"]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["users", "list", "--json"]).output)
    assert listed == [{"name": "alice", "role": "editor", "groups": ["hr"], "grants": {"papers": "editor"},
                       "disabled": False, "password": True}]  # fmt: skip
    created = runner.invoke(app, ["keys", "create", "alice", "--name", "ci"])
    assert created.exit_code == 0
    secret = created.stdout.strip().splitlines()[0]
    assert secret.startswith("rag_")
    listing = runner.invoke(app, ["keys", "list"]).output
    assert "alice" in listing and "ci" in listing and secret not in listing
    key_id = secret.split("_")[1]
    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 0
    assert "REVOKED" in runner.invoke(app, ["keys", "list", "alice"]).output
    bad = runner.invoke(app, ["users", "add", "bob", "--role", "boss"])
    assert bad.exit_code == 1 and "unknown role" in bad.output
    assert runner.invoke(app, ["users", "set", "alice", "--role", "reader", "--disable"]).exit_code == 0
    assert "disabled" in runner.invoke(app, ["users", "list"]).output


def _rag(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, **env, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-m", "rag.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def test_rag_serve_runs_and_refuses_an_open_network_port_without_users(tmp_path: Path) -> None:
    env = {"RAG_DATA_DIR": str(tmp_path / "data"), "RAG_AUTH__INITIAL_ADMIN_PASSWORD": ""}
    refused = _rag("serve", "--host", "0.0.0.0", "--port", str(free_port()), env=env)
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 2 and "there is no user" in out
    port = free_port()
    proc = _rag("serve", "--port", str(port), env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        assert r.json() == {"status": "ok", "auth": False}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").json() == {"object": "list", "data": []}
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "sign-in is off" in out and "GET /v1/models 200" in out


def test_initial_admin_from_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.config import Settings
    from rag.identity import IdentityStore, ensure_initial_admin

    secret = tmp_path / "admin_password"
    secret.write_text("from-a-docker-secret\n")
    monkeypatch.setenv("RAG_AUTH__INITIAL_ADMIN_PASSWORD_FILE", str(secret))
    settings = Settings()
    assert ensure_initial_admin(settings) is True
    assert ensure_initial_admin(settings) is False  # only on an empty database
    assert IdentityStore(settings.identity_path).authenticate("admin", "from-a-docker-secret").is_admin


def test_the_cli_is_the_operator_unless_told_to_see_as_a_user(tmp_path: Path, fake_embedder: object) -> None:
    from ingest.pipeline import ingest_paths
    from rag.config import Settings
    from rag.identity import IdentityStore
    from rag.wiring import overriding
    from tests.server.conftest import SECRET_FILE, write_docs

    docs = write_docs(tmp_path / "docs")
    settings = Settings()
    ingest_paths([docs["handbook"], docs["lunch"]], settings, embedder=fake_embedder)  # type: ignore[arg-type]
    ingest_paths([docs["secret"]], settings, embedder=fake_embedder, groups=["hr"])  # type: ignore[arg-type]
    ids = IdentityStore(settings.identity_path)
    ids.add_user("bob", None)
    ids.grant("bob", "default", "reader")
    ids.add_user("carol", None)
    runner = CliRunner()
    with overriding(embedder=fake_embedder):
        operator = runner.invoke(app, ["search", "salary of the chief engineer", "--json", "-k", "10"])
        query = ["search", "salary of the chief engineer", "--json", "-k", "10"]
        as_bob = runner.invoke(app, [*query, "--as-user", "bob"])
        as_carol = runner.invoke(app, ["search", "salary", "--as-user", "carol"])
    assert any(h["source"].endswith(SECRET_FILE) for h in json.loads(operator.stdout)["hits"])
    hits = json.loads(as_bob.stdout)["hits"]
    assert hits and not any(h["source"].endswith(SECRET_FILE) for h in hits)
    assert as_carol.exit_code == 1 and "may not read" in as_carol.output
