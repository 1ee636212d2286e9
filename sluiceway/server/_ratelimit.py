"""Loki's two byte-rate limits on ingest, on one kind of token bucket.

- Per tenant (`ingestion_rate_mb`, bursts to `ingestion_burst_size_mb`): a push that does
  not fit is refused whole (429), as Loki's distributor does.
- Per stream (`per_stream_rate_limit`, bursts to `per_stream_rate_limit_burst`): each
  stream object of a push is taken or refused whole (Loki's all-or-nothing per stream),
  the push's other streams are stored; the answer is a 429 with Loki's text.

Limits come per call (per tenant, from the runtime overrides); a bucket whose limit
changed starts again full, as Loki's limiter does when it sees a new limit. Only the
event loop thread uses the buckets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from sluiceway.model import EntryBlock, format_go_time, format_labels, format_loki_size

MB = 1 << 20  # Loki's "MB" in these limits is MiB
_SWEEP_EVERY = 60.0  # seconds between drops of buckets that are full again
# Loki leaves this structured metadata out of an entry's size (it adds it itself).
_UNCOUNTED_METADATA = "detected_level"
_MAX_LISTED = 10  # Loki's default `max_returned_stream_errors`


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    rate: float
    burst: float


class TokenBuckets:
    """Golang's `x/time/rate` limiter, by key: a bucket starts with `burst` tokens and
    gains `rate` per second up to `burst`; `n` tokens pass only if they are there."""

    def __init__(self) -> None:
        self._buckets: dict[Hashable, _Bucket] = {}
        self._swept: float | None = None  # when full buckets were last forgotten

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: Hashable, n: float, rate: float, burst: float,
              now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self._swept is None:
            self._swept = now
        elif now - self._swept >= _SWEEP_EVERY:
            self._sweep(now)
        b = self._buckets.get(key)
        if b is None or b.rate != rate or b.burst != burst:
            b = self._buckets[key] = _Bucket(burst, now, rate, burst)
        b.tokens = min(b.burst, b.tokens + (now - b.at) * b.rate)
        b.at = now
        if n > b.tokens:
            return False
        b.tokens -= n
        return True

    def _sweep(self, now: float) -> None:
        """Forget buckets that are full again: a new one would behave the same."""
        self._swept = now
        full = [k for k, b in self._buckets.items()
                if b.tokens + (now - b.at) * b.rate >= b.burst]
        for k in full:
            del self._buckets[k]


class IngestionRateLimiter:
    """The tenant's `ingestion_rate_mb` / `ingestion_burst_size_mb` (0 MB/s: no limit).

    With Loki's `global` strategy (the default) each distributor enforces its share: the
    rate divided by `distributors()`, the live distributors of the cluster (1 for a
    single process); the burst is each distributor's own, as in Loki. `local`: each
    enforces the whole rate."""

    def __init__(self, distributors: Callable[[], int] | None = None) -> None:
        self.buckets = TokenBuckets()
        self.distributors = distributors or (lambda: 1)

    def local_rate(self, rate_mb: float, strategy: str = "global") -> float:
        """Bytes per second this process lets through for a tenant."""
        share = max(1, self.distributors()) if strategy == "global" else 1
        return rate_mb * MB / share

    def allow(self, tenant: str, nbytes: int, rate_mb: float, burst_mb: float,
              now: float | None = None, strategy: str = "global") -> bool:
        if rate_mb <= 0:
            return True
        rate = self.local_rate(rate_mb, strategy)
        return self.buckets.allow(tenant, nbytes, rate, max(burst_mb * MB, rate), now)

    def message(self, tenant: str, lines: int, nbytes: int, rate_mb: float,
                strategy: str = "global") -> str:
        return (f"Ingestion rate limit exceeded for user {tenant} (limit: "
                f"{int(self.local_rate(rate_mb, strategy))} "
                f"bytes/sec) while attempting to ingest '{lines}' lines totaling '{nbytes}' "
                "bytes, reduce log volume or contact your Loki administrator to see if the "
                "limit can be increased")


def entry_sizes(b: EntryBlock) -> np.ndarray:
    """Each entry's size as Loki's rate limits count it: the line and its structured
    metadata names and values (all but `detected_level`)."""
    sizes = np.diff(b.offsets)
    if b.metadata is not None:
        extra = [sum(len(k) + len(v) for k, v in md.items() if k != _UNCOUNTED_METADATA)
                 if md else 0 for md in b.metadata]
        sizes = sizes + np.asarray(extra, dtype=np.int64)
    return sizes


def stream_rate_message(tenant: str, b: EntryBlock, sizes: np.ndarray, limit: int) -> str:
    """Loki's answer for a stream over `per_stream_rate_limit`: one line per entry (the
    first ten), then the count."""
    text = format_labels(b.labels)
    lines = [f"entry with timestamp {format_go_time(int(t))} ignored, reason: 'Per stream "
             f"rate limit exceeded (limit: {format_loki_size(limit)}/sec) while attempting "
             f"to ingest for stream '{text}' totaling {format_loki_size(int(n))}, consider "
             "splitting a stream via additional labels or contact your Loki administrator "
             "to see if the limit can be increased',"
             for t, n in zip(b.ts[:_MAX_LISTED].tolist(), sizes[:_MAX_LISTED].tolist(),
                             strict=True)]
    lines.append(f"user '{tenant}', total ignored: {len(b)} out of {len(b)} for stream: "
                 f"{text}")
    return "\n".join(lines)


class StreamRateLimiter:
    """`per_stream_rate_limit` per (tenant, stream)."""

    def __init__(self) -> None:
        self.buckets = TokenBuckets()

    def allow(self, tenant: str, fp: int, nbytes: int, limit: int, burst: int,
              now: float | None = None) -> bool:
        if limit <= 0:
            return True
        return self.buckets.allow((tenant, fp), nbytes, limit, burst, now)
