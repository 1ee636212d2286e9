from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh real server process on a free port with its own data dir."""
    srv = ServerProcess(tmp_path / "data").start()
    yield srv
    srv.stop()
