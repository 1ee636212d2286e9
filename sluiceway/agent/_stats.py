"""The agent's counters: one object, read by /metrics, /status and the heartbeat."""

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
    lines_filtered: int = 0
    lines_enqueued: int = 0
    lines_shipped: int = 0
    bytes_shipped: int = 0
    batches_shipped: int = 0
    lines_dropped: int = 0
    lines_spilled: int = 0
    send_failures: int = 0
    retries: int = 0
    file_rotations: int = 0
    file_truncations: int = 0
    truncated_bytes_lost: int = 0  # bytes a truncation took before they were read
    lost_by_reason: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    backend_ok: bool = True
    # "ok"; "retrying" (outage, 429, 5xx: lines wait and are retried); "down" (the backend
    # refuses every push until its configuration is fixed: 401/403/404/405).
    backend_state: str = "ok"
    backend_status: int | None = None  # HTTP status of the last failed push, if any
    last_error: str | None = None
    last_error_ts: float | None = None
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

    @property
    def lines_lost(self) -> int:
        return sum(self.lost_by_reason.values())

    def backend(self, state: str, error: str | None = None,
                status: int | None = None) -> bool:
        """Set the backend state; True if it changed (the caller logs changes only)."""
        with self.lock:
            changed = state != self.backend_state
            self.backend_state = state
            self.backend_ok = state == "ok"
            if error is not None:
                self.last_error, self.last_error_ts = error, time.time()
                self.backend_status = status
            return changed
