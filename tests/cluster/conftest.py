"""Cluster tests run NATS clients on event loops of their own threads: after each test
the garbage collector runs at once, so whatever such a loop left behind is collected here
and not later, inside another test's `ast.parse` (pytest's own, when it reports a
failure), where CPython 3.11 turns a finalizer that logs into a SystemError."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collect_after() -> Iterator[None]:
    yield
    gc.collect()
