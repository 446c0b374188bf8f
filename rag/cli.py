"""The ``rag`` command: the composition root that wires ``rag``, ``ingest``, ``evals`` and ``ui`` together.

Each subcommand lives beside the code it drives and is registered here; imports stay cheap (heavy libraries load
inside the commands), so ``rag --help`` is instant.

    $ rag ingest ~/papers --collection papers
    $ rag search "attention is all you need" --k 5
    $ rag ask "What does the contract say about termination?"
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="rag",
    help="Retrieval-augmented generation over your private documents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from importlib import import_module

    # (module, attribute, command name); a module that is not there yet simply adds no command.
    commands = [
        ("ingest.cli", "ingest_command", "ingest"),
        ("rag.commands", "search_command", "search"),
        ("rag.commands", "ask_command", "ask"),
        ("rag.commands", "serve_llm_command", "serve-llm"),
        ("rag.commands", "demo_command", "demo"),
        ("evals.cli", "eval_command", "eval"),
        ("evals.cli", "judge_meta_command", "judge-meta"),
        ("ui.cli", "chat_command", "chat"),
    ]
    for module_name, attr, name in commands:
        try:
            module = import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and module_name.startswith(e.name):
                continue
            raise
        func = getattr(module, attr, None)
        if func is not None:
            app.command(name)(func)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
