"""The `sluiceway` command: each package contributes its commands from its own `_cli.py`."""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperOption

from sluiceway import __version__

app = typer.Typer(
    help="Sluiceway: logging stack with a Loki-compatible server, agent and in-app client.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"sluiceway {__version__}")
        raise typer.Exit()


@app.callback()
def _group(
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """Keeps `sluiceway` a command group even when only one command is loaded."""


# A flag takes no value, so its help shows none (typer would print `<bool>`).
_display_type = TyperOption.display_type_rich


def _flag_display_type(self: TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag and self.metavar is None else _display_type(self, ctx)


TyperOption.display_type_rich = _flag_display_type  # type: ignore[method-assign]

# (name, module, attribute): a typer.Typer to mount as a group, or a function to add as a
# command.
_COMMANDS: list[tuple[str, str, str]] = [
    ("server", "sluiceway.server._cli", "server"),
    ("up", "sluiceway._up", "up"),
    ("agent", "sluiceway.agent._cli", "app"),
    ("query", "sluiceway.logcli._cli", "query"),
    ("labels", "sluiceway.logcli._cli", "labels"),
    ("series", "sluiceway.logcli._cli", "series"),
    ("volume", "sluiceway.logcli._cli", "volume"),
    ("volume_range", "sluiceway.logcli._cli", "volume_range"),
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
        obj: Any = getattr(mod, attr)
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=name)
        else:
            app.command(name=name)(obj)
        # A command may read flags written its own way (the agent takes Promtail's
        # `-config.file=…`): it rewrites its own arguments before click parses them.
        rewrite = getattr(mod, "rewrite_args", None)
        if wanted is not None and callable(rewrite):
            argv[2:] = rewrite(argv[2:])


_register(sys.argv)


def main() -> None:
    app()
