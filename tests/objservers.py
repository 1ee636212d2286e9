"""Real object store servers for tests and benches: an S3-compatible server (`moto`'s
server mode, from PyPI, run as `python -m moto.server`) and `nats-server -js` (Debian's
package), each a process on a free loopback port with its own temp dir."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

import httpx

from tests.procs import ExternalProcess, free_port

# Any key works with moto; given explicitly so the client never looks further along the
# credential chain (the instance metadata service is not on this machine's loopback).
S3_KEY_ID, S3_SECRET, S3_REGION = "sluiceway-test", "sluiceway-test-secret", "us-east-1"


def nats_server_binary() -> str | None:
    """`nats-server` on PATH, or where Debian puts it (`/usr/sbin`, not on every PATH)."""
    return shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")


class MotoS3(ExternalProcess):
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


class NatsJetStream(ExternalProcess):
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
