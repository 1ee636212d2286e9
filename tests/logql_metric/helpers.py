"""Shared helpers: the fixture data set in a `MemorySource`, small hand-made sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import sluiceway.logql._metric as metric_engine
from sluiceway.logql import MemorySource, QueryParams
from sluiceway.logql._metric import evaluate_metric
from sluiceway.model import StreamBatch
from tests.procs import FIXTURES

RESPONSES = FIXTURES / "responses"
TENANT = "fake"
S = 1_000_000_000


def load_json(name: str) -> Any:
    return json.loads((RESPONSES / name).read_text())


def dataset_source(base: int) -> MemorySource:
    """dataset.json re-based on `base` (ns)."""
    data = load_json("dataset.json")
    src = MemorySource(block_size=16)
    batches = []
    for st in data["streams"]:
        b = StreamBatch(dict(st["stream"]), [], [], [])
        for v in st["values"]:
            b.append(base + int(v[0]), v[1], v[2] if len(v) > 2 else None)
        batches.append(b)
    src.push(TENANT, batches)
    return src


def make_source(streams: dict[str, list[tuple[float, str]]],
                metadata: dict[tuple[str, float], dict[str, str]] | None = None,
                tenant: str = TENANT) -> MemorySource:
    """Streams given as `{'{a="b"}': [(seconds, line), ...]}`."""
    from sluiceway.model import parse_labels

    src = MemorySource(block_size=4)
    batches = []
    for sel, entries in streams.items():
        b = StreamBatch(parse_labels(sel), [], [], [])
        for t, line in entries:
            md = (metadata or {}).get((sel, t))
            b.append(int(round(t * S)), line, md)
        batches.append(b)
    src.push(tenant, batches)
    return src


def run(src: MemorySource, query: str, start: float, end: float | None = None,
        step: float | None = None, tenants: tuple[str, ...] = (TENANT,)) -> dict[str, Any]:
    """Evaluate; instant when `end` is None. Times in seconds. Returns data minus stats."""
    if end is None:
        params = QueryParams(list(tenants), int(start * S), int(start * S), instant=True)
    else:
        params = QueryParams(list(tenants), int(start * S), int(end * S),
                             step_ns=None if step is None else int(step * S))
    data = evaluate_metric(src, query, params).to_loki_json()
    data.pop("stats")
    return data


def path_of(name: str) -> Path:
    return RESPONSES / name


def columnar_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a range aggregation reaches the per-line engine: the query shapes
    it runs must all be taken by the columnar one."""
    def per_line(*_args: Any) -> None:
        raise AssertionError("the per-line engine ran: the query was meant for the "
                             "columnar one")

    monkeypatch.setattr(metric_engine, "scan", per_line)
