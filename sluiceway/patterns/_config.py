"""The pattern ingester's configuration: the server's `pattern_ingester:` section."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from sluiceway.model import Bytes, Duration


class PatternIngesterConfig(BaseModel):
    """Loki's `pattern_ingester`: Drain patterns mined from pushed lines, per stream and
    level, for `/loki/api/v1/patterns`. Off by default, as in Loki (it costs CPU on every
    pushed line; `sluiceway up` turns it on for its demo). When on, the miner is its own
    low-priority process, so pushes do not wait for it. The server's
    `pattern_ingester:` section is this model, handed to the miner as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # shared with the miner process

    enabled: bool = False
    retain_for: Duration = 3 * 3600.0
    max_clusters: Annotated[int, Field(ge=1)] = 300  # per stream and level
    max_eviction_ratio: Annotated[float, Field(ge=0)] = 0.25
    max_allowed_line_length: Annotated[int, Field(ge=1)] = 3000
    pattern_sample_interval: Duration = 10.0
    # Sluiceway's bounds: streams mined per tenant (the rest are counted, not mined) and
    # bytes of pushes waiting for the miner (past it, pushes are counted, not mined).
    max_streams_per_tenant: Annotated[int, Field(ge=1)] = 10_000
    max_queued_bytes: Bytes = 16 << 20

    def sample_interval_ms(self) -> int:
        """`pattern_sample_interval` in the unit the samples are kept in (at least 1)."""
        return max(1, int(self.pattern_sample_interval * 1000))
