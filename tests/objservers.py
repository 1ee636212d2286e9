"""Real object store servers for tests and benches: an S3-compatible server (`moto`'s
server mode, from PyPI, run as `python -m moto.server`) and `nats-server -js` (Debian's
package), each a process on a free loopback port with its own temp dir."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.procs import POLL, _die_with_test_process, free_port

# Any key works with moto; given explicitly so the client never looks further along the
# credential chain (the instance metadata service is not on this machine's loopback).
S3_KEY_ID, S3_SECRET, S3_REGION = "sluiceway-test", "sluiceway-test-secret", "us-east-1"


def nats_server_binary() -> str | None:
    """`nats-server` on PATH, or where Debian puts it (`/usr/sbin`, not on every PATH)."""
    return shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")


class _Proc:
    def __init__(self, cmd: list[str], log: Path, ready_url: str, what: str) -> None:
        self.log_path = log
        self.what = what
        out = open(log, "ab")  # noqa: SIM115 - the child's for its lifetime
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_test_process)
        deadline = time.monotonic() + 60
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


class MotoS3(_Proc):
    """moto's S3-compatible server (in memory) on 127.0.0.1."""

    def __init__(self, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        super().__init__([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                          "-p", str(self.port)], tmp / "moto.log",
                         f"{self.endpoint}/moto-api/", "moto server")

    def create_bucket(self, name: str | None = None) -> str:
        """A new empty bucket (moto takes the unsigned request)."""
        name = name or f"b-{uuid.uuid4().hex[:16]}"
        r = httpx.put(f"{self.endpoint}/{name}", timeout=10)
        r.raise_for_status()
        return name


class NatsJetStream(_Proc):
    """`nats-server -js` on a free loopback port, its JetStream files in `tmp`."""

    def __init__(self, tmp: Path, binary: str, port: int | None = None,
                 monitor: int | None = None) -> None:
        """`port` and `monitor` given: a restart of an earlier server over the same dir."""
        tmp.mkdir(parents=True, exist_ok=True)
        self.port, self.monitor = port or free_port(), monitor or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        super().__init__([binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                          "-m", str(self.monitor), "-sd", str(tmp / "js")], tmp / "nats.log",
                         f"http://127.0.0.1:{self.monitor}/healthz?js-enabled-only=true",
                         "nats-server")
