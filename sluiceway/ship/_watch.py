"""Log lines when a queue starts and stops dropping, and when a spill starts and has
drained, with counts and durations; never one line per item.

The put path never logs (in the in-app client a log line there would feed the very
queue it describes); the consumer loop ticks this watcher instead, at most twice a
second, and it compares the buffer's counters with what it saw last.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sluiceway.buffer import Buffer

# Drops are over once none came for this long (so a queue that drops in bursts under
# a steady overload makes one pair of lines, not one per burst).
QUIET_S = 2.0
EVERY_S = 0.5


class Watch:
    """One per queue; every loop draining it may tick it (one tick runs at a time)."""

    def __init__(self, buffer: Buffer[Any], who: str, log: logging.Logger) -> None:
        self.buffer, self.who, self.log = buffer, who, log
        self._lock = threading.Lock()
        self._last = 0.0
        self._first = True
        self._dropped = 0
        self._drop_reasons: dict[str, int] = {}
        self._dropping_since: float | None = None
        self._drop_base = 0
        self._base_reasons: dict[str, int] = {}
        self._last_drop = 0.0
        self._spilling_since: float | None = None
        self._spilled_base = self._replayed_base = 0
        self._spilled_prev = self._replayed_prev = 0  # as of the tick before

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < EVERY_S:
            return
        if not self._lock.acquire(blocking=force):
            return
        try:
            self._last = now
            s = self.buffer.stats()
            self._drops(s, now)
            self._spill(s, now)
            self._first = False
        finally:
            self._lock.release()

    def _drops(self, s: dict[str, Any], now: float) -> None:
        dropped, reasons = s["dropped"], s["dropped_by_reason"]
        if dropped > self._dropped:
            if self._dropping_since is None:
                self._dropping_since = now
                self._drop_base, self._base_reasons = self._dropped, self._drop_reasons
                self.log.warning("%s: dropping lines (queue %s, when_full=%s): %d so far "
                                 "(%s)", self.who, self.buffer.name, s["when_full"],
                                 dropped - self._drop_base,
                                 _delta(reasons, self._base_reasons))
            self._last_drop = now
        elif self._dropping_since is not None and now - self._last_drop >= QUIET_S:
            self.log.warning("%s: stopped dropping after %.1f s: %d lines dropped (%s)",
                             self.who, self._last_drop - self._dropping_since,
                             dropped - self._drop_base, _delta(reasons, self._base_reasons))
            self._dropping_since = None
        self._dropped, self._drop_reasons = dropped, dict(reasons)

    def _spill(self, s: dict[str, Any], now: float) -> None:
        if self.buffer.config.when_full != "spill":
            return
        pending = s["spill_pending"]
        if self._spilling_since is None and pending > 0:
            # Counted from the tick before: what this spill wrote and read back since.
            self._spilling_since = now
            self._spilled_base, self._replayed_base = self._spilled_prev, self._replayed_prev
            if self._first:
                self.log.warning("%s: %d lines spilled by an earlier run wait on disk "
                                 "(%d bytes); replaying them first", self.who, pending,
                                 s["spill_bytes"])
            else:
                why = ("the backend is failing" if s["failing"]
                       else "the queue in memory is full")
                self.log.warning("%s: spilling to disk (%s): %d lines wait there so far",
                                 self.who, why, pending)
        elif self._spilling_since is not None and pending == 0 and not s["spill_bytes"]:
            self.log.warning("%s: spill drained after %.1f s: %d lines went to disk, %d read "
                             "back and sent", self.who, now - self._spilling_since,
                             s["spilled"] - self._spilled_base,
                             s["replayed"] - self._replayed_base)
            self._spilling_since = None
        self._spilled_prev, self._replayed_prev = s["spilled"], s["replayed"]


def _delta(now: dict[str, int], before: dict[str, int]) -> str:
    parts = [f"{r}: {n - before.get(r, 0)}" for r, n in sorted(now.items())
             if n > before.get(r, 0)]
    return ", ".join(parts) or "none"
