"""The ``rag search``, ``rag ask`` and ``rag serve-llm`` commands: parse, ask ``rag.wiring`` for the parts, render.

Errors are not handled here: the ``rag`` command's one wrapper (``rag.cli``) turns a ``RagError`` or invalid
settings into one line on stderr and a documented exit code, never a traceback.

    $ rag search "termination notice" --k 3 --explain
    $ rag ask "What notice period does the contract require?" --json
    $ rag serve-llm            # the embedded OpenAI-compatible LLM in the foreground (Ctrl+C stops it)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import typer

from rag.config import load_settings

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.types import Answer, ScoredChunk


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
    """``report.pdf, page 3 · Results › Sales`` (``slide N`` for slide decks; the section when known)."""
    c = hit.chunk
    where = ", ".join(p for p in (PurePath(c.source).name, c.page_label()) if p)
    return f"{where} · {c.section}" if c.section else where


def _snippet(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- shared options ---------------------------------------------------------------------------------------------------

_COLLECTION = typer.Option(None, "--collection", "-c", help="Collection to use (default: settings / RAG_COLLECTION).")
_SOURCE = typer.Option(None, "--source", help="Only chunks of this file (repeatable).")
_TYPE = typer.Option(
    None, "--type", help="Only chunks of this file type: pdf, md, txt, html, docx, pptx, xlsx, csv, eml, png ... "
    "(repeatable)."
)
_PAGE = typer.Option(None, "--page", help="Only chunks of this page (repeatable).")


_AS_USER = typer.Option(
    None, "--as-user", help="See only what this user may see (their collections and document groups); without it "
    "the local command is the operator and sees everything.",
)


def _access(settings: Settings, user: str | None, filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """``filters`` narrowed to what ``user`` may see (``rag.policy``); the local operator's own when no user."""
    if user is None:
        return filters  # the explicit local bypass: the CLI runs as the operator who owns the files
    from rag.identity import IdentityStore
    from rag.policy import require, retrieval_filters

    principal = IdentityStore(settings.identity_path).principal(user)
    require(principal, "read", settings.collection)
    return retrieval_filters(principal, filters)


# -- rag search -------------------------------------------------------------------------------------------------------


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
    as_user: str | None = _AS_USER,
) -> None:
    """Find the chunks most relevant to QUERY (no LLM involved)."""
    from rag.wiring import Wiring

    settings = load_settings(**({"collection": collection} if collection else {}))
    t = time.perf_counter()
    filters = _access(settings, as_user, _filters(source, file_type, page))
    hits = Wiring(settings).pipeline().retrieve(query, k=k, filters=filters, mode=mode, rerank=rerank)
    seconds = time.perf_counter() - t
    if json_out:
        out = {"hits": [
            {"source": h.chunk.source, "page": h.chunk.page, "section": h.chunk.section, "ocr": h.chunk.ocr,
             "ocr_confidence": h.chunk.ocr_confidence, "chunk_id": h.chunk.id, "score": h.score,
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


UNSUPPORTED_MARK = "⚠"
UNSUPPORTED_NOTE = f"{UNSUPPORTED_MARK} = no source the model was given supports this sentence (checked afterwards)"


def _span_text(hit: ScoredChunk, spans: Sequence[tuple[int, int]]) -> str:
    if not spans:
        return ""
    start, end = spans[0]
    return _snippet(hit.chunk.text[start:end], 200)


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
        span = _span_text(c.hit, c.spans)
        if span:
            typer.secho(f"      “{span}”", dim=True)


def _marked_text(answer: Answer) -> str:
    """The answer's sentences with their verified ``[n]`` and a mark after each one no source supports."""
    parts = []
    for s in answer.sentences:
        marks = "".join(f"[{n}]" for n in s.citations)
        text = s.text
        if marks:
            end = len(text.rstrip(".!?:;"))
            text = f"{text[:end]} {marks}{text[end:]}"
        parts.append(f"{text} {UNSUPPORTED_MARK}" if s.supported is False else text)
    return " ".join(parts)


def _print_check(answer: Answer, *, streamed: bool) -> None:
    """What verification found: unsupported sentences marked; for a streamed answer, the corrected version."""
    if not answer.sentences:
        return
    claims = [s for s in answer.sentences if s.supported is not None]
    unsupported = answer.unsupported
    if answer.model_text is not None and not answer.citations and unsupported and len(unsupported) == len(claims):
        typer.secho(f"\n{answer.text}", fg=typer.colors.YELLOW)
        typer.secho("The model's answer, which no source supports:", dim=True)
        typer.secho(f"  {_marked_text(answer)}", dim=True)
        typer.secho(f"  {UNSUPPORTED_NOTE}", dim=True)
        return
    if streamed and (answer.model_text is not None or unsupported):
        typer.secho("\nChecked against the sources:", bold=True)
        typer.echo(_marked_text(answer))
    elif streamed and claims:
        typer.secho(f"\n✓ each sentence is supported by the source it cites ({len(claims)} checked)", dim=True)
    if unsupported:
        typer.secho(UNSUPPORTED_NOTE, fg=typer.colors.YELLOW)


def _answer_json(answer: Answer) -> dict[str, Any]:
    def hit_json(n: int, h: ScoredChunk) -> dict[str, Any]:
        return {"n": n, "source": h.chunk.source, "page": h.chunk.page, "section": h.chunk.section,
                "chunk_id": h.chunk.id, "score": h.score}

    return {
        "answer": answer.text,
        "sentences": [
            {"text": s.text, "citations": list(s.citations), "supported": s.supported, "score": s.score,
             "model_citations": list(s.model_citations), "evidence": s.evidence}
            for s in answer.sentences
        ],
        "sources": [
            {**hit_json(c.n, c.hit),
             "spans": [{"start": a, "end": b, "text": c.hit.chunk.text[a:b]} for a, b in c.spans]}
            for c in answer.citations
        ],
        "retrieved": [hit_json(n, h) for n, h in enumerate(answer.retrieved, start=1)],
        "timings": {k: round(v, 4) for k, v in answer.timings.items()},
        **({"model_answer": answer.model_text} if answer.model_text is not None else {}),
        **({"standalone_question": answer.standalone_question} if answer.standalone_question else {}),
    }  # fmt: skip


def stream_answer(pipeline: Any, question: str, *, k: int | None = None, filters: Any = None) -> Answer:
    """Print the answer as it is generated, what verification found, then its cited sources; return the Answer."""
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
    _print_check(final, streamed=True)
    _print_sources(final)
    return final


def ask_command(
    question: str = typer.Argument(..., help="Your question about the documents."),
    k: int | None = typer.Option(None, "--k", "-k", min=1, help="Sources put in the prompt (default: settings)."),
    json_out: bool = typer.Option(
        False, "--json", help="Print JSON: answer, sentences (citations, supported, score), sources, retrieved."
    ),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the answer when it is complete."),
    collection: str | None = _COLLECTION,
    source: list[str] | None = _SOURCE,
    file_type: list[str] | None = _TYPE,
    page: list[int] | None = _PAGE,
    as_user: str | None = _AS_USER,
) -> None:
    """Answer QUESTION from your documents, with numbered citations (file and page)."""
    from rag.wiring import Wiring

    settings = load_settings(**({"collection": collection} if collection else {}))
    filters = _access(settings, as_user, _filters(source, file_type, page))
    pipeline = Wiring(settings).pipeline()
    if json_out:
        typer.echo(json.dumps(_answer_json(pipeline.answer(question, k=k, filters=filters)), ensure_ascii=False))
    elif no_stream:
        answer = pipeline.answer(question, k=k, filters=filters)
        if answer.sentences and answer.citations:
            typer.echo(_marked_text(answer))
        else:
            typer.echo(answer.text)
        _print_check(answer, streamed=False)
        _print_sources(answer)
    else:
        stream_answer(pipeline, question, k=k, filters=filters)


# -- rag serve-llm ----------------------------------------------------------------------------------------------------


def serve_llm_command(
    port: int | None = typer.Option(None, "--port", help="Port (default: settings.llm.local_port)."),
    model: str | None = typer.Option(None, "--model", help="Packaged model name or path to a .gguf file."),
    stop: bool = typer.Option(False, "--stop", help="Stop the embedded server that `rag ask`/`rag demo` left running."),
) -> None:
    """Run the embedded OpenAI-compatible LLM server (llama.cpp, packaged model) until Ctrl+C."""
    from rag.local_llm import base_url, is_healthy, start_server, stop_pid

    settings = load_settings()
    updates: dict[str, Any] = {k: v for k, v in (("local_port", port), ("local_model", model)) if v is not None}
    llm_settings = settings.llm.model_copy(update=updates)
    url = base_url(llm_settings)
    pid_file = settings.llm_pid_file
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
    server = start_server(llm_settings, models_dir=settings.models_path)
    typer.echo(f"serving at {url}  (OpenAI-compatible; Ctrl+C stops it; log: {server.log_path})")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
