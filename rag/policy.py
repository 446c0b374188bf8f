"""Who may see and do what: the one place that decides, for the HTTP API, the Streamlit app and the CLI.

Three roles, each a superset of the one before: ``reader`` (search, ask), ``editor`` (+ upload and delete
documents), ``admin`` (+ users, keys, indexing folders on the server; every collection, every document). A non-admin
reaches a collection only through a grant (``reader`` or ``editor`` on that collection, or on ``*``), and does there
the lesser of their role and the grant. Inside a collection, a document with access groups is visible only to
members of one of them; a document without groups is visible to everyone who may read the collection.

Document visibility is enforced *inside retrieval*: :func:`retrieval_filters` turns the caller into a ``groups``
filter that every store, BM25 and the reranker's input honour (``rag.types.Filters``), so a forbidden chunk never
reaches a prompt, a source list or a search result. The local CLI is trusted and passes ``Principal.local()``
(an explicit bypass: it owns the files anyway).

Example::

    >>> alice = Principal(name="alice", role="editor", groups=frozenset({"hr"}), grants={"papers": "reader"})
    >>> can(alice, "read", "papers"), can(alice, "write", "papers"), can(alice, "read", "contracts")
    (True, False, False)
    >>> retrieval_filters(alice, {"file_type": "pdf"})
    {'file_type': 'pdf', 'groups': ['hr']}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rag.errors import RagError

Role = Literal["reader", "editor", "admin"]
Action = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = ("reader", "editor", "admin")
GRANTS: tuple[Role, ...] = ("reader", "editor")
ALL_COLLECTIONS = "*"
_RANK = {"reader": 1, "editor": 2, "admin": 3}
_NEEDS = {"read": 1, "write": 2, "admin": 3}
GROUP_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class AccessDenied(RagError):
    """The caller may not do this (HTTP 403); the message says what is missing, never what is behind it."""


def parse_groups(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"HR, finance"`` -> ``("finance", "hr")``: lower-case, sorted, unique; ``ValueError`` for a bad name.

    >>> parse_groups("HR, finance,,hr")
    ('finance', 'hr')
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    groups = {p.strip().lower() for p in parts if p.strip()}
    bad = sorted(g for g in groups if not GROUP_RE.match(g))
    if bad:
        raise ValueError(f"invalid group name {bad[0]!r}: use lower-case letters, digits, '_', '.' or '-' (64 at most)")
    return tuple(sorted(groups))


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user (through a password session or an API key), or the trusted local operator."""

    name: str
    role: Role
    groups: frozenset[str] = frozenset()
    grants: Mapping[str, Role] = field(default_factory=dict)  # collection (or "*") -> "reader" | "editor"
    sees_everything: bool = False  # admins and the local CLI: no group filter

    @classmethod
    def local(cls) -> Principal:
        """The operator at the keyboard (CLI, or the app on 127.0.0.1 with auth off): sees and does everything."""
        return cls(name="local", role="admin", sees_everything=True)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def level(principal: Principal, collection: str) -> int:
    """0 (nothing), 1 (read), 2 (write) or 3 (admin) on ``collection``."""
    if principal.is_admin:
        return _RANK["admin"]
    grant = principal.grants.get(collection) or principal.grants.get(ALL_COLLECTIONS)
    if grant is None:
        return 0
    return min(_RANK[principal.role], _RANK[grant])


def can(principal: Principal, action: Action, collection: str | None = None) -> bool:
    """Whether ``principal`` may ``action`` (read, write, admin) on ``collection`` (None: a server-wide action)."""
    if action == "admin":
        return principal.is_admin
    if collection is None:
        return _RANK[principal.role] >= _NEEDS[action]
    return level(principal, collection) >= _NEEDS[action]


def require(principal: Principal, action: Action, collection: str | None = None) -> None:
    """Raise ``AccessDenied`` unless :func:`can`."""
    if not can(principal, action, collection):
        where = f" on collection {collection!r}" if collection else ""
        what = {"read": "read", "write": "change documents", "admin": "administer the server"}[action]
        raise AccessDenied(f"{principal.name!r} may not {what}{where}")


def readable(principal: Principal, collections: Iterable[str]) -> list[str]:
    """The collections among ``collections`` that ``principal`` may read, sorted."""
    return sorted(c for c in collections if can(principal, "read", c))


def visible_groups(principal: Principal) -> list[str] | None:
    """The document groups ``principal`` sees besides public documents; None: every document."""
    if principal.sees_everything or principal.is_admin:
        return None
    return sorted(principal.groups)


def retrieval_filters(principal: Principal, filters: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """``filters`` (from the request) narrowed to what ``principal`` may see: the filter every retrieval gets.

    A ``groups`` key in the request is never trusted: the caller's own groups replace it.
    """
    out = {k: v for k, v in (filters or {}).items() if k != "groups"}
    groups = visible_groups(principal)
    if groups is not None:
        out["groups"] = groups
    return out or None


def may_see_chunk_groups(principal: Principal, groups: Iterable[str]) -> bool:
    """Whether a document labelled ``groups`` is visible to ``principal`` (the same rule as the filter)."""
    allowed = visible_groups(principal)
    labels = set(groups)
    return allowed is None or not labels or bool(labels & set(allowed))


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def auth_required(mode: str, host: str) -> bool:
    """Whether sign-in is on: ``mode`` "on"/"off" say so; "auto" turns it on for any non-loopback address.

    >>> auth_required("auto", "127.0.0.1"), auth_required("auto", "0.0.0.0"), auth_required("on", "::1")
    (False, True, True)
    """
    if mode == "on":
        return True
    if mode == "off":
        return False
    return host.strip("[]") not in LOOPBACK_HOSTS and not host.startswith("127.")


def folder_allowed(path: str | Path, roots: Iterable[str | Path]) -> Path:
    """``path`` resolved (symlinks followed), if it lies at or below one of ``roots``; ``AccessDenied`` otherwise.

    Only admins index folders of the server, and only below configured roots (``RAG_INGEST__ALLOWED_ROOTS``):
    ``/etc`` or ``../../`` are refused, whoever asks.
    """
    resolved = Path(path).expanduser().resolve()
    for root in roots:
        base = Path(root).expanduser().resolve()
        if resolved == base or base in resolved.parents:
            return resolved
    allowed = ", ".join(str(r) for r in roots) or "none are configured (RAG_INGEST__ALLOWED_ROOTS)"
    raise AccessDenied(f"{path} is not below an allowed folder: {allowed}")
