"""Buffer settings: validated once here so the hot path never re-checks strings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

WhenFull = Literal["block", "drop", "spill"]
# Every reason the buffer counts a drop under: the policies' (`full`, `oldest`, `evicted`,
# `timeout`, `spill_full`, `spill_backlog`), `closed` (put after close) and the spill's
# codec failing on an item (`encode`) or a record read back (`decode`).
DROP_REASONS: tuple[str, ...] = ("full", "oldest", "evicted", "timeout", "spill_full",
                                 "spill_backlog", "closed", "encode", "decode")
DropWhich = Literal["newest", "oldest"]
WhenSpillFull = Literal["block", "drop"]
FsyncPolicy = Literal["always", "interval", "never"]

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class BufferConfig:
    """How big the queue is and what happens when it is full.

    `max_items`/`max_bytes` bound the in-memory queue (bytes are the sizes callers pass
    to `put`). In `spill` mode a second in-memory stage of the same bounds holds items
    on their way to disk, so memory stays under twice these figures.
    """

    max_items: int = 10_000
    max_bytes: int = 64 * MiB
    when_full: WhenFull = "drop"
    # drop: which item goes, and how long a put may wait for room first (0 = never).
    drop: DropWhich = "newest"
    drop_wait: float = 0.0
    # block (and spill with when_spill_full=block): None waits forever; else drop after.
    block_timeout: float | None = None
    # spill
    spill_dir: Path | None = None
    spill_max_bytes: int = GiB
    segment_bytes: int = 64 * MiB
    record_items: int = 512
    record_bytes: int = MiB
    when_spill_full: WhenSpillFull = "block"
    fsync: FsyncPolicy = "always"
    fsync_interval: float = 0.5
    # spill: when the consumer has taken nothing for this long while items wait in
    # memory (a hung destination that neither returns nor fails), move memory to disk.
    spill_stalled_after: float | None = 5.0

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_bytes < 1:
            raise ValueError("max_items and max_bytes must be at least 1")
        if self.when_full not in ("block", "drop", "spill"):
            raise ValueError(f"when_full must be block, drop or spill, not {self.when_full!r}")
        if self.drop not in ("newest", "oldest"):
            raise ValueError(f"drop must be newest or oldest, not {self.drop!r}")
        if self.when_spill_full not in ("block", "drop"):
            raise ValueError(f"when_spill_full must be block or drop, not {self.when_spill_full!r}")
        if self.fsync not in ("always", "interval", "never"):
            raise ValueError(f"fsync must be always, interval or never, not {self.fsync!r}")
        if self.drop_wait < 0 or (self.block_timeout is not None and self.block_timeout < 0):
            raise ValueError("drop_wait and block_timeout must not be negative")
        if self.when_full == "spill" and self.spill_dir is None:
            raise ValueError("when_full='spill' needs spill_dir")
        if self.segment_bytes < 4096 or self.spill_max_bytes < self.segment_bytes:
            raise ValueError("segment_bytes must be >= 4096 and <= spill_max_bytes")
        if self.record_items < 1 or self.record_bytes < 1:
            raise ValueError("record_items and record_bytes must be at least 1")
