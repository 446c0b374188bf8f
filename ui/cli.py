"""``rag chat``: start the Streamlit app, and the embedded LLM server when no other endpoint is configured.

The app binds to 127.0.0.1 unless told otherwise (it can read and index files on this machine), runs headless
(no browser is opened for you, no usage statistics are sent), and takes its upload limit from ``ui.max_upload_mb``.

    $ rag chat                          # http://127.0.0.1:8501
    $ rag chat --host 0.0.0.0 --port 9000
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from rag.processes import python_module_command, run_foreground

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_command(host: str, port: int, max_upload_mb: int) -> list[str]:
    """The ``streamlit run`` command line for the app.

    >>> cmd = streamlit_command("127.0.0.1", 8501, 200)
    >>> cmd[4:6], cmd[cmd.index("--server.address") + 1], cmd[cmd.index("--server.headless") + 1]
    (['streamlit', 'run'], '127.0.0.1', 'true')
    """
    return python_module_command("streamlit", [
        "run", str(APP),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(max_upload_mb),
        "--server.fileWatcherType", "none",  # an installed app does not hot-reload; saves a watcher thread
        "--client.toolbarMode", "minimal",
        "--theme.primaryColor", "#4f8bf9",
    ])  # fmt: skip


def chat_command(
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 exposes your documents to the network."),
    port: int = typer.Option(8501, help="Port of the web app."),
    samples: bool = typer.Option(
        True, "--samples/--no-samples", help="Index the bundled sample documents first if the collection is empty."
    ),
) -> None:
    """Chat with your documents in the browser (Streamlit), with cited answers and a documents view."""
    from rag.config import load_settings
    from rag.errors import ConfigError, RagError
    from rag.wiring import Wiring

    if importlib.util.find_spec("streamlit") is None:
        raise ConfigError("rag chat needs Streamlit: pip install 'rag-private-docs[ui]'")
    settings = load_settings()  # read here too, so a bad setting is one line now rather than an error in the page
    if samples:
        try:
            _index_samples_if_empty(settings)
        except RagError as e:  # the app still opens; its Documents tab can index them (and shows the same error)
            typer.secho(f"warning: could not index the samples: {e}", fg=typer.colors.YELLOW, err=True)
    if settings.llm.base_url is None:
        typer.echo("Starting the embedded language model (reused if already running)…", err=True)
        try:
            # Started now so the first answer is quick; the app's wiring finds this one (or restarts it if it
            # died), so no URL needs passing down.
            Wiring(settings).ensure_llm_server()
        except RagError as e:
            # The app still opens (documents can be indexed); questions will show this same message.
            typer.secho(f"warning: {e}", fg=typer.colors.YELLOW, err=True)
    import os

    from rag.policy import auth_required

    env = dict(os.environ)
    if auth_required(settings.auth.mode, host):
        # Sign-in is on (a non-loopback address, or RAG_AUTH__MODE=on): the app shows a login form.
        from rag.identity import IdentityStore, ensure_initial_admin

        try:
            if ensure_initial_admin(settings):
                typer.echo(f"Created the initial admin {settings.auth.initial_admin!r}.", err=True)
            if not IdentityStore(settings.identity_path).has_users():
                typer.secho("error: sign-in is on but there is no user: `rag users add NAME --role admin`, or set "
                            "RAG_AUTH__INITIAL_ADMIN_PASSWORD(_FILE)", fg=typer.colors.RED, err=True)
                raise typer.Exit(2)
        except RagError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        env["RAG_AUTH__MODE"] = "on"
        typer.echo("Sign-in is on (users: rag users list).", err=True)
    else:
        env["RAG_AUTH__MODE"] = "off"
    typer.echo(f"Open http://{host}:{port} in your browser (Ctrl+C to stop).", err=True)
    try:
        # Streamlit ends with this command: on Ctrl+C, on SIGTERM (rag.cli turns it into an exception that stops
        # the child first), and even on kill -9 of this process (the child asks Linux to be told).
        code = run_foreground(streamlit_command(host, port, settings.ui.max_upload_mb), env=env)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def _index_samples_if_empty(settings: object) -> None:
    """A first ``rag chat`` on a fresh checkout opens on something to ask about: the bundled samples."""
    from ingest.pipeline import ingest_paths
    from ingest.samples import SAMPLES_DIR, sample_documents
    from rag.config import Settings
    from rag.wiring import Wiring

    assert isinstance(settings, Settings)
    files = sample_documents()
    wiring = Wiring(settings)
    if not files or wiring.collection().documents():
        return
    typer.echo(
        f"The collection {settings.collection!r} is empty: indexing the {len(files)} sample documents of "
        f"{SAMPLES_DIR} (skip with --no-samples; add yours in the app's Documents tab or with rag ingest)…",
        err=True,
    )
    summary = ingest_paths(files, wiring)
    typer.echo(f"  {summary.new} indexed, {len(summary.failed)} failed in {summary.seconds:.1f} s", err=True)
    for f in summary.failed:
        typer.secho(f"  not indexed: {f.path}: {f.reason}", fg=typer.colors.YELLOW, err=True)
