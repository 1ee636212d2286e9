"""Realistic log lines for the benchmarks: JSON, logfmt and plain text, several streams,
each line carrying random ids (trace ids, user ids, request ids) as real logs do."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

NEEDLE = "needle-7f3a9c"
NEEDLE_EVERY = 100_000  # about one line in 100,000 carries the needle

_PATHS = ["/api/v1/orders", "/api/v1/users", "/api/v1/cart", "/health", "/api/v1/search",
          "/api/v1/payments", "/static/app.js", "/api/v1/inventory"]
_METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
_LEVELS = ["info"] * 14 + ["debug"] * 3 + ["warn"] * 2 + ["error"]
_MSGS = ["request completed", "cache miss, loading from database", "user session refreshed",
         "payment authorised", "retrying upstream call", "slow query detected",
         "order state changed", "rate limit close to threshold", "connection pool exhausted"]
_WORDS = ["db", "kafka", "redis", "upstream", "worker", "scheduler", "http", "grpc"]

STREAMS = [
    {"job": "api", "env": "prod", "format": "json"},
    {"job": "api", "env": "staging", "format": "json"},
    {"job": "worker", "env": "prod", "format": "logfmt"},
    {"job": "worker", "env": "staging", "format": "logfmt"},
    {"job": "nginx", "env": "prod", "format": "plain"},
    {"job": "batch", "env": "prod", "format": "plain"},
]


def _hex(rng: random.Random, n: int) -> str:
    return rng.getrandbits(n * 4).to_bytes(n // 2 + 1, "big").hex()[:n]


def make_line(fmt: str, rng: random.Random, i: int) -> str:
    trace, user = _hex(rng, 32), rng.randrange(1, 5_000_000)
    lvl, msg = rng.choice(_LEVELS), rng.choice(_MSGS)
    path, method = rng.choice(_PATHS), rng.choice(_METHODS)
    dur, status = rng.randrange(1, 2500), rng.choice((200, 200, 200, 201, 204, 404, 500))
    needle = f" {NEEDLE}" if i % NEEDLE_EVERY == NEEDLE_EVERY // 2 else ""
    if fmt == "json":
        return (f'{{"level":"{lvl}","msg":"{msg}{needle}","method":"{method}","path":"{path}",'
                f'"status":{status},"duration_ms":{dur},"user_id":{user},"trace_id":"{trace}"}}')
    if fmt == "logfmt":
        return (f'level={lvl} msg="{msg}{needle}" component={rng.choice(_WORDS)} '
                f'job_id={_hex(rng, 12)} user_id={user} duration={dur}ms trace_id={trace}')
    ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    return (f'{ip} - - "{method} {path}?id={user} HTTP/1.1" {status} {rng.randrange(100, 90000)} '
            f'"-" "Mozilla/5.0 (X11; Linux x86_64)" rt={dur / 1000:.3f} req_id={trace}{needle}')


def batches(total_bytes: int, lines_per_batch: int, seed: int = 7,
            start_ns: int | None = None) -> Iterator[tuple[dict[str, str], list[int], list[str]]]:
    """Yield (labels, ts, lines) batches round-robin over the streams until total_bytes."""
    rng = random.Random(seed)
    produced, i = 0, 0
    step_ns = 1_000_000  # 1000 lines/s per stream
    t0 = start_ns if start_ns is not None else int(os.environ.get("BENCH_T0", "0")) or None
    import time

    t0 = t0 or time.time_ns() - 3 * 3600 * 10**9
    clock = [t0] * len(STREAMS)
    while produced < total_bytes:
        for s_idx, labels in enumerate(STREAMS):
            fmt = labels["format"]
            lines = [make_line(fmt, rng, i + k) for k in range(lines_per_batch)]
            ts = [clock[s_idx] + k * step_ns for k in range(lines_per_batch)]
            clock[s_idx] += lines_per_batch * step_ns
            i += lines_per_batch
            produced += sum(map(len, lines))
            yield labels, ts, lines
            if produced >= total_bytes:
                return
