"""`sluiceway up`: the server in this process, plus a demo agent shipping sample logs to it.

A top-level module: it composes two packages (server and agent) that may not import each
other, as `sluiceway/cli.py` wires every package's commands.

On Ctrl-C (SIGINT) or SIGTERM the demo agent is stopped first, while the server still
takes its last pushes, and waited for; then the server shuts down. `up` returns only
after both have exited.
"""

from __future__ import annotations

import atexit
import errno
import socket
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from sluiceway.server import ConfigError, StartupError, load_config, serve

DEMO_AGENT_YAML = """\
url: http://{listen}
data_dir: {data}/demo-agent
report_url: http://{listen}
inputs:
  - type: demo
    labels: {{job: demo}}
"""
DEMO_STATUS = "127.0.0.1:9080"
# The agent drains for its shutdown_timeout (5 s) and exits about a second later; past
# this, it is killed so that `up` always returns.
AGENT_STOP_WAIT = 20.0


def _status_listen() -> str:
    """The agent's usual status address, or a free port when another agent has it."""
    host, port = DEMO_STATUS.rsplit(":", 1)
    with socket.socket() as s:
        try:
            s.bind((host, int(port)))
            return DEMO_STATUS
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    with socket.socket() as s:
        s.bind((host, 0))
        return f"{host}:{s.getsockname()[1]}"


def _start_demo_agent(listen: str, data_dir: Path) -> subprocess.Popen[bytes] | None:
    try:
        import sluiceway.agent  # noqa: F401 - the agent is optional in a partial install
    except ImportError:
        return None
    cfg_path = data_dir / "demo-agent.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(DEMO_AGENT_YAML.format(listen=listen, data=data_dir.resolve()))
    status = _status_listen()
    proc = subprocess.Popen([sys.executable, "-m", "sluiceway", "agent", "-c", str(cfg_path),
                             "--listen", status])
    atexit.register(stop_agent, proc)  # if the server fails to start, or anything else
    print(f"Demo agent: pid {proc.pid}, its pipeline view on http://{status}/ (works while "
          f"the server is down), status on http://{status}/status", flush=True)
    return proc


def stop_agent(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the agent and wait for it to exit (killed after AGENT_STOP_WAIT)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(AGENT_STOP_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_stack(listen: str, data_dir: Path, demo: bool) -> None:
    # The demo shows Grafana Logs Drilldown's patterns too: the miner is on (Loki: off).
    cfg = load_config(None, {"server.listen": listen, "storage.data_dir": str(data_dir),
                             "pattern_ingester.enabled": True})
    agents: list[subprocess.Popen[bytes]] = []

    def ready() -> None:
        # Said once the port is bound and the server answers; the demo agent starts then,
        # so its first push finds the server.
        print(f"Sluiceway is up: UI and Loki API on http://{listen}  (Ctrl-C stops)",
              flush=True)
        agent = _start_demo_agent(listen, data_dir) if demo else None
        if agent is not None:
            agents.append(agent)

    def before_stop() -> None:
        for agent in agents:
            stop_agent(agent)

    try:
        serve(cfg, before_stop=before_stop if demo else None, on_ready=ready)
    finally:
        for agent in agents:
            stop_agent(agent)


def up(
    listen: Annotated[str, typer.Option(help="HOST:PORT for the server")] = "127.0.0.1:3100",
    data_dir: Annotated[Path, typer.Option(help="Server data directory")] = Path("./data"),
    demo: Annotated[bool, typer.Option(help="Also run a demo agent shipping sample logs")] = True,
) -> None:
    """Start the single-node stack: server + UI, and a demo agent feeding it."""
    try:
        run_stack(listen, data_dir, demo)
    except (ConfigError, StartupError) as exc:
        typer.echo(f"sluiceway: {exc}", err=True)
        raise typer.Exit(2) from None
