"""``rag ingest PATH... [--collection NAME] [--prune] [--json]``: parse arguments, run ``ingest_paths``, render.

Exit codes: 0 when the batch finished (even if some files failed: they are listed with their reasons), 1 when
nothing could be done (the collection cannot be opened or written, a model cannot load), 2 for a path that does
not exist, 130 on Ctrl-C (what was committed stays; run the command again to resume).

    $ rag ingest ~/papers ~/notes --collection work
    $ rag ingest ~/papers --prune --json | jq .chunks_added
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rag.config import Settings
from rag.errors import IngestError, RagError


def ingest_command(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="Files or folders to ingest (folders are read recursively).")
    ],
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="Collection name.")] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove chunks of files that no longer exist.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Ingest documents (PDF, Markdown, text, HTML) into a collection; unchanged files are skipped."""
    from rich.console import Console

    from ingest.pipeline import IngestSummary, ingest_paths

    err = Console(stderr=True)
    try:
        settings = Settings(**({"collection": collection} if collection else {}))
    except Exception as e:  # pydantic's message names the bad setting
        err.print(f"[red]error:[/] invalid settings: {e}")
        raise typer.Exit(2) from None

    summary: IngestSummary
    try:
        if json_out or not sys.stderr.isatty():
            summary = ingest_paths(paths, settings, prune=prune)
        else:
            summary = _with_progress_bar(paths, settings, prune, err)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: files committed so far are kept; run the same command to resume")
        raise typer.Exit(130) from None
    except IngestError as e:
        _fail(str(e), 2, json_out, err)
    except RagError as e:
        _fail(str(e), 1, json_out, err)

    if json_out:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        _print_summary(summary, Console())


def _fail(message: str, code: int, json_out: bool, err: object) -> None:
    if json_out:
        typer.echo(json.dumps({"error": message}, ensure_ascii=False))
    err.print(f"[red]error:[/] {message}")  # type: ignore[attr-defined]
    raise typer.Exit(code)


def _with_progress_bar(paths: list[Path], settings: Settings, prune: bool, console: object):  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ingest.pipeline import IngestProgress, ingest_paths

    with Progress(
        TextColumn("[bold]ingest[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files  {task.fields[chunks]} chunks"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}", style="dim"),
        console=console,  # type: ignore[arg-type]
        transient=True,
    ) as bar:
        task = bar.add_task("ingest", total=None, chunks=0, current="scanning")

        def on_progress(p: IngestProgress) -> None:
            name = Path(p.current).name
            bar.update(task, total=p.files_total, completed=p.files_done, chunks=p.chunks_added,
                       current=name if len(name) < 48 else name[:45] + "...")

        return ingest_paths(paths, settings, prune=prune, progress=on_progress)


def _print_summary(s: object, console: object) -> None:
    from rich.table import Table

    from ingest.pipeline import IngestSummary

    assert isinstance(s, IngestSummary)
    table = Table(title="ingest summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in [
        ("collection", s.collection),
        ("files seen", s.files_seen),
        ("new", s.new),
        ("changed", s.changed),
        ("unchanged", s.unchanged),
        ("failed", len(s.failed)),
        ("skipped (unsupported)", len(s.skipped)),
        ("pruned files", s.pruned_files),
        ("chunks added", s.chunks_added),
        ("chunks removed", s.chunks_removed),
        ("chunks in collection", "-" if s.chunks_total is None else s.chunks_total),
        ("seconds", f"{s.seconds:.1f}"),
    ]:
        table.add_row(label, str(value))
    console.print(table)  # type: ignore[attr-defined]
    if s.failed or s.skipped:
        problems = Table("file", "reason", title="not ingested", title_justify="left")
        for f in (*s.failed, *s.skipped):
            problems.add_row(f.path, f.reason)
        console.print(problems)  # type: ignore[attr-defined]
