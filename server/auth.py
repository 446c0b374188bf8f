"""Who is calling: ``Authorization: Bearer rag_...`` -> ``rag.policy.Principal``; what they may do is ``rag.policy``'s.

With sign-in off (the API on 127.0.0.1 for its one local user), every caller is ``Principal.local()``.
"""

from __future__ import annotations

from fastapi import Request

from rag.identity import AuthError
from rag.policy import Principal, require
from server.parts import NotFound, Parts


def caller(request: Request) -> Principal:
    """The FastAPI dependency every ``/v1`` route takes."""
    if not request.app.state.auth:
        return Principal.local()
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing API key: send 'Authorization: Bearer rag_...' (create one with `rag keys create`)")
    principal: Principal = request.app.state.identity.principal_for_key(token.strip())
    return principal


def open_collection(principal: Principal, parts: Parts, collection: str, action: str = "read") -> None:
    """Check ``action`` on ``collection``, then that it exists.

    A caller who may not read a collection gets 403 whether or not it exists: the answer must not reveal which
    names exist. Only a caller who may read it learns that it does not (404).
    """
    parts.settings_for(collection)  # a name that cannot exist (``..``, ``a/b``) is refused before anything else
    require(principal, action, collection)  # type: ignore[arg-type]
    if action == "read" and not parts.exists(collection):
        raise NotFound(f"no collection {collection!r}: list yours with GET /v1/models")
