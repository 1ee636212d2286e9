"""`sluiceway up` (what `make up` runs): server, UI and demo agent; Ctrl-C stops all,
the demo agent first, while the server still takes its last pushes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.procs import REPO, free_port, sluiceway_cmd


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class Up:
    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(sluiceway_cmd("up", "--listen", f"127.0.0.1:{port}",
                                                   "--data-dir", str(self.data)),
                                     cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.agent_pid = 0

    def wait_for_the_agent(self) -> None:
        """Until the demo agent's heartbeat shows shipped lines; notes its pid."""
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not self.agent_pid:
            time.sleep(0.3)
            try:
                rows = httpx.get(f"{self.url}/sluiceway/api/v1/pipeline").json()["data"]
            except httpx.HTTPError:
                continue
            self.agent_pid = next((r["pid"] for r in rows if r["kind"] == "agent"
                                   and r["lines"]["shipped"] > 0), 0)
        assert self.agent_pid, "the demo agent did not report"

    def stop(self, sig: int, group: bool) -> str:
        """Send `sig` (to the process group: what Ctrl-C in a terminal does) and wait for
        `up` to return; asserts its demo agent was gone by then and shipped everything."""
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            os.kill(self.proc.pid, sig)
        try:
            out, _ = self.proc.communicate(timeout=60)
        finally:
            agent_left = bool(self.agent_pid) and _alive(self.agent_pid)
            if agent_left:
                os.kill(self.agent_pid, signal.SIGKILL)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        text = out.decode(errors="replace")
        assert not agent_left, "`up` returned while its demo agent was still running"
        assert "Traceback" not in text, text
        # the server was still there for the agent's last pushes: all it read shipped
        summary = re.search(r"agent stopped: (\d+) lines read, (\d+) shipped, (\d+) spilled,"
                            r" (\d+) lost", text)
        assert summary, text
        read, shipped, spilled, lost = map(int, summary.groups())
        assert read > 0 and (shipped, spilled, lost) == (read, 0, 0), text
        assert "push failed" not in text and "kept for the next run" not in text, text
        return text


def test_up_serves_ui_and_demo_logs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    up = Up(tmp_path)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not lines:
            time.sleep(0.5)
            try:
                r = httpx.get(f"{up.url}/loki/api/v1/query_range",
                              params={"query": '{job="demo"}', "limit": "10"})
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                lines = [v[1] for s in r.json()["data"]["result"] for v in s["values"]]
        assert lines, "the demo agent shipped nothing"
        page = httpx.get(f"{up.url}/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert page.status_code == 200 and "<html" in page.text.lower()
        up.wait_for_the_agent()
    finally:
        text = up.stop(signal.SIGINT, group=True)
    assert up.proc.returncode in (0, 130), text  # clean stop, or interrupted by Ctrl-C
    assert list(up.data.glob("tenants/*/chunks/*/*.chunk")), \
        "a clean stop flushes the heads to chunks"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_up_alone_signalled_stops_its_agent_first_and_waits_for_it(tmp_path: Path,
                                                                   sig: int) -> None:
    """The signal reaches `up` only (a process manager, `kill`): it stops the agent."""
    up = Up(tmp_path)
    try:
        up.wait_for_the_agent()
    finally:
        up.stop(sig, group=False)


def test_up_says_it_is_up_only_once_the_server_answers(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(sluiceway_cmd("up", "--no-demo", "--listen", f"127.0.0.1:{port}",
                                          "--data-dir", str(tmp_path / "data")),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        seen = []
        for raw in proc.stdout:
            seen.append(raw.decode(errors="replace"))
            if "is up" in seen[-1]:
                break
        assert "is up" in seen[-1], "".join(seen)
        # No waiting: when it says so, the port answers.
        assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)


def test_up_on_a_taken_port_never_says_it_is_up(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(sluiceway_cmd("up", "--no-demo", "--listen", f"127.0.0.1:{port}",
                                         "--data-dir", str(tmp_path / "data")),
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "is up" not in r.stdout + r.stderr
    assert "already in use" in r.stderr and "Traceback" not in r.stderr
