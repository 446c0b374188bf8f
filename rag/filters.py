"""Metadata filters: one meaning, and its translation for every engine, side by side.

A filter maps a field to the value(s) it must have: ``{"file_type": "pdf"}`` keeps PDF chunks,
``{"source": ["/a.md", "/b.md"]}`` keeps the chunks of two files (a sequence means any-of), and every field given
must match. One field has its own meaning: ``{"groups": ["hr", "finance"]}`` is the access filter (built by
``rag.policy`` from who asks), which keeps public chunks (no groups) and chunks sharing at least one group with the
list; ``{"groups": []}`` keeps public chunks only. ``normalize`` validates once; ``matches`` is the reference
meaning (the memory store and BM25 use it); ``to_sql`` and ``to_qdrant`` translate the same meaning for the FAISS
store's SQLite and for Qdrant. The store contract suite checks that every backend gives the reference answers.

Example::

    >>> normalize({"page": 3, "file_type": ["PDF"]})
    {'page': (3,), 'file_type': ('pdf',)}
    >>> to_sql({"page": [1, 2]})
    (' WHERE page IN (?,?)', [1, 2])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rag.errors import UsageError
from rag.types import Chunk, Filters

FILTER_FIELDS = ("source", "file_type", "page", "groups")
Normalized = dict[str, tuple[Any, ...]]


def normalize(filters: Filters | None) -> Normalized:
    """Filters as ``{field: (allowed values, ...)}``; raises ``UsageError`` for an unknown field or a bad value."""
    if not filters:
        return {}
    out: Normalized = {}
    for key, wanted in filters.items():
        if key not in FILTER_FIELDS:
            raise UsageError(f"unknown filter field {key!r}; use one of {', '.join(FILTER_FIELDS)}")
        values: Sequence[Any] = (wanted,) if isinstance(wanted, (str, int)) else tuple(wanted)
        if key == "page":
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise UsageError(f"filter 'page' takes page numbers, not {list(values)!r}")
        elif not all(isinstance(v, str) for v in values):
            raise UsageError(f"filter {key!r} takes strings, not {list(values)!r}")
        if key == "file_type":
            values = tuple(str(v).lower().lstrip(".") for v in values)
        out[key] = tuple(values)
    return out


def matches(chunk: Chunk, filters: Filters | Normalized | None) -> bool:
    """Whether ``chunk`` passes ``filters``: the reference semantics every store implements."""
    for key, allowed in normalize(filters).items():
        if key == "groups":  # public, or one shared group
            if chunk.groups and not set(chunk.groups).intersection(allowed):
                return False
        elif getattr(chunk, key) not in allowed:
            return False
    return True


def to_sql(filters: Filters | None) -> tuple[str, list[Any]]:
    """A ``WHERE`` clause over columns named like the fields (the FAISS store's SQLite), with its parameters."""
    norm = normalize(filters)
    if not norm:
        return "", []
    clauses: list[str] = []
    params: list[Any] = []
    for key, allowed in norm.items():
        if key == "groups":  # a JSON array column; NULL (written before groups existed) and [] are public
            shared = ""
            if allowed:
                marks = ",".join("?" * len(allowed))
                shared = f" OR EXISTS (SELECT 1 FROM json_each(chunks.groups) WHERE value IN ({marks}))"
            clauses.append(f"(groups IS NULL OR groups = '[]'{shared})")
            params.extend(allowed)
            continue
        if not allowed:
            clauses.append("0")  # an empty any-of matches nothing
            continue
        clauses.append(f"{key} IN ({','.join('?' * len(allowed))})")
        params.extend(allowed)
    return " WHERE " + " AND ".join(clauses), params


def to_qdrant(filters: Filters | None, models: Any) -> Any:
    """A Qdrant ``Filter`` built from the classes of ``models`` (``qdrant_client.models`` or ``qdrant_edge``)."""
    norm = normalize(filters)
    if not norm:
        return None
    must = []
    for key, allowed in norm.items():
        if key == "groups":  # a payload pre-filter: no groups (missing, null or []) or a shared one
            empty = (models.IsEmptyCondition(key="groups") if models.__name__ == "qdrant_edge"
                     else models.IsEmptyCondition(is_empty=models.PayloadField(key="groups")))  # fmt: skip
            should = [empty]
            if allowed:
                should.append(models.FieldCondition(key="groups", match=models.MatchAny(any=list(allowed))))
            must.append(models.Filter(should=should))
            continue
        # MatchAny over no values matches nothing, as an empty any-of should
        match = models.MatchValue(value=allowed[0]) if len(allowed) == 1 else models.MatchAny(any=list(allowed))
        must.append(models.FieldCondition(key=key, match=match))
    return models.Filter(must=must)


def describe(filters: Mapping[str, Any] | None) -> str:
    """``file_type=pdf, page=3|4`` for messages and logs."""
    return ", ".join(f"{k}={'|'.join(map(str, v))}" for k, v in normalize(filters).items()) or "none"
