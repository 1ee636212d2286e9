from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inproc import ThreadServer
from tests.monitoring import require
from tests.objservers import MotoS3, NatsJetStream, nats_server_binary
from tests.procs import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadServer]:
    """A fresh server on a free port with its own data dir, in a thread of the test process
    (`tests.inproc.ThreadServer`): for tests that talk to it over HTTP."""
    srv = ThreadServer(tmp_path / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh real `sluiceway server` process: for tests of the process itself (signals,
    its worker processes, its shutdown)."""
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
