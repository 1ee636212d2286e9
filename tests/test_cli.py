"""The `sluiceway` command loads only the command being run."""

from __future__ import annotations

import subprocess
import sys

from tests.procs import REPO


def test_agent_command_does_not_load_the_server_or_query_engine() -> None:
    code = ("import sys; sys.argv = ['sluiceway', 'agent', '--help']\n"
            "import sluiceway.cli\n"
            "print(sorted(m for m in sys.modules if m.startswith(('sluiceway.server', "
            "'sluiceway.logql', 'uvicorn'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_help_lists_every_command() -> None:
    r = subprocess.run([sys.executable, "-m", "sluiceway", "--help"], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0
    for cmd in ("server", "up", "agent", "query"):
        assert cmd in r.stdout
