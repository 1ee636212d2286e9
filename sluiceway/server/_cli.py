"""`sluiceway server` and `sluiceway ledger` (`sluiceway up` is the top-level
`sluiceway._up`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sluiceway.server._config import ConfigError, load_config
from sluiceway.server._ledger_cli import ledger
from sluiceway.server._run import StartupError, serve


def _fail(msg: str) -> None:
    typer.echo(f"sluiceway: {msg}", err=True)
    raise typer.Exit(2)


def server(
    config: Annotated[Path | None, typer.Option("-c", "--config",
                                                help="YAML config file (see README).")] = None,
    listen: Annotated[str | None, typer.Option(
        help="HOST:PORT to listen on [default: 127.0.0.1:3100]")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Directory for WAL, chunks and index [default: ./data]")] = None,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", help="Cluster mode: NATS URLs, comma-separated "
        "(nats://h:p,...); see README 'Cluster mode'.")] = None,
    role: Annotated[str | None, typer.Option(
        "--role", help="Cluster role: all|distributor|ingester|querier|compactor|"
        "ruler [default: all]")] = None,
    recover_chunks: Annotated[bool, typer.Option(
        "--recover-chunks", help="At this start, take back the chunks no index object "
        "names whose lines are served nowhere else (the orphan sweep keeps them and "
        "warns; see README 'Storage').")] = False,
) -> None:
    """Run the server: Loki push and query API, storage, UI (one node, or with --cluster
    one process of a cluster on NATS JetStream)."""
    overrides: dict[str, object] = {}
    if listen is not None:
        overrides["server.listen"] = listen
    if data_dir is not None:
        overrides["storage.data_dir"] = str(data_dir)
    if cluster is not None:
        overrides["cluster.urls"] = cluster
    if role is not None:
        overrides["cluster.role"] = role
    if recover_chunks:
        overrides["storage.recover_chunks"] = True
    try:
        cfg = load_config(config, overrides)
        serve(cfg)
    except (ConfigError, StartupError) as exc:
        _fail(str(exc))



__all__ = ["ledger", "server"]
