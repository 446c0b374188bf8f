"""``rag ingest PATH... [--collection NAME] [--prune] [--json] [--watch] [--ray]`` and ``rag demo``: parse arguments,
run ``ingest_paths`` (or the watcher, or the Ray driver; for the demo, ask questions), render.

Exit codes (the ``rag`` command's one error wrapper, ``rag.cli``): 0 when the batch finished (even if some files
failed: they are listed with their reasons), 1 when nothing could be done (the collection cannot be opened or
written, a model cannot load), 2 for invalid settings or a path that does not exist, 130 on Ctrl-C (what was
committed stays; run the command again to resume). With ``--json`` an error is also printed as ``{"error": ...}``.

    $ rag ingest ~/papers ~/notes --collection work
    $ rag ingest ~/papers --prune --json | jq .chunks_added
    $ rag ingest ~/papers --watch          # keep the collection in sync with the folder, one line per change
    $ rag ingest /shared/corpus --ray --ray-address ray://head:10001   # the same stages on a Ray cluster
    $ rag demo                 # ingest docs/samples, start the embedded LLM, ask sample questions
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from ingest.samples import SAMPLES_DIR, demo_questions
from rag.config import Settings, load_settings
from rag.errors import UsageError


def ingest_command(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="Files or folders to ingest (folders are read recursively).")
    ],
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="Collection name.")] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove chunks of files that no longer exist.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    groups: Annotated[
        str | None,
        typer.Option("--groups", help="Access groups of these documents, e.g. hr,finance: only members see them "
                     "(a .raggroups file in a folder overrides it for the files below). Default: public."),
    ] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", help="After ingesting, keep the collection in sync: apply adds, changes and deletes as they "
        "happen, one line per change, until Ctrl-C.")] = False,
    debounce_ms: Annotated[int, typer.Option(
        "--debounce-ms", min=50, help="With --watch: changes arriving within this many milliseconds are applied "
        "as one batch.")] = 1500,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=-1, help="Parse processes (0: one thread; -1: by the run's size). Default: "
        "RAG_INGEST__WORKERS.")] = None,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Run the stages on Ray Data: a local Ray instance, or the cluster of --ray-address / "
        "RAY_ADDRESS / RAG_INGEST__RAY_ADDRESS.")] = False,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", metavar="ADDRESS", help="Ray cluster to use (implies --ray), e.g. ray://head:10001, "
        "or 'local' for a local instance.")] = None,
) -> None:
    """Ingest documents (PDF, Markdown, text, HTML, DOCX, PPTX, XLSX, CSV, e-mail, scanned images) into a collection;
    unchanged files are skipped."""
    from rich.console import Console

    from ingest.pipeline import IngestSummary, ingest_paths

    err = Console(stderr=True)
    overrides: dict[str, object] = {"collection": collection} if collection else {}
    settings = load_settings(**overrides)
    if workers is not None:
        settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"workers": workers})})
    use_ray = ray or ray_address is not None or bool(settings.ingest.ray_address)
    if watch and use_ray:
        raise UsageError("--watch applies changes as they happen on this machine; it does not combine with --ray")
    summary: IngestSummary
    try:
        if watch:
            from ingest.watch import watch_paths

            watch_paths(paths, settings, log=lambda line: typer.echo(line), groups=_split(groups),
                        debounce_ms=debounce_ms)
            return
        if use_ray:
            from ingest.ray_ingest import ingest_with_ray

            summary = ingest_with_ray(paths, settings, prune=prune, address=ray_address or settings.ingest.ray_address,
                                      groups=_split(groups))
        elif json_out or not sys.stderr.isatty():
            summary = ingest_paths(paths, settings, prune=prune, groups=_split(groups))
        else:
            summary = _with_progress_bar(paths, settings, prune, err, _split(groups))
    except KeyboardInterrupt:
        if watch:
            err.print("[yellow]stopped watching[/]: the collection is consistent; run the same command to resume")
        else:
            err.print("[yellow]interrupted[/]: files committed so far are kept; run the same command to resume")
        raise typer.Exit(130) from None
    if json_out:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        _print_summary(summary, Console())


def _split(groups: str | None) -> list[str]:
    """``--groups`` checked here, at the edge: a malformed name is a usage error (exit 2) before anything runs."""
    from rag.policy import parse_groups

    try:
        return list(parse_groups(groups or ""))
    except ValueError as e:
        raise UsageError(f"--groups: {e}") from None


def _with_progress_bar(paths: list[Path], settings: Settings, prune: bool, console: object,  # type: ignore[no-untyped-def]
                       groups: list[str] | None = None):  # fmt: skip
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

        return ingest_paths(paths, settings, prune=prune, progress=on_progress, groups=groups or ())


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
        ("skipped", len(s.skipped)),
        ("cleaned up", len(s.cleaned_up)),
        ("pruned files", s.pruned_files),
        ("chunks added", s.chunks_added),
        ("chunks removed", s.chunks_removed),
        ("chunks embedded (the rest from the cache)", s.embedded),
        ("chunks in collection", "-" if s.chunks_total is None else s.chunks_total),
        ("pages read by OCR", s.ocr_pages),
        ("seconds", f"{s.seconds:.1f}"),
    ]:
        table.add_row(label, str(value))
    console.print(table)  # type: ignore[attr-defined]
    if s.cancelled:
        console.print("[yellow]cancelled[/]: files committed so far are kept; run the same command to resume")  # type: ignore[attr-defined]
    if s.cleaned_up:
        cleaned = Table("file", "what happened", title="cleaned up", title_justify="left")
        for f in s.cleaned_up:
            cleaned.add_row(f.path, f.reason)
        console.print(cleaned)  # type: ignore[attr-defined]
    if s.failed or s.skipped:
        problems = Table("file", "reason", title="not ingested", title_justify="left")
        for f in (*s.failed, *s.skipped):
            problems.add_row(f.path, f.reason)
        console.print(problems)  # type: ignore[attr-defined]


# -- rag demo ---------------------------------------------------------------------------------------------------------


def demo_command(
    path: Annotated[Path, typer.Option("--path", help="Folder to ingest (default: the bundled docs/samples).")] = (
        SAMPLES_DIR
    ),
    question: Annotated[list[str] | None, typer.Option("--question", "-q", help="Ask this instead (repeatable).")] = (
        None
    ),
) -> None:
    """The whole product in one command: ingest sample documents, start the embedded LLM, ask cited questions."""
    from ingest.pipeline import ingest_paths
    from rag.commands import stream_answer
    from rag.wiring import Wiring

    if not path.is_dir():
        raise UsageError(f"sample folder {path} not found: pass --path to a folder of your documents")
    wiring = Wiring(load_settings(collection="demo"))
    settings = wiring.settings
    typer.secho(f"1/3 indexing {path} into the collection 'demo' …", bold=True)
    # The folder's .ragignore keeps its README and question list out: they would compete as sources.
    summary = ingest_paths([path], wiring)
    typer.echo(
        f"    {summary.files_seen} files: {summary.new} new, {summary.changed} changed, {summary.unchanged} unchanged; "
        f"{summary.chunks_added} chunks added in {summary.seconds:.1f} s"
    )
    for f in summary.failed:
        typer.secho(f"    skipped {f.path}: {f.reason}", fg=typer.colors.YELLOW)
    if settings.llm.base_url:
        typer.secho(f"2/3 using the LLM at {settings.llm.base_url}", bold=True)
    else:
        typer.secho("2/3 starting the embedded LLM (reused if already running) …", bold=True)
        t = time.perf_counter()
        url = wiring.ensure_llm_server()
        typer.echo(f"    ready at {url} in {time.perf_counter() - t:.1f} s (stop it with `rag serve-llm --stop`)")
    pipeline = wiring.pipeline()
    typer.secho("3/3 asking questions", bold=True)
    for q in question or demo_questions(path):
        typer.secho(f"\nQ: {q}", fg=typer.colors.CYAN, bold=True)
        answer = stream_answer(pipeline, q)
        typer.secho(f"   ({answer.timings.get('total', 0):.1f} s)", dim=True)
    typer.echo("\nAsk your own: rag ask \"...\" --collection demo   ·   index your folder: rag ingest PATH")
