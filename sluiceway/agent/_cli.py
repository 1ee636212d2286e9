"""`sluiceway agent -c agent.yaml` runs the agent; `sluiceway agent status` shows it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from sluiceway.agent._config import ConfigError, load_config

app = typer.Typer(help="Tail files, stdin or syslog and ship them to Sluiceway or any Loki.",
                  add_completion=False, pretty_exceptions_enable=False)


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("-c", "--config", help="agent YAML")] = None,
    listen: Annotated[str | None, typer.Option(
        "--listen", help="host:port for /metrics and /status (overrides the config)")] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        typer.echo("error: sluiceway agent needs -c/--config agent.yaml", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):  # one line per push (or per socket step) is noise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    from sluiceway.agent._agent import Agent, StartError  # heavy imports only when running

    try:
        agent = Agent(cfg, listen=listen)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot start the agent: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        agent.run_forever()
    except StartError as exc:
        typer.echo(f"error: cannot start the agent: {exc}", err=True)
        raise typer.Exit(1) from None


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


_BACKEND_STATES = {"ok": "ok", "retrying": "FAILING (retrying)",
                   "down": "DOWN (fix the url, auth or proxy; lines are kept)"}


def _backend_state(b: dict[str, Any]) -> str:
    return _BACKEND_STATES.get(b.get("state", ""), "ok" if b["ok"] else "FAILING")


def render_status(doc: dict[str, Any]) -> str:
    q, ln, b = doc["queue"], doc["lines"], doc["backend"]
    fill = f"{q['depth']}/{q['capacity']} lines in memory"
    if q.get("in_flight"):
        fill += f" (+{q['in_flight']} in flight)"
    lines = [
        f"agent {doc['name']} (pid {doc['pid']}, up {doc['uptime_s']:.0f}s)",
        f"backend  {b['url']}  {_backend_state(b)}"
        + (f"  last error: {b['last_error']}" if b["last_error"] else ""),
        f"queue    {fill}, {q['bytes']} B of {q['max_bytes']} B, when_full={q['when_full']}"
        + (f" -> {q['when_spill_full']} at the spill cap" if q["when_full"] == "spill" else ""),
        f"spill    {doc['spill_bytes']} B on disk of {q['spill_max_bytes']} B, "
        f"{q['spill_pending']} lines pending" + ("  (FULL)" if q["spill_full"] else ""),
        "",
        _table([("read", "enqueued", "shipped", "spilled", "dropped", "lost", "filtered"),
                tuple(str(ln[k]) for k in ("read", "enqueued", "shipped", "spilled",
                                           "dropped", "lost", "filtered"))]),
    ]
    if doc["lost_by_reason"]:
        lines += ["", "lost by reason: " + ", ".join(
            f"{k}={v}" for k, v in sorted(doc["lost_by_reason"].items()))]
    if doc["files"]:
        rows = [("file", "offset", "size", "lag", "")]
        rows += [(f["path"], str(f["offset"]), str(f["size"]), str(f["lag_bytes"]),
                  "reader waiting" if f.get("waiting") else "") for f in doc["files"]]
        lines += ["", _table(rows)]
    return "\n".join(lines)


@app.command()
def status(
    url: Annotated[str, typer.Option("--url", help="the agent's status address")]
    = "http://127.0.0.1:9080",
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON")] = False,
) -> None:
    """Show a running agent's queue, counters, backend health and files."""
    base = url if url.startswith("http") else f"http://{url}"
    try:
        resp = httpx.get(base.rstrip("/") + "/status", timeout=5)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        typer.echo(f"error: no agent status at {base}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(resp.text if as_json else render_status(resp.json()))
