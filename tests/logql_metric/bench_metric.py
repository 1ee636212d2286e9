"""Metric scan speed over an in-memory data set (run: python -m tests.logql_metric.bench_metric).

Builds ~200 MB of JSON lines in 4096-entry `EntryBlock`s (the shape the store hands
the engine) over 8 streams and one hour, then times metric queries. MB/s counts the
raw line bytes of the matched streams in the queried range.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from sluiceway.logql import QueryParams
from sluiceway.logql._metric import evaluate_metric
from sluiceway.model import EntryBlock, Matcher, SeriesRef, fingerprint, matches_all

HOUR = 3600 * 10**9
BLOCK = 4096
LEVELS = ("info", "info", "info", "warn", "error", "debug")


class BlockSource:
    """A `LogSource` over prebuilt blocks (no per-query copying)."""

    def __init__(self) -> None:
        self.streams: dict[int, tuple[SeriesRef, list[EntryBlock]]] = {}

    def add(self, labels: dict[str, str], blocks: list[EntryBlock]) -> None:
        fp = fingerprint(labels)
        self.streams[fp] = (SeriesRef("bench", fp, labels), blocks)

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        return [ref for ref, _ in self.streams.values()
                if ref.tenant in tenants and matches_all(matchers, dict(ref.labels))]

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str,
               **_: Any) -> Iterator[EntryBlock]:
        for b in self.streams[ref.fp][1]:
            if b.ts[-1] >= start and b.ts[0] < end:
                yield b


def build(total_mb: float, streams: int = 8, seed: int = 7) -> tuple[BlockSource, int]:
    rnd = random.Random(seed)
    src = BlockSource()
    per_stream = int(total_mb * 1e6 / streams)
    size = 0
    for s in range(streams):
        lines: list[bytes] = []
        used = 0
        while used < per_stream:
            line = (f'{{"level":"{rnd.choice(LEVELS)}","method":"GET","path":"/api/v{s}/'
                    f'items/{rnd.randrange(10**6)}","status":{rnd.choice((200, 200, 404, 500))},'
                    f'"duration_ms":{rnd.randrange(1, 2000)},"msg":"request served"}}').encode()
            lines.append(line)
            used += len(line)
        n = len(lines)
        ts = np.sort(np.random.default_rng(seed + s).integers(0, HOUR, n)).astype(np.int64)
        labels = {"job": "bench", "stream": str(s)}
        blocks = [EntryBlock.from_lines(labels, ts[i:i + BLOCK], lines[i:i + BLOCK], None)
                  for i in range(0, n, BLOCK)]
        src.add(labels, blocks)
        size += used
    return src, size


QUERIES = [
    'sum by (level) (count_over_time({job="bench"} | json | level="error" [1m]))',
    'sum by (stream) (count_over_time({job="bench"}[1m]))',
    'sum(bytes_rate({job="bench"} |= "error" [5m]))',
    'quantile_over_time(0.99, {job="bench"} | json | unwrap duration_ms [5m]) by (level)',
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=200.0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    src, size = build(args.mb)
    print(f"built {size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s")
    params = QueryParams(["bench"], 0, HOUR, step_ns=60 * 10**9)
    for q in QUERIES:
        t = time.perf_counter()
        res = evaluate_metric(src, q, params)
        secs = time.perf_counter() - t
        lines = res.stats.lines_processed
        print(f"{secs:7.2f} s  {size / 1e6 / secs:8.1f} MB/s  {lines / secs / 1e6:6.2f} M lines/s"
              f"  {len(res.result)} series  {q}")


if __name__ == "__main__":
    main()
