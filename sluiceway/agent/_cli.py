"""`sluiceway agent -c agent.yaml` runs the agent (a Promtail config works too, and so do
Promtail's flags `-config.file=…`, `-config.expand-env`, `-dry-run`, `-inspect`,
`-log.level=…`); `sluiceway agent status` shows a running agent; `sluiceway agent
convert promtail.yaml` prints the agent config a Promtail config amounts to."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import typer
import yaml

from sluiceway.agent._config import ConfigError, load_config, native_doc

app = typer.Typer(help="Tail files, stdin or syslog and ship them to Sluiceway or any Loki.",
                  add_completion=False, pretty_exceptions_enable=False)
log = logging.getLogger("sluiceway.agent")
LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING",
          "error": "ERROR", "critical": "CRITICAL"}

# Promtail's (Go) flags and ours: `-name=value`, `-name value`, `--name=value`.
_GO_VALUE_FLAGS = {"config.file": "--config", "log.level": "--log-level"}
_GO_BOOL_FLAGS = {"config.expand-env": "--config-expand-env", "dry-run": "--dry-run",
                  "inspect": "--inspect", "check-syntax": "--check-syntax",
                  "print-config-stderr": "--print-config-stderr"}


def rewrite_args(args: list[str]) -> list[str]:
    """Promtail's flag forms as this command's options (called by `sluiceway/cli.py`)."""
    out: list[str] = []
    it = iter(args)
    for arg in it:
        if not arg.startswith("-") or arg == "--":
            out.append(arg)
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name in _GO_VALUE_FLAGS:
            out.append(_GO_VALUE_FLAGS[name])
            out.append(value if eq else next(it, ""))
        elif name in _GO_BOOL_FLAGS:
            if not eq or value.lower() in ("true", "1", "t"):
                out.append(_GO_BOOL_FLAGS[name])
            elif value.lower() not in ("false", "0", "f"):
                out.append(arg)  # not a boolean: let the parser say so
        else:
            out.append(arg)
    return out


def _level(name: str) -> str:
    level = LEVELS.get(name.lower())
    if level is None:
        typer.echo(f"error: unknown log level {name!r}; use one of debug, info, warn, error",
                   err=True)
        raise typer.Exit(2)
    return level


def announce(cfg: Any) -> None:
    """What a Promtail config's translation said, in one message per kind, at start."""
    notes = cfg.notes
    if notes is None:
        return
    if notes.unsupported:
        log.warning("Promtail config: not supported here, left out (the rest runs): %s",
                    "; ".join(t for _, t in notes.unsupported))
    if notes.kept:
        log.warning("Promtail config: keeping Promtail's meaning: %s",
                    "; ".join(t for _, t in notes.kept))
    if notes.ignored:
        log.info("Promtail config: these keys have no effect here: %s",
                 ", ".join(t for _, t in notes.ignored))


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "-c", "--config", help="agent YAML, or a Promtail config")] = None,
    listen: Annotated[str | None, typer.Option(
        "--listen", help="host:port for /metrics and /status (overrides the config)")] = None,
    log_level: Annotated[str | None, typer.Option(
        "--log-level", help="debug, info, warn or error [default: info, or a Promtail "
        "config's server.log_level]")] = None,
    expand_env: Annotated[bool, typer.Option(
        "--config-expand-env", help="Promtail config: replace ${VAR} and ${VAR:-default} "
        "(an agent config always does)")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the entries instead of sending them; save no position.")]
    = False,
    inspect: Annotated[bool, typer.Option(
        "--inspect", help="With --dry-run: print what each pipeline stage changes.")] = False,
    check_syntax: Annotated[bool, typer.Option(
        "--check-syntax", help="Only check the config, then exit.")] = False,
    print_config: Annotated[bool, typer.Option(
        "--print-config-stderr", help="Print the agent config in force on stderr.")] = False,
) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    if ctx.invoked_subcommand is not None:
        return
    level = _level(log_level) if log_level is not None else None
    if config is None:
        typer.echo("error: sluiceway agent needs -c/--config agent.yaml (or Promtail's "
                   "-config.file=promtail.yaml)", err=True)
        raise typer.Exit(2)
    try:
        cfg = load_config(config, expand_env=expand_env)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if level is None:
        from sluiceway.agent._promtail import log_level as promtail_level

        given = promtail_level(yaml.safe_load(config.read_text()) or {}) \
            if cfg.notes is not None else None
        level = _level(given) if given else "INFO"
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):  # one line per push (or per socket step) is noise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if print_config:
        typer.echo(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True),
                                  sort_keys=False), err=True)
    if check_syntax:
        typer.echo(f"{config}: valid")
        return
    announce(cfg)
    from sluiceway.agent._agent import Agent, StartError  # heavy imports only when running

    if inspect:
        from sluiceway.agent._dryrun import inspect as show
        from sluiceway.agent._pipeline import PipelineSpec

        PipelineSpec.inspect = show
    try:
        agent = Agent(cfg, listen=listen, dry_run=dry_run or inspect)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot start the agent: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        agent.run_forever()
    except StartError as exc:
        typer.echo(f"error: cannot start the agent: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def convert(
    config: Annotated[Path, typer.Argument(metavar="PROMTAIL_YAML",
                                           help="a Promtail config file")],
    expand_env: Annotated[bool, typer.Option(
        "--config-expand-env", help="replace ${VAR} and ${VAR:-default} first")] = False,
) -> None:
    """Print the agent config a Promtail config amounts to, differences marked."""
    try:
        doc, notes = native_doc(config, expand_env=expand_env)
        # What would not run fails here (the printed config keeps ${VAR}s: an agent
        # config always expands them).
        load_config(config, expand_env=True)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if notes is None:
        typer.echo(f"error: {config} is not a Promtail config (it has no clients or "
                   "scrape_configs); it is read as an agent config as it is", err=True)
        raise typer.Exit(2)
    typer.echo(render_converted(doc, notes, str(config)), nl=False)


def render_converted(doc: dict[str, Any], notes: Any, source: str) -> str:
    """YAML of the native config; each section preceded by its notes as comments."""
    def dump(value: Any) -> str:
        return yaml.safe_dump(value, sort_keys=False, default_flow_style=False)

    def comments(where: str, indent: str = "") -> str:
        return "".join(f"{indent}# {line}\n" for line in notes.of(where))

    out = [f"# sluiceway agent config converted from {source}\n",
           "# Lines marked 'promtail:' keep Promtail's meaning where the agent's default "
           "differs;\n# 'not supported' parts are left out; the rest runs as written.\n"]
    out.append(comments(""))
    for key, value in doc.items():
        if key in ("clients", "inputs") and isinstance(value, list):
            out.append(f"{key}:\n")
            for i, item in enumerate(value):
                out.append(comments(f"{key}[{i}]", "  "))
                text = dump([item])
                out.append("".join(f"  {line}\n" for line in text.splitlines()))
        else:
            out.append(dump({key: value}))
    return "".join(out)


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
    base = url if "://" in url else f"http://{url}"
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        typer.echo(f"error: invalid --url {url!r}: expected host:port or http://host:port",
                   err=True)
        raise typer.Exit(2)
    try:
        resp = httpx.get(base.rstrip("/") + "/status", timeout=5)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        typer.echo(f"error: no agent status at {base}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(resp.text if as_json else render_status(resp.json()))
