"""Cluster tests run NATS clients on event loops of their own threads: after each test
the garbage collector runs at once, so whatever such a loop left behind is collected here
and not later, inside another test's `ast.parse` (pytest's own, when it reports a
failure), where CPython 3.11 turns a finalizer that logs into a SystemError."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.natsprocs import NatsNode, nats_or_skip, single_node


@pytest.fixture(autouse=True)
def _collect_after() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsNode]:
    """A nats-server with JetStream of the test's own."""
    node = single_node(nats_or_skip(), tmp_path / "nats")
    yield node
    node.stop()
