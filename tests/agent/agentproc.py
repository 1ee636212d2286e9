"""A real `sluiceway agent` subprocess for tests, plus a line writer and a server reader."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.procs import POLL, REPO, ServerProcess, free_port, sluiceway_cmd


class AgentProcess:
    def __init__(self, tmp: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.config = {"listen": f"127.0.0.1:{self.port}", "data_dir": str(tmp / "agent-data"),
                       **config}
        self.cfg_path = tmp / "agent.yaml"
        self.cfg_path.write_text(yaml.safe_dump(self.config))
        self.log_path = tmp / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: float = 20.0) -> AgentProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(sluiceway_cmd("agent", "-c", str(self.cfg_path),
                                                   "--log-level", "debug"),
                                     stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}:\n{self.log()}")
            try:
                if POLL.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"agent not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self) -> dict[str, Any]:
        r = POLL.get(f"{self.url}/status", timeout=5)
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out

    def wait_for(self, pred: Any, timeout: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = self.status()
                if pred(last):
                    return last
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last status {last}\n"
                             f"{self.log()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)


class LineWriter(threading.Thread):
    """Appends numbered ~200-byte lines to a file at a steady pace until stopped."""

    def __init__(self, path: Path, tag: str, per_tick: int = 200, tick: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.path, self.tag, self.per_tick, self.tick = path, tag, per_tick, tick
        self.written = 0
        self.halt = threading.Event()
        self.rotate_req = threading.Event()
        self.rotated = threading.Event()

    def line(self, i: int) -> str:
        return f"{self.tag} seq={i:08d} " + "x" * 170

    def rotate(self) -> None:
        """Ask for a rename rotation (`app.log` -> `app.log.1`, new `app.log`) and wait."""
        self.rotated.clear()
        self.rotate_req.set()
        assert self.rotated.wait(10)

    def run(self) -> None:
        f = open(self.path, "a")  # noqa: SIM115 - reopened on rotation
        try:
            while not self.halt.is_set():
                f.write("".join(self.line(self.written + i) + "\n" for i in range(self.per_tick)))
                f.flush()
                self.written += self.per_tick
                if self.rotate_req.is_set():
                    f.close()
                    os.rename(self.path, self.path.with_name(self.path.name + ".1"))
                    f = open(self.path, "a")  # noqa: SIM115
                    self.rotate_req.clear()
                    self.rotated.set()
                time.sleep(self.tick)
        finally:
            f.close()

    def finish(self) -> int:
        self.halt.set()
        self.join()
        return self.written

    def expected(self) -> list[str]:
        return [self.line(i) for i in range(self.written)]


def fetch_lines(srv: ServerProcess, selector: str, since_s: float = 3600) -> list[str]:
    """Every line of `selector` on the server, paging forward 5000 at a time."""
    start = time.time_ns() - int(since_s * 1e9)
    end = time.time_ns() + 60 * 10**9
    out: list[str] = []
    with httpx.Client(timeout=30) as c:
        while True:
            r = c.get(f"{srv.url}/loki/api/v1/query_range", params={
                "query": selector, "start": str(start), "end": str(end), "limit": "5000",
                "direction": "forward"})
            assert r.status_code == 200, r.text
            values = sorted((int(v[0]), v[1]) for s in r.json()["data"]["result"]
                            for v in s["values"])
            out += [line for _, line in values]
            if len(values) < 5000:
                return out
            start = values[-1][0] + 1
