"""The agent's input counters (what it read, rotations, truncations); the queue and the
delivery keep their own (`sluiceway.buffer`, `sluiceway.ship`)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Stats:
    """Counters are updated per batch (never per line), under one lock."""

    lines_read: int = 0
    bytes_read: int = 0
    file_rotations: int = 0
    file_truncations: int = 0
    truncated_bytes_lost: int = 0  # bytes a truncation took before they were read
    # Lines lost before they reached the queue (a truncation took them), by reason.
    lost_by_reason: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    started: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def lost(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        with self.lock:
            self.lost_by_reason[reason] += n
