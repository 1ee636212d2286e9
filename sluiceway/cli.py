"""The `sluiceway` command: each package contributes its commands from its own `_cli.py`."""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    help="Sluiceway: logging stack with a Loki-compatible server, agent and in-app client.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.callback()
def _group() -> None:
    """Keeps `sluiceway` a command group even when only one command is loaded."""


# (module, attribute): a typer.Typer to mount as a group, or a function to add as a command.
_COMMANDS: list[tuple[str, str, str]] = [
    ("server", "sluiceway.server._cli", "server"),
    ("up", "sluiceway._up", "up"),
    ("agent", "sluiceway.agent._cli", "app"),
    ("query", "sluiceway.logql._cli", "query"),
    ("ledger", "sluiceway.server._cli", "ledger"),
]


def _register(argv: list[str]) -> None:
    # Import only the command being run (the agent must not load the server and the query
    # engine); everything for --help or an unknown command.
    names = {name for name, _, _ in _COMMANDS}
    wanted = argv[1] if len(argv) > 1 and argv[1] in names else None
    for name, module, attr in _COMMANDS:
        if wanted is not None and name != wanted:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # that package has no CLI yet
                continue
            raise
        obj = getattr(mod, attr)
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=name)
        else:
            app.command(name=name)(obj)


_register(sys.argv)


def main() -> None:
    app()
