"""`sluiceway up`: the server in this process, plus a demo agent shipping sample logs to it."""

from __future__ import annotations

import atexit
import subprocess
import sys
from pathlib import Path

from sluiceway.server._config import load_config
from sluiceway.server._run import serve

DEMO_AGENT_YAML = """\
url: http://{listen}
data_dir: {data}/demo-agent
report_url: http://{listen}
inputs:
  - type: demo
    labels: {{job: demo}}
"""


def _start_demo_agent(listen: str, data_dir: Path) -> subprocess.Popen[bytes] | None:
    try:
        import sluiceway.agent  # noqa: F401 - the agent is optional in a partial install
    except ImportError:
        return None
    cfg_path = data_dir / "demo-agent.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(DEMO_AGENT_YAML.format(listen=listen, data=data_dir.resolve()))
    proc = subprocess.Popen([sys.executable, "-m", "sluiceway", "agent", "-c", str(cfg_path)])
    atexit.register(proc.terminate)
    return proc


def run_stack(listen: str, data_dir: Path, demo: bool) -> None:
    cfg = load_config(None, {"server.listen": listen, "storage.data_dir": str(data_dir)})
    if demo:
        _start_demo_agent(listen, data_dir)
    print(f"Sluiceway is up: UI and Loki API on http://{listen}  (Ctrl-C stops)", flush=True)
    serve(cfg)
