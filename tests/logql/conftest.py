"""The shared data set (fixtures/responses/dataset.json) loaded into a `MemorySource`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from sluiceway.logql import MemorySource
from sluiceway.model import StreamBatch
from tests.procs import FIXTURES

RESPONSES = FIXTURES / "responses"
TENANT = "fake"
HOUR = 3600 * 10**9


@dataclass
class Dataset:
    base: int
    source: MemorySource
    # (stream labels, ts, line, structured metadata or None) for every entry
    entries: list[tuple[dict[str, str], int, str, dict[str, str] | None]]


def load_dataset(block_size: int = 16) -> Dataset:
    raw: dict[str, Any] = json.loads((RESPONSES / "dataset.json").read_text())
    base = int(raw["baseNs"])
    src = MemorySource(block_size=block_size)
    entries = []
    for s in raw["streams"]:
        batch = StreamBatch(dict(s["stream"]))
        for v in s["values"]:
            md = v[2] if len(v) > 2 else None
            batch.append(base + int(v[0]), v[1], md)
            entries.append((dict(s["stream"]), base + int(v[0]), v[1], md))
        src.push(TENANT, [batch])
    return Dataset(base, src, entries)


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return load_dataset()
