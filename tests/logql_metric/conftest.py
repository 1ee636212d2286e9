"""One server for every module here that needs one (in a thread of the test process: the
processes under test here are the `sluiceway query` CLI's, not the server's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.inproc import ThreadServer


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    srv = ThreadServer(tmp_path_factory.mktemp("metric-server") / "data").start()
    try:
        yield srv
    finally:
        srv.stop()
