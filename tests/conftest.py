from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.monitoring import require
from tests.objservers import MotoS3, NatsJetStream, nats_server_binary
from tests.procs import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh real server process on a free port with its own data dir."""
    srv = ServerProcess(tmp_path / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto's S3-compatible server, a process on a free loopback port (one per session;
    each test makes its own bucket)."""
    srv = MotoS3(tmp_path_factory.mktemp("moto"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def nats_js(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsJetStream]:
    """`nats-server -js` (Debian's package), a process on a free loopback port (one per
    session; each test makes its own buckets)."""
    binary = nats_server_binary() or require("nats-server", "nats-server")
    srv = NatsJetStream(tmp_path_factory.mktemp("nats"), binary)
    yield srv
    srv.stop()
