"""``rag doctor [--repair] [--collection NAME] [--json]``: prove that a collection's manifest, vector store and
keyword index agree, and bring them back in step from the source of truth when they do not.

What it compares is ``rag.collection.Collection.check``: the same chunk ids in the store and the keyword index, no
chunks of files the manifest does not know (orphans), no file whose chunk count or version differs from the
manifest, nothing left ``pending`` by a stopped run, no keyword index marked stale. ``--repair`` removes what the
manifest cannot vouch for (those files are indexed again, cleanly, by the next ``rag ingest`` of their folder) and
rebuilds the keyword index from the store.

It holds the collection's writer lock while it looks, so a running ``rag ingest`` is waited for (up to
``RAG_STORE__LOCK_TIMEOUT_S``) rather than reported as half-done. Exit 0 when the collection is consistent (after
the repair, with ``--repair``), 1 when problems remain, 2 when there is no such collection.

    $ rag doctor --collection papers
    $ rag doctor --repair --json | jq .problems
"""

from __future__ import annotations

import json
from typing import Any

import typer

from rag.config import load_settings


def doctor_command(
    repair: bool = typer.Option(False, "--repair", help="Fix what is out of step (files are re-indexed by the "
                                "next `rag ingest` of their folder)."),  # fmt: skip
    collection: str | None = typer.Option(
        None, "--collection", "-c", help="Collection to check (default: settings / RAG_COLLECTION)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Check that a collection's manifest, vector store and keyword index agree (and --repair them)."""
    from rag.wiring import Wiring

    settings = load_settings(**({"collection": collection} if collection else {}))
    with Wiring(settings).collection() as c:
        c.require()
        with c.writing():  # no writer is half-way while we look: what is pending was left by a stopped run
            before = c.check()
            after = before
            if repair and not before.clean:
                c.repair()
                after = c.check()
    result: dict[str, Any] = before.to_dict()
    if repair:
        result["repaired"] = not before.clean
        result["after"] = after.to_dict()
        result["reingest"] = before.files_to_reingest()
    if json_out:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        _print(before, after if repair else None)
    raise typer.Exit(0 if after.clean else 1)


def _print(before: Any, after: Any | None) -> None:
    head = f"collection {before.collection!r}: {before.files} files, {before.chunks} chunks"
    if before.clean:
        typer.echo(f"{head}: manifest, vector store and keyword index agree")
        return
    typer.echo(f"{head}: {len(before.problems())} problem(s)")
    for line in before.problems():
        typer.echo(f"  - {line}")
    if after is None:
        typer.echo("run `rag doctor --repair` to bring them back in step")
    elif after.clean:
        files = before.files_to_reingest()
        typer.echo("repaired: the keyword index was rebuilt from the store"
                   + (f"; {len(files)} file(s) were removed, `rag ingest` their folder to index them again:"
                      if files else "."))  # fmt: skip
        for f in files:
            typer.echo(f"  {f}")
    else:
        typer.echo("still out of step after the repair:")
        for line in after.problems():
            typer.echo(f"  - {line}")
