"""Loki's per-tenant ingestion rate limit: a token bucket of bytes per tenant, refilled
at `ingestion_rate_mb` per second up to `ingestion_burst_size_mb`. A push that does not fit
is refused whole (429, retryable), as Loki's distributor does."""

from __future__ import annotations

import time
from dataclasses import dataclass

MB = 1 << 20  # Loki's "MB" in these limits is MiB


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class IngestionRateLimiter:
    def __init__(self, rate_mb: float, burst_mb: float) -> None:
        self.rate = rate_mb * MB
        self.burst = max(burst_mb * MB, self.rate)
        self._buckets: dict[str, _Bucket] = {}  # only the event loop thread uses them

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, tenant: str, nbytes: int, now: float | None = None) -> bool:
        """Take `nbytes` from the tenant's bucket if they are there."""
        if not self.enabled:
            return True
        now = time.monotonic() if now is None else now
        b = self._buckets.get(tenant)
        if b is None:
            b = self._buckets[tenant] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
        b.at = now
        if nbytes > b.tokens:
            return False
        b.tokens -= nbytes
        return True

    def message(self, tenant: str, lines: int, nbytes: int) -> str:
        return (f"Ingestion rate limit exceeded for user {tenant} (limit: {int(self.rate)} "
                f"bytes/sec) while attempting to ingest '{lines}' lines totaling '{nbytes}' "
                "bytes, reduce log volume or contact your Loki administrator to see if the "
                "limit can be increased")
