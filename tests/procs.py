"""Start the real `sluiceway` processes for tests: free ports, readiness waits, SIGKILL/SIGSTOP."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"

# One client for the readiness and status polls of tests/*: `httpx.get` builds a client
# (and an SSL context) per call, tens of ms of CPU, taken from the processes under test
# 20 times a second while a poll waits.
POLL = httpx.Client(timeout=5)


def _die_with_test_process() -> None:
    """A child of the tests is killed by the kernel if pytest itself dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ExternalProcess:
    """A third-party server process for tests (Alertmanager, Prometheus, moto, nats-server):
    started on a loopback port, killed with pytest, ready once `ready_url` answers 200."""

    def __init__(self, cmd: list[str], log: Path, ready_url: str, what: str,
                 timeout: float = 60.0) -> None:
        self.log_path = log
        self.what = what
        out = open(log, "ab")  # noqa: SIM115 - the child's for its lifetime
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_test_process)
        deadline = time.monotonic() + timeout
        while not self._ready(ready_url):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{what} did not get ready:\n{self.log()}")
            time.sleep(0.05)

    def _ready(self, url: str) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.what} exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return POLL.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def sluiceway_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sluiceway", *args]


class ServerProcess:
    """A `sluiceway server` subprocess with its own data dir and port."""

    def __init__(self, data_dir: Path, config: Path | None = None, port: int | None = None,
                 extra_args: tuple[str, ...] = (),
                 preexec: Callable[[], None] | None = None) -> None:
        self.data_dir = data_dir
        self.config = config
        self.port = port or free_port()
        self.extra_args = extra_args
        self.preexec = preexec
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    def _preexec(self) -> None:
        _die_with_test_process()
        if self.preexec is not None:
            self.preexec()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: float = 30.0) -> ServerProcess:
        args = ["server", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)]
        if self.config is not None:
            args += ["-c", str(self.config)]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(sluiceway_cmd(*args, *self.extra_args), stdout=log,
                                     stderr=subprocess.STDOUT, cwd=REPO,
                                     preexec_fn=self._preexec)
        self.wait_ready(wait)
        return self

    def wait_ready(self, wait: float = 30.0) -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if POLL.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {wait}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
