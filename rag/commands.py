"""The ``rag search``, ``rag ask``, ``rag serve-llm`` and ``rag demo`` commands: parse, call the pipeline, render.

A ``RagError`` becomes one red line on stderr and exit code 1, never a traceback.

    $ rag search "termination notice" --k 3 --explain
    $ rag ask "What notice period does the contract require?" --json
    $ rag serve-llm            # the embedded OpenAI-compatible LLM in the foreground (Ctrl+C stops it)
    $ rag demo                 # ingest docs/samples, start the embedded LLM, ask sample questions
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.types import Answer, ScoredChunk

F = TypeVar("F", bound=Callable[..., Any])

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "docs" / "samples"
DEMO_QUESTIONS = (
    "What is this collection of documents about?",
    "Summarise the most important point of one of the documents.",
)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def _friendly_errors(func: F) -> F:
    """Turn our errors (and a bad filter) into one clear red line and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rag.errors import RagError

        try:
            return func(*args, **kwargs)
        except RagError as e:
            raise _fail(str(e)) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _settings(collection: str | None) -> Settings:
    from pydantic import ValidationError

    from rag.config import Settings
    from rag.errors import ConfigError

    try:
        return Settings(collection=collection) if collection else Settings()
    except ValidationError as e:
        raise ConfigError(f"invalid settings: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from e


def _filters(source: list[str] | None, file_type: list[str] | None, page: list[int] | None) -> dict[str, Any] | None:
    filters: dict[str, Any] = {}
    if source:
        filters["source"] = [str(Path(s).expanduser().resolve()) for s in source]
    if file_type:
        filters["file_type"] = [t.lower().lstrip(".") for t in file_type]
    if page:
        filters["page"] = list(page)
    return filters or None


def _where(hit: ScoredChunk) -> str:
    c = hit.chunk
    name = PurePath(c.source).name
    return f"{name}, page {c.page}" if c.page is not None else name


def _snippet(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- shared options ---------------------------------------------------------------------------------------------------

_COLLECTION = typer.Option(None, "--collection", "-c", help="Collection to use (default: settings / RAG_COLLECTION).")
_SOURCE = typer.Option(None, "--source", help="Only chunks of this file (repeatable).")
_TYPE = typer.Option(None, "--type", help="Only chunks of this file type: pdf, md, txt, html (repeatable).")
_PAGE = typer.Option(None, "--page", help="Only chunks of this page (repeatable).")


# -- rag search -------------------------------------------------------------------------------------------------------


@_friendly_errors
def search_command(
    query: str = typer.Argument(..., help="What to look for."),
    k: int | None = typer.Option(None, "--k", "-k", min=1, help="Number of hits (default: settings.retrieval.k)."),
    mode: str | None = typer.Option(None, "--mode", help="dense, bm25 or hybrid (default: settings)."),
    rerank: bool | None = typer.Option(
        None, "--rerank/--no-rerank", help="Cross-encoder reranking (default: settings)."
    ),
    explain: bool = typer.Option(
        False, "--explain", help="Show what each stage (dense, BM25, fusion, rerank) gave each hit."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON: {\"hits\": [...]}."),
    collection: str | None = _COLLECTION,
    source: list[str] | None = _SOURCE,
    file_type: list[str] | None = _TYPE,
    page: list[int] | None = _PAGE,
) -> None:
    """Find the chunks most relevant to QUERY (no LLM involved)."""
    from rag.pipeline import RagPipeline

    settings = _settings(collection)
    t = time.perf_counter()
    filters = _filters(source, file_type, page)
    hits = RagPipeline(settings).retrieve(query, k=k, filters=filters, mode=mode, rerank=rerank)
    seconds = time.perf_counter() - t
    if json_out:
        out = {"hits": [
            {"source": h.chunk.source, "page": h.chunk.page, "chunk_id": h.chunk.id, "score": h.score,
             "text": h.chunk.text, **({"stages": dict(h.stages)} if explain else {})}
            for h in hits
        ]}  # fmt: skip
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not hits:
        console.print("[yellow]no matching chunks[/yellow]")
        return
    if explain:
        stage_names = [s for s in ("dense", "bm25", "rrf", "rerank") if any(s in h.stages for h in hits)]
        table = Table(title=f"{len(hits)} hits in {seconds * 1000:.0f} ms — {settings.collection}")
        table.add_column("#", justify="right")
        for s in stage_names:
            table.add_column(s + (" (rank)" if s in ("dense", "bm25") else ""), justify="right")
        table.add_column("source")
        table.add_column("text")
        for i, h in enumerate(hits, start=1):
            cells = []
            for s in stage_names:
                if s not in h.stages:
                    cells.append("–")
                elif f"{s}_rank" in h.stages:
                    cells.append(f"{h.stages[s]:.3f} ({h.stages[s + '_rank']:.0f})")
                else:
                    cells.append(f"{h.stages[s]:.3f}")
            table.add_row(str(i), *cells, _where(h), _snippet(h.chunk.text, 90))
        console.print(table)
        return
    for i, h in enumerate(hits, start=1):
        console.print(f"[bold][{i}][/bold] {_where(h)}  [dim]score {h.score:.3f}  id {h.chunk.id[:12]}[/dim]")
        console.print(f"    {_snippet(h.chunk.text)}", highlight=False)


# -- rag ask ----------------------------------------------------------------------------------------------------------


def _print_sources(answer: Answer) -> None:
    if not answer.citations:
        if not answer.retrieved:
            typer.secho("\n(no source was relevant enough to give to the model)", dim=True)
            return
        # Small models sometimes answer without [n]: show what they were given, so the answer can still be checked.
        typer.echo("\nNo source cited; the model was given:")
        for n, hit in enumerate(answer.retrieved, start=1):
            typer.echo(f"  [{n}] {_where(hit)}  ({hit.chunk.source})")
        return
    typer.echo("\nSources:")
    for c in answer.citations:
        typer.echo(f"  [{c.n}] {_where(c.hit)}  ({c.hit.chunk.source})")


def _answer_json(answer: Answer) -> dict[str, Any]:
    return {
        "answer": answer.text,
        "sources": [
            {"n": c.n, "source": c.hit.chunk.source, "page": c.hit.chunk.page, "chunk_id": c.hit.chunk.id,
             "score": c.hit.score}
            for c in answer.citations
        ],
        "timings": {k: round(v, 4) for k, v in answer.timings.items()},
        **({"standalone_question": answer.standalone_question} if answer.standalone_question else {}),
    }  # fmt: skip


def stream_answer(pipeline: Any, question: str, *, k: int | None = None, filters: Any = None) -> Answer:
    """Print the answer as it is generated, then its cited sources; return the final ``Answer``."""
    from rag.types import Answer

    final: Answer | None = None
    for part in pipeline.stream(question, k=k, filters=filters):
        if isinstance(part, Answer):
            final = part
        else:
            sys.stdout.write(part)
            sys.stdout.flush()
    assert final is not None
    sys.stdout.write("\n")
    _print_sources(final)
    return final


@_friendly_errors
def ask_command(
    question: str = typer.Argument(..., help="Your question about the documents."),
    k: int | None = typer.Option(None, "--k", "-k", min=1, help="Sources put in the prompt (default: settings)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON: {\"answer\", \"sources\", \"timings\"}."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the answer when it is complete."),
    collection: str | None = _COLLECTION,
    source: list[str] | None = _SOURCE,
    file_type: list[str] | None = _TYPE,
    page: list[int] | None = _PAGE,
) -> None:
    """Answer QUESTION from your documents, with numbered citations (file and page)."""
    from rag.pipeline import RagPipeline

    settings = _settings(collection)
    pipeline = RagPipeline(settings)
    filters = _filters(source, file_type, page)
    if json_out:
        typer.echo(json.dumps(_answer_json(pipeline.answer(question, k=k, filters=filters)), ensure_ascii=False))
    elif no_stream:
        answer = pipeline.answer(question, k=k, filters=filters)
        typer.echo(answer.text)
        _print_sources(answer)
    else:
        stream_answer(pipeline, question, k=k, filters=filters)


# -- rag serve-llm ----------------------------------------------------------------------------------------------------


@_friendly_errors
def serve_llm_command(
    port: int | None = typer.Option(None, "--port", help="Port (default: settings.llm.local_port)."),
    model: str | None = typer.Option(None, "--model", help="Packaged model name or path to a .gguf file."),
    stop: bool = typer.Option(False, "--stop", help="Stop the embedded server that `rag ask`/`rag demo` left running."),
) -> None:
    """Run the embedded OpenAI-compatible LLM server (llama.cpp, packaged model) until Ctrl+C."""
    from rag.config import default_data_dir
    from rag.local_llm import base_url, is_healthy, start_server, stop_pid

    settings = _settings(None)
    updates: dict[str, Any] = {k: v for k, v in (("local_port", port), ("local_model", model)) if v is not None}
    llm_settings = settings.llm.model_copy(update=updates)
    url = base_url(llm_settings)
    pid_file = default_data_dir() / "models" / "llm-server.pid"
    if stop:
        if not pid_file.exists():
            typer.echo("no embedded LLM server was started in the background")
            return
        pid = int(pid_file.read_text().split()[0])
        typer.echo(f"stopped the embedded LLM server (pid {pid})" if stop_pid(pid) else f"could not stop pid {pid}")
        pid_file.unlink(missing_ok=True)
        return
    if is_healthy(url):
        typer.echo(f"an LLM server already answers at {url} (stop it with `rag serve-llm --stop`)")
        return
    typer.echo(f"starting the embedded LLM ({llm_settings.local_model}) on {url} …", err=True)
    server = start_server(llm_settings)
    typer.echo(f"serving at {url}  (OpenAI-compatible; Ctrl+C stops it; log: {server.log_path})")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


# -- rag demo ---------------------------------------------------------------------------------------------------------


def _demo_questions(folder: Path) -> Sequence[str]:
    """Up to three questions from ``questions.txt`` in the samples folder (one a line), else generic ones."""
    qfile = folder / "questions.txt"
    if qfile.is_file():
        lines = [ln.strip() for ln in qfile.read_text(encoding="utf-8").splitlines()]
        questions = [ln for ln in lines if ln and not ln.startswith("#")]
        if questions:
            return questions[:3]
    return DEMO_QUESTIONS


@_friendly_errors
def demo_command(
    path: Path = typer.Option(  # noqa: B008
        SAMPLES_DIR, "--path", help="Folder to ingest (default: the bundled docs/samples)."
    ),
    question: list[str] | None = typer.Option(  # noqa: B008
        None, "--question", "-q", help="Ask this instead (repeatable)."
    ),
) -> None:
    """The whole product in one command: ingest sample documents, start the embedded LLM, ask cited questions."""
    from rag.errors import IngestError
    from rag.local_llm import ensure_server
    from rag.pipeline import RagPipeline

    if not path.is_dir():
        raise IngestError(f"sample folder {path} not found: pass --path to a folder of your documents")
    settings = _settings("demo")
    # Composition root: the one place allowed to pull in the ingestion package (lazily).
    from ingest.pipeline import ingest_paths

    typer.secho(f"1/3 indexing {path} into the collection 'demo' …", bold=True)
    # The folder's .ragignore keeps its README and question list out: they would compete as sources.
    summary = ingest_paths([path], settings)
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
        url = ensure_server(settings.llm)
        typer.echo(f"    ready at {url} in {time.perf_counter() - t:.1f} s (stop it with `rag serve-llm --stop`)")
    pipeline = RagPipeline(settings)
    typer.secho("3/3 asking questions", bold=True)
    for q in question or _demo_questions(path):
        typer.secho(f"\nQ: {q}", fg=typer.colors.CYAN, bold=True)
        answer = stream_answer(pipeline, q)
        typer.secho(f"   ({answer.timings.get('total', 0):.1f} s)", dim=True)
    typer.echo("\nAsk your own: rag ask \"...\" --collection demo   ·   index your folder: rag ingest PATH")
