"""One real server for every module here that needs one (each start/stop costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.procs import ServerProcess


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("metric-server") / "data").start()
    try:
        yield srv
    finally:
        srv.stop()
