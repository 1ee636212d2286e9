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


# --- the mixed data set of the query benchmark (issue 12) ------------------------------
# 20 streams labelled `app`: JSON access logs, logfmt services and plain nginx lines, one
# big stream (`app="api"`, about a quarter of the bytes) and 19 smaller ones, over 2.1 h.
RARE_NEEDLE = "qz7kv93xw"  # a whole word in about one line in 2,000,000
RARE_EVERY = 2_000_000
MIXED_SPAN_NS = int(2.1 * 3600 * 10**9)
MIXED_STREAMS: list[tuple[dict[str, str], int]] = (
    [({"app": "api", "env": "prod", "format": "json"}, 27)]
    + [({"app": f"svc-{k}", "env": "prod" if k % 3 else "staging", "format": "json"}, 4)
       for k in range(7)]
    + [({"app": f"worker-{k}", "env": "prod", "format": "logfmt"}, 4) for k in range(6)]
    + [({"app": f"nginx-{k}", "env": "prod" if k % 2 else "edge", "format": "plain"}, 4)
       for k in range(6)]
)
_AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Go-http-client/1.1",
           "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2)", "okhttp/4.12.0"]


def make_mixed_line(fmt: str, rng: random.Random, i: int) -> str:
    """One line of the mixed set; JSON lines are access logs with `level` and `path`."""
    trace, user = f"{rng.getrandbits(64):016x}", rng.randrange(1, 50_000_000)
    lvl, path, method = rng.choice(_LEVELS), rng.choice(_PATHS), rng.choice(_METHODS)
    dur, status = rng.randrange(1, 2500), rng.choice((200, 200, 200, 201, 204, 404, 500))
    needle = f" {RARE_NEEDLE}" if i % RARE_EVERY == RARE_EVERY // 3 else ""
    ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    if fmt == "json":
        return (f'{{"ts":"{i}","level":"{lvl}","method":"{method}","path":"{path}",'
                f'"status":{status},"duration_ms":{dur},"bytes":{rng.randrange(100, 90000)},'
                f'"client_ip":"{ip}","user_id":{user},"trace_id":"{trace}",'
                f'"msg":"{rng.choice(_MSGS)}{needle}"}}')
    if fmt == "logfmt":
        return (f'level={lvl} msg="{rng.choice(_MSGS)}{needle}" component={rng.choice(_WORDS)} '
                f'job_id={rng.getrandbits(48):012x} user_id={user} duration={dur}ms path={path} '
                f'trace_id={trace}')
    return (f'{ip} - - "{method} {path}?id={user} HTTP/1.1" {status} {rng.randrange(100, 90000)}'
            f' "-" "{rng.choice(_AGENTS)}" rt={dur / 1000:.3f} req_id={trace}{needle}')


def mixed_batches(total_bytes: int, lines_per_batch: int, seed: int = 11,
                  start_ns: int | None = None,
                  ) -> Iterator[tuple[dict[str, str], list[int], list[str]]]:
    """Yield (labels, ts, lines) of the mixed set until total_bytes, spread over 2.1 h
    (ending about now); each stream gets lines in proportion to its weight."""
    import time

    rng = random.Random(seed)
    per_round = [max(1, lines_per_batch * w // 4) for _, w in MIXED_STREAMS]
    rounds = max(1, total_bytes // 186 // sum(per_round))  # about 186 bytes a line
    round_ns = MIXED_SPAN_NS // rounds
    t0 = start_ns if start_ns is not None else time.time_ns() - MIXED_SPAN_NS * 11 // 10
    produced, i, r = 0, 0, 0
    while produced < total_bytes:
        for (labels, _), n in zip(MIXED_STREAMS, per_round, strict=True):
            lines = [make_mixed_line(labels["format"], rng, i + k) for k in range(n)]
            base = t0 + r * round_ns
            ts = [base + k * (round_ns // n) for k in range(n)]
            i += n
            produced += sum(map(len, lines))
            yield labels, ts, lines
            if produced >= total_bytes:
                return
        r += 1
