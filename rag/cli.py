"""The ``rag`` command: every subcommand registered here, explicitly, and one error wrapper around all of them.

This module is the documented exception to "``rag/`` imports only ``rag``": registering the faces' commands
(``ingest``, ``evals``, ``ui``, ``server``) is its job, and the import contract (``.importlinter``) allows exactly
these imports. The command modules import only typer at module level (heavy libraries load inside the commands),
so ``rag --help`` stays instant.

Exit codes, the same for every command: 0 success; 1 a runtime error (``RagError``: the LLM is down, the index is
locked or unreadable, ...); 2 a usage or configuration error (invalid settings, a malformed ``rag.toml``, a path
or collection that does not exist; also typer's own usage errors); 130 interrupted (Ctrl+C); 143 terminated
(``SIGTERM``; 129 for ``SIGHUP``), after the command has stopped its children and closed its files. The error is
one line on stderr; commands with ``--json`` also print ``{"error": ...}`` on stdout so a script always gets JSON.

    $ rag ingest ~/papers --collection papers
    $ rag search "attention is all you need" --k 5
    $ rag ask "What does the contract say about termination?"
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import typer

from evals.cli import eval_command, judge_meta_command
from ingest.cli import demo_command, ingest_command
from rag.commands import ask_command, search_command, serve_llm_command
from rag.doctor import doctor_command
from server.cli import keys_app, serve_command, users_app
from ui.cli import chat_command

app = typer.Typer(
    name="rag",
    help="Retrieval-augmented generation over your private documents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("ingest", ingest_command),
    ("search", search_command),
    ("ask", ask_command),
    ("chat", chat_command),
    ("demo", demo_command),
    ("eval", eval_command),
    ("judge-meta", judge_meta_command),
    ("serve-llm", serve_llm_command),
    ("serve", serve_command),
    ("doctor", doctor_command),
)


def fail(message: str, code: int, *, json_out: bool = False) -> typer.Exit:
    """Print ``message`` as one ``error:`` line on stderr (and as JSON on stdout for ``--json``); the exit to raise."""
    if json_out:
        typer.echo(json.dumps({"error": message}, ensure_ascii=False))
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with the one error policy of the ``rag`` command (see the module docstring)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        from rag.config import describe_validation_error
        from rag.errors import RagError
        from rag.processes import Terminated, terminating_on_signals

        json_out = bool(kwargs.get("json_out"))
        try:
            with terminating_on_signals():  # SIGTERM/SIGHUP unwind like Ctrl+C: children stopped, files closed
                return func(*args, **kwargs)
        except RagError as e:
            raise fail(str(e), e.exit_code, json_out=json_out) from None
        except ValidationError as e:  # settings built without load_settings (a bug, but still one line)
            raise fail(describe_validation_error(e), 2, json_out=json_out) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130, json_out=json_out) from None
        except Terminated as e:
            raise fail(f"terminated by {e}", e.exit_code, json_out=json_out) from None

    return wrapper


for _name, _func in COMMANDS:
    app.command(_name)(guarded(_func))

# command groups (`rag users add ...`, `rag keys create ...`): every subcommand gets the same error policy
for _group in (users_app, keys_app):
    for _info in _group.registered_commands:
        _info.callback = guarded(_info.callback) if _info.callback else None
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
