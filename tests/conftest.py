from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import FIXTURES, SHARED, ServerProcess


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.fail(f"shared/ not found beside the repository at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh real server process on a free port with its own data dir."""
    srv = ServerProcess(tmp_path / "data").start()
    yield srv
    srv.stop()
