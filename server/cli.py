"""``rag serve``, ``rag users ...`` and ``rag keys ...``.

    $ rag users add alice --role editor --groups hr --collections papers,contracts   # asks for a password
    $ rag users grant @finance contracts --as reader     # every member of group finance may read 'contracts'
    $ rag keys create alice --name laptop                # prints the key once
    $ rag serve --host 0.0.0.0 --port 8000               # sign-in is on off loopback; OpenAPI at /docs
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime
from typing import Annotated

import typer

from rag.config import Settings
from rag.errors import RagError

users_app = typer.Typer(help="Users, their roles, groups and collection grants (sign-in for the API and web app).",
                        no_args_is_help=True)  # fmt: skip
keys_app = typer.Typer(help="API keys (shown once when created, stored hashed).", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    from rag.config import load_settings

    return load_settings()  # a ConfigError reaches rag.cli's one error wrapper: one line, exit 2


def _identity():  # type: ignore[no-untyped-def]
    from rag.identity import IdentityStore

    try:
        return IdentityStore(_settings().identity_path)
    except RagError as e:
        raise _fail(str(e)) from None


def _password(given: str | None, prompt: bool) -> str | None:
    if given is not None:
        return given
    env = os.environ.get("RAG_NEW_PASSWORD")  # for scripts: never on the command line, where `ps` shows it
    if env:
        return env
    if not prompt:
        return None
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise _fail("the passwords differ")
    return first


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M") if t else "never"


# ----------------------------------------------------------------------------------------------------- users
@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option(help="reader (search, ask), editor (+ upload, delete), admin (+ everything)")]
    = "reader",
    groups: Annotated[str, typer.Option(help="document groups the user belongs to, e.g. hr,finance")] = "",
    collections: Annotated[str, typer.Option(help="collections to grant at the role's level ('*' = all)")] = "",
    no_password: Annotated[bool, typer.Option("--no-password", help="API keys only, no web sign-in")] = False,
) -> None:
    """Add a user (asks for the password; or set RAG_NEW_PASSWORD)."""
    ids = _identity()
    try:
        password = None if no_password else _password(None, True)
        user = ids.add_user(name, password, role=role, groups=[g for g in groups.split(",") if g.strip()])
        for c in [c.strip() for c in collections.split(",") if c.strip()]:
            ids.grant(name, c, "editor" if role != "reader" else "reader")
    except RagError as e:
        raise _fail(str(e)) from None
    typer.echo(f"added {user.name} ({user.role}; groups: {', '.join(user.groups) or 'none'})")
    if role != "admin" and not collections:
        typer.echo(f"no collection granted yet: rag users grant {name} COLLECTION --as reader")


@users_app.command("list")
def users_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every user with role, groups and grants."""
    ids = _identity()
    rows = []
    for u in ids.users():
        grants = {c: lvl for _, c, lvl in ids.grants(u.name)}
        rows.append({"name": u.name, "role": u.role, "groups": list(u.groups), "grants": grants,
                     "disabled": u.disabled, "password": u.has_password})  # fmt: skip
    if json_out:
        typer.echo(json.dumps(rows))
        return
    for r in rows:
        shown = ", ".join(f"{c}:{lvl}" for c, lvl in r["grants"].items()) or "-"
        state = " (disabled)" if r["disabled"] else ""
        typer.echo(f"{r['name']:<20} {r['role']:<7} groups: {','.join(r['groups']) or '-':<20} grants: {shown}{state}")
    for grantee, c, lvl in ids.grants():
        if grantee.startswith("@"):
            typer.echo(f"{grantee:<20} group   grants: {c}:{lvl}")


@users_app.command("set")
def users_set(
    name: str,
    role: Annotated[str | None, typer.Option(help="reader, editor or admin")] = None,
    groups: Annotated[str | None, typer.Option(help="replace the user's groups, e.g. hr,finance ('' for none)")]
    = None,
    password: Annotated[bool, typer.Option("--password", help="set a new password (asked)")] = False,
    disable: Annotated[bool | None, typer.Option("--disable/--enable", help="block or allow sign-in and keys")]
    = None,
) -> None:
    """Change a user's role, groups, password or state."""
    ids = _identity()
    try:
        user = ids.update_user(
            name, role=role, groups=None if groups is None else [g for g in groups.split(",") if g.strip()],
            password=_password(None, True) if password else None, disabled=disable,
        )  # fmt: skip
    except RagError as e:
        raise _fail(str(e)) from None
    typer.echo(f"{user.name}: {user.role}; groups: {', '.join(user.groups) or 'none'}"
               + ("; disabled" if user.disabled else ""))  # fmt: skip


@users_app.command("remove")
def users_remove(name: str) -> None:
    """Delete a user, their grants and their API keys."""
    try:
        _identity().remove_user(name)
    except RagError as e:
        raise _fail(str(e)) from None
    typer.echo(f"removed {name}")


@users_app.command("grant")
def users_grant(
    grantee: Annotated[str, typer.Argument(help="a user name, or @group for every member of a group")],
    collection: Annotated[str, typer.Argument(help="a collection name, or '*' for all")],
    level: Annotated[str, typer.Option("--as", help="reader or editor")] = "reader",
) -> None:
    """Let a user (or a group) read, or read and change, a collection."""
    try:
        _identity().grant(grantee, collection, level)
    except RagError as e:
        raise _fail(str(e)) from None
    typer.echo(f"{grantee} is {level} on {collection}")


@users_app.command("revoke")
def users_revoke(grantee: str, collection: str) -> None:
    """Take a collection grant away."""
    typer.echo("revoked" if _identity().revoke(grantee, collection) else f"{grantee} had no grant on {collection}")


# ------------------------------------------------------------------------------------------------------ keys
@keys_app.command("create")
def keys_create(user: str, name: Annotated[str, typer.Option(help="a label, e.g. the laptop or app")] = "default"
                ) -> None:  # fmt: skip
    """Create an API key for USER and print it (once: only its hash is kept)."""
    try:
        key = _identity().create_key(user, name)
    except RagError as e:
        raise _fail(str(e)) from None
    typer.echo(key.secret)
    typer.echo(f"(key {key.id} for {user}: store it now, it cannot be shown again)", err=True)


@keys_app.command("list")
def keys_list(user: Annotated[str | None, typer.Argument()] = None) -> None:
    """API keys (ids and labels, never the keys)."""
    for k in _identity().keys(user):
        typer.echo(f"{k.id}  {k.user:<20} {k.name:<16} created {_when(k.created)}  last used {_when(k.last_used)}"
                   + ("  REVOKED" if k.revoked else ""))  # fmt: skip


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (from `rag keys list`); it stops working at once."""
    if not _identity().revoke_key(key_id):
        raise _fail(f"no active key {key_id!r}")
    typer.echo(f"revoked {key_id}")


# ----------------------------------------------------------------------------------------------------- serve
def serve_command(
    host: Annotated[str | None, typer.Option(help="address to bind (default: settings.server.host, 127.0.0.1)")]
    = None,
    port: Annotated[int | None, typer.Option(help="port (default: settings.server.port, 8000)")] = None,
) -> None:
    """Run the HTTP API: OpenAI-compatible chat with citations, search, documents (OpenAPI at /docs)."""
    import logging

    import uvicorn

    from rag.identity import IdentityStore, ensure_initial_admin
    from rag.policy import auth_required
    from server.app import create_app

    settings = _settings()
    host = host or settings.server.host
    port = port or settings.server.port
    auth = auth_required(settings.auth.mode, host)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")  # fmt: skip
    try:
        if auth:
            if ensure_initial_admin(settings):
                typer.echo(f"created the initial admin {settings.auth.initial_admin!r}", err=True)
            if not IdentityStore(settings.identity_path).has_users():
                raise _fail("sign-in is on (non-loopback address) but there is no user: create one with "
                            "`rag users add NAME --role admin`, or set RAG_AUTH__INITIAL_ADMIN_PASSWORD(_FILE)", 2)
        app = create_app(settings, auth=auth)
    except (RagError, OSError) as e:
        raise _fail(str(e)) from None
    if not auth:
        typer.echo("sign-in is off (loopback only): every caller is the local operator", err=True)
    typer.echo(f"serving on http://{host}:{port}/v1  (OpenAPI: http://{host}:{port}/docs)", err=True)
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None, timeout_graceful_shutdown=10)
