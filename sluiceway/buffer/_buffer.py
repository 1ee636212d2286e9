"""The bounded queue shared by the client and the agent.

Logical order of queued items: `retry` (nacked batches) → `mem` → disk log → `tail`.
Producers append to `mem` until a spill starts; from then on they append to `tail`
(behind everything on disk) until the disk backlog is drained, which keeps order.
Only the spiller thread touches the disk on the write side, so `put` costs a lock,
a tuple and a deque append.

Every bound and figure counts *units*: the `count` an item is put with (1 by default;
the agent puts a batch of lines with its line count, so its queue counts lines).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sluiceway.buffer._codec import Codec, OrjsonCodec
from sluiceway.buffer._config import BufferConfig
from sluiceway.buffer._records import Entry, chunk, encode
from sluiceway.buffer._segments import SpillLog, _Read

log = logging.getLogger("sluiceway.buffer")

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Batch(Generic[T]):
    """Items handed to a consumer; give it back with `ack` or `nack`."""

    items: list[T]
    nbytes: int
    source: str  # "memory" or "disk"
    count: int = -1  # units of the items (the `count`s they were put with); -1: one each
    entries: list[Entry] | None = field(default=None, repr=False)
    refs: list[_Read] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.count < 0:
            self.count = len(self.items)

    def __len__(self) -> int:
        return len(self.items)


class Buffer(Generic[T]):
    """Bounded by units and bytes, with `when_full` = block | drop | spill.

    Producers call `put` from any thread. Consumers call `get_batch`, deliver, then
    `ack` (delivered and durable downstream) or `nack` (give it back for a retry).
    """

    def __init__(self, config: BufferConfig | None = None, *, name: str = "buffer",
                 codec: Codec | None = None,
                 on_spilled: Callable[[list[T]], None] | None = None,
                 on_dropped: Callable[[list[T], str], None] | None = None) -> None:
        self.config = cfg = config or BufferConfig()
        self.name = name
        self._codec = codec or OrjsonCodec()
        self._on_spilled = on_spilled
        self._on_dropped = on_dropped
        self._max_units, self._max_bytes = cfg.max_items, cfg.max_bytes
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._spill_cv = threading.Condition(self._lock)
        self._mem: deque[Entry] = deque()
        self._tail: deque[Entry] = deque()
        self._retry: deque[Batch[T]] = deque()
        self._mem_units = self._tail_units = self._retry_units = 0
        self._mem_bytes = self._tail_bytes = self._retry_bytes = 0
        self._consumers_waiting = self._producers_waiting = 0
        self._divert = False  # True: puts take the slow path (spilling or closed)
        self._closed = False
        self._spill_req = False
        self._spiller_busy = 0  # units the spiller is writing
        self._disk_unread = 0  # units on disk not yet read back
        self._disk_full = False
        self._failing = False  # the consumer said its downstream fails (nack with spill)
        self._in_flight = 0
        self._enqueued = self._acked = self._nacked = self._replayed = self._hw = 0
        self._spill_full_events = 0
        self._stalled_spills = 0
        self._waiting_since: float | None = None  # since when producers wait for room
        self._last_take = time.monotonic()
        self._dropped: dict[tuple[str, Hashable], int] = {}
        self._spilled: dict[Hashable, int] = {}
        self._enq_tag: dict[Hashable, int] = {}
        self._drop_at_once = (cfg.when_full == "drop" and cfg.drop == "newest"
                              and cfg.drop_wait == 0)
        self._log: SpillLog | None = None
        self._spiller: threading.Thread | None = None
        if cfg.when_full == "spill":
            assert cfg.spill_dir is not None
            self._log = SpillLog(cfg.spill_dir, cfg.spill_max_bytes, cfg.segment_bytes,
                                 cfg.fsync, cfg.fsync_interval)
            self._disk_unread = self._log.unread_items()
            self._update_divert()
            self._spiller = threading.Thread(target=self._spill_loop, daemon=True,
                                             name=f"sluiceway-spill-{name}")
            self._spiller.start()

    # ---- producer side ----------------------------------------------------------------

    def put(self, item: T, size: int = 0, *, count: int = 1, protected: bool = False,
            tag: Hashable = None, can_wait: bool = False) -> bool:
        """Enqueue `item`; False when the policy dropped it (counted by reason and tag).

        `size` is what the byte bound counts (pass an estimate); `count` is how many
        units (lines) the item holds, what the unit bound and every figure count;
        `protected` items evict the oldest unprotected queued item instead of being
        dropped; `tag` (e.g. a level) keys the drop and spill counters.

        `can_wait`: the producer still holds the item itself (a file it can read again).
        In spill mode it then waits for room while the consumer is healthy instead of
        writing to disk what its file already holds; it spills only while the consumer
        reports failures (`nack(spill=True)`) or is stuck. A put refused because the
        buffer closed is not counted as dropped: the producer still has the lines.
        """
        entry = (item, size, protected, tag, count)
        with self._lock:
            mem = self._mem
            if (not self._divert and self._mem_units + count <= self._max_units
                    and self._mem_bytes + size <= self._max_bytes):
                mem.append(entry)
                self._mem_units += count
                self._mem_bytes += size
                self._enqueued += count
                self._enq_tag[tag] = self._enq_tag.get(tag, 0) + count
                depth = self._mem_units + self._retry_units
                if depth > self._hw:
                    self._hw = depth
                if self._consumers_waiting:
                    self._not_empty.notify()
                return True
            if self._drop_at_once and not protected and not self._divert and mem:
                # the common overload case, kept short: a full queue under plain drop
                key = ("full", tag)
                self._dropped[key] = self._dropped.get(key, 0) + count
                return False
            gone: list[tuple[Entry, str]] = []
            ok = self._put_slow(entry, gone, can_wait)
        if gone and self._on_dropped is not None:
            self._report_dropped(gone)
        return ok

    def _put_slow(self, e: Entry, gone: list[tuple[Entry, str]], can_wait: bool) -> bool:
        cfg = self.config
        spill = cfg.when_full == "spill"
        deadline: float | None = None
        policy: str
        while True:
            if self._closed:
                if not can_wait:
                    self._count_drop("closed", e[3], e[4])
                return False
            # A producer that keeps its own copy waits for memory, not for the disk,
            # while the consumer is healthy (and behind a disk backlog, to keep order).
            hold = spill and can_wait and not self._failing
            to_tail = not hold and (self._divert or (spill and self._mem_full(e)))
            if hold and (self._divert or self._mem_full(e)):
                policy, wait, reason = "block", None, "full"
            elif to_tail:
                if spill and not self._tail_full(e):
                    self._append(e, tail=True)
                    return True
                policy, wait = cfg.when_spill_full, self._wait_for(cfg.when_spill_full)
                reason = "spill_full" if self._disk_full else "spill_backlog"
            elif not self._mem_full(e):
                self._append(e, tail=False)
                return True
            else:
                policy, wait = cfg.when_full, self._wait_for(cfg.when_full)
                reason = "full"
            if e[2] and self._evict(gone, tail=to_tail):
                continue
            if policy == "drop" and cfg.drop == "oldest" and not to_tail and self._mem:
                # the oldest unprotected item goes; protected ones only if nothing else
                if not self._evict(gone, tail=False, reason="oldest"):
                    old = self._mem.popleft()
                    self._mem_units -= old[4]
                    self._mem_bytes -= old[1]
                    self._count_drop("oldest", old[3], old[4])
                    gone.append((old, "oldest"))
                continue
            if wait is not None and wait <= 0:
                self._count_drop(reason, e[3], e[4])
                return False
            now = time.monotonic()
            if deadline is None and wait is not None:
                deadline = now + wait
            if deadline is not None and now >= deadline:
                self._count_drop("timeout" if policy == "block" else reason, e[3], e[4])
                return False
            self._producers_waiting += 1
            if self._waiting_since is None:
                self._waiting_since = now
            try:
                self._not_full.wait(None if deadline is None else deadline - now)
            finally:
                self._producers_waiting -= 1
                if not self._producers_waiting:
                    self._waiting_since = None

    def _wait_for(self, policy: str) -> float | None:
        """Seconds a full put may wait: None forever, 0 not at all."""
        return self.config.block_timeout if policy == "block" else self.config.drop_wait

    def _mem_full(self, e: Entry) -> bool:
        # An item larger than the bound still enters an empty queue (else it never could).
        return bool(self._mem) and (self._mem_units + e[4] > self._max_units
                                    or self._mem_bytes + e[1] > self._max_bytes)

    def _tail_full(self, e: Entry) -> bool:
        return bool(self._tail) and (self._tail_units + e[4] > self._max_units
                                     or self._tail_bytes + e[1] > self._max_bytes)

    def _append(self, e: Entry, *, tail: bool) -> None:
        if tail:
            self._tail.append(e)
            self._tail_units += e[4]
            self._tail_bytes += e[1]
            self._update_divert()
            self._spill_cv.notify()
        else:
            self._mem.append(e)
            self._mem_units += e[4]
            self._mem_bytes += e[1]
            depth = self._mem_units + self._retry_units
            if depth > self._hw:
                self._hw = depth
        self._enqueued += e[4]
        self._enq_tag[e[3]] = self._enq_tag.get(e[3], 0) + e[4]
        if self._consumers_waiting:
            self._not_empty.notify()

    def _evict(self, gone: list[tuple[Entry, str]], *, tail: bool,
               reason: str = "evicted") -> bool:
        """Drop the oldest unprotected queued item to make room."""
        q = self._tail if tail else self._mem
        for i, old in enumerate(q):
            if not old[2]:
                del q[i]
                if tail:
                    self._tail_units -= old[4]
                    self._tail_bytes -= old[1]
                else:
                    self._mem_units -= old[4]
                    self._mem_bytes -= old[1]
                self._count_drop(reason, old[3], old[4])
                gone.append((old, reason))
                return True
        return False

    def _count_drop(self, reason: str, tag: Hashable, count: int) -> None:
        key = (reason, tag)
        self._dropped[key] = self._dropped.get(key, 0) + count

    def _report_dropped(self, gone: list[tuple[Entry, str]]) -> None:
        """Tell the owner which accepted items were discarded (outside the lock)."""
        assert self._on_dropped is not None
        by_reason: dict[str, list[T]] = {}
        for e, reason in gone:
            by_reason.setdefault(reason, []).append(e[0])
        for r, items in by_reason.items():
            try:
                self._on_dropped(items, r)
            except Exception:
                log.exception("buffer %s: on_dropped hook failed", self.name)

    def _update_divert(self) -> None:
        self._divert = bool(self._closed or self._tail or self._disk_unread
                            or self._spill_req or self._spiller_busy)

    def _pending(self) -> int:
        """Units anywhere in the queue: memory, retry, on their way to disk, on disk."""
        return (self._mem_units + self._tail_units + self._disk_unread + self._spiller_busy
                + self._retry_units)

    # ---- consumer side ----------------------------------------------------------------

    def get_batch(self, max_items: int = 1000, max_bytes: int = 1 << 20,
                  max_wait: float = 1.0) -> Batch[T] | None:
        """Oldest items first: up to `max_items` units and `max_bytes`, waiting up to
        `max_wait` for the first one. None when nothing came (or the buffer is closed
        and empty). A batch replayed from disk holds whole spill records (at most
        `record_items` each), so it can be that much larger than `max_items`.
        """
        deadline = time.monotonic() + max_wait
        while True:
            with self._lock:
                got = self._take_memory(max_items, max_bytes, deadline)
            if got is not None:
                return got if isinstance(got, Batch) else None
            batch = self._take_disk(max_items, max_bytes)
            if batch is not None:
                return batch
            if time.monotonic() >= deadline:  # only damaged records were there
                return None

    def _take_memory(self, max_units: int, max_bytes: int,
                     deadline: float) -> Batch[T] | bool | None:
        """Under the lock: a batch, None to read the disk, False for nothing in time."""
        self._last_take = time.monotonic()  # the consumer is here, not stuck downstream
        while True:
            if self._retry:
                b = self._retry.popleft()
                self._retry_units -= b.count
                if b.source == "memory":
                    self._retry_bytes -= b.nbytes
                self._in_flight += b.count
                self._last_take = time.monotonic()
                return b
            if self._mem and not self._spill_req:
                return self._take(max_units, max_bytes, tail=False)
            if self._disk_unread > 0:
                return None
            if self._tail and not self._spiller_busy and not self._spill_req:
                return self._take(max_units, max_bytes, tail=True)
            if self._closed and not (self._mem or self._tail or self._spiller_busy):
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._consumers_waiting += 1
            try:
                self._not_empty.wait(remaining)
            finally:
                self._consumers_waiting -= 1

    def _take(self, max_units: int, max_bytes: int, *, tail: bool) -> Batch[T]:
        q = self._tail if tail else self._mem
        entries: list[Entry] = []
        nbytes = units = 0
        while q:
            e = q[0]
            if entries and (units + e[4] > max_units or nbytes + e[1] > max_bytes):
                break
            entries.append(q.popleft())
            nbytes += e[1]
            units += e[4]
        if tail:
            self._tail_units -= units
            self._tail_bytes -= nbytes
            self._update_divert()
        else:
            self._mem_units -= units
            self._mem_bytes -= nbytes
        self._in_flight += units
        self._last_take = time.monotonic()
        if self._producers_waiting:
            self._not_full.notify_all()
        return Batch([e[0] for e in entries], nbytes, "memory", units, entries=entries)

    def _take_disk(self, max_units: int, max_bytes: int) -> Batch[T] | None:
        assert self._log is not None
        records = self._log.read(max_units, max_bytes)
        items: list[T] = []
        refs: list[_Read] = []
        nbytes = units = 0
        for rec in records:
            refs.append(rec.ref)
            try:
                items.extend(self._codec.decode(rec.payload))
                nbytes += len(rec.payload)
                units += rec.count
            except Exception:  # a record that passed its CRC but not the codec
                log.warning("spill buffer %s: undecodable record of %d units skipped",
                            self.name, rec.count)
                with self._lock:
                    self._dropped[("decode", None)] = (
                        self._dropped.get(("decode", None), 0) + rec.count)
        with self._lock:
            self._disk_unread = self._log.unread_items()
            self._update_divert()
            if self._producers_waiting:
                self._not_full.notify_all()
            if not items:
                if refs:
                    self._log.ack(refs)
                return None
            self._in_flight += units
            self._replayed += units
            self._last_take = time.monotonic()
        return Batch(items, nbytes, "disk", units, refs=refs)

    def ack(self, batch: Batch[T]) -> None:
        """The batch is delivered and durable downstream: forget it (frees spill segments)."""
        if batch.refs and self._log is not None:
            self._log.ack(batch.refs)
        with self._lock:
            self._in_flight -= batch.count
            self._acked += batch.count
            if self._failing:
                self._failing = False
                if self._producers_waiting:
                    self._not_full.notify_all()
            if self._disk_full:
                self._spill_cv.notify()

    def nack(self, batch: Batch[T], *, spill: bool = False) -> None:
        """Delivery failed: the batch goes back to the head of the queue for a retry.

        With `spill=True` in spill mode (the consumer saw its downstream fail), memory
        is moved to disk now so an outage followed by SIGKILL loses nothing; a memory
        batch goes first. If older items are already on disk it lands behind them:
        the one case where order is relaxed. Producers that `can_wait` spill too from
        now until the next `ack`.
        """
        with self._lock:
            self._in_flight -= batch.count
            self._nacked += batch.count
            if spill and self._log is not None:
                self._spill_req = True
                self._update_divert()
                self._set_failing()
                if batch.entries is not None:
                    self._mem.extendleft(reversed(batch.entries))
                    self._mem_units += batch.count
                    self._mem_bytes += batch.nbytes
                else:
                    self._requeue(batch)
                self._spill_cv.notify()
            else:
                self._requeue(batch)
            self._not_empty.notify()

    def _requeue(self, batch: Batch[T]) -> None:
        self._retry.appendleft(batch)
        self._retry_units += batch.count
        if batch.source == "memory":
            self._retry_bytes += batch.nbytes

    def _set_failing(self) -> None:
        if not self._failing:
            self._failing = True
            if self._producers_waiting:
                self._not_full.notify_all()

    # ---- spiller ----------------------------------------------------------------------

    def _spill_loop(self) -> None:
        while True:
            with self._lock:
                while not (self._tail or self._spill_req):
                    if self._closed:
                        return
                    self._spill_cv.wait(0.5)
                    self._check_stalled()
                entries: list[Entry] = []
                if self._spill_req:
                    entries.extend(self._mem)
                    self._mem.clear()
                    self._mem_units = self._mem_bytes = 0
                    self._spill_req = False
                entries.extend(self._tail)
                self._tail.clear()
                self._tail_units = self._tail_bytes = 0
                self._spiller_busy = sum(e[4] for e in entries)
                if self._producers_waiting:
                    self._not_full.notify_all()
            written, left = self._write(entries)
            with self._lock:
                self._after_write(written, left)
                stalled = bool(left)
            if written and self._on_spilled is not None:
                try:
                    self._on_spilled([e[0] for e in written])
                except Exception:
                    log.exception("spill buffer %s: on_spilled hook failed", self.name)
            if stalled:
                with self._lock:
                    if self._closed:
                        return  # the rest stays in memory; the disk is full anyway
                    self._spill_cv.wait(0.1)

    def _check_stalled(self) -> None:
        """Under the lock: memory waiting behind a consumer stuck for too long goes to
        disk, so a hung (not failing) destination followed by SIGKILL loses nothing."""
        after = self.config.spill_stalled_after
        if (after is not None and self._mem and not self._spill_req
                and not self._consumers_waiting
                and time.monotonic() - self._last_take > after):
            log.warning("spill buffer %s: consumer idle for %.1f s with %d units waiting; "
                        "moving them to disk", self.name, time.monotonic() - self._last_take,
                        self._mem_units)
            self._spill_req = True
            self._update_divert()
            self._set_failing()
            self._stalled_spills += 1

    def _after_write(self, written: list[Entry], left: list[Entry]) -> None:
        assert self._log is not None
        for e in written:
            self._spilled[e[3]] = self._spilled.get(e[3], 0) + e[4]
        if left:
            self._tail.extendleft(reversed(left))
            self._tail_units += sum(e[4] for e in left)
            self._tail_bytes += sum(e[1] for e in left)
            if not self._disk_full:
                self._disk_full = True
                self._spill_full_events += 1
                log.warning("spill buffer %s: disk cap of %d bytes reached; now %s new items "
                            "(when_spill_full=%s)", self.name, self.config.spill_max_bytes,
                            "blocking" if self.config.when_spill_full == "block"
                            else "dropping", self.config.when_spill_full)
        elif self._disk_full:
            self._disk_full = False
            log.warning("spill buffer %s: disk has room again, spilling resumed", self.name)
        self._spiller_busy = 0
        self._disk_unread = self._log.unread_items()
        self._update_divert()
        self._not_empty.notify_all()
        if self._producers_waiting:
            self._not_full.notify_all()

    def _write(self, entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
        """Encode entries into records and append them; returns (written, did not fit)."""
        assert self._log is not None
        records: list[tuple[bytes, int]] = []
        kept: list[list[Entry]] = []
        for run in chunk(entries, self.config.record_items, self.config.record_bytes):
            done = encode(self._codec, run, self._bad_item)
            if done is not None:
                records.append((done[0], sum(e[4] for e in done[1])))
                kept.append(done[1])
        n = self._log.append(records)
        written = [e for run in kept[:n] for e in run]
        left = [e for run in kept[n:] for e in run]
        return written, left

    def _bad_item(self, e: Entry) -> None:
        with self._lock:
            self._count_drop("encode", e[3], e[4])
        if self._on_dropped is not None:
            try:
                self._on_dropped([e[0]], "encode")
            except Exception:
                log.exception("buffer %s: on_dropped hook failed", self.name)

    # ---- lifecycle and figures --------------------------------------------------------

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every item was acked or dropped; True if so within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._pending() == 0 and self._in_flight == 0:
                    return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def close(self, *, persist: bool = True, timeout: float = 5.0) -> None:
        """Refuse new items. In spill mode, with `persist`, what is still in memory is
        written to disk first so the next process replays it."""
        with self._lock:
            if self._log is not None and persist and (self._mem or self._retry):
                for b in reversed(self._retry):
                    if b.entries is not None:
                        self._mem.extendleft(reversed(b.entries))
                        self._mem_units += b.count
                        self._mem_bytes += b.nbytes
                        self._retry_units -= b.count
                        self._retry_bytes -= b.nbytes
                self._retry = deque(b for b in self._retry if b.entries is None)
                self._spill_req = True
            self._closed = True
            self._update_divert()
            self._spill_cv.notify_all()
            self._not_empty.notify_all()
            self._not_full.notify_all()
        if self._spiller is not None and self._spiller is not threading.current_thread():
            self._spiller.join(timeout)
        if self._log is not None:
            self._log.close()

    def forget_in_child(self) -> None:
        """Call in a forked child that will not use this buffer: releases the inherited
        spill descriptors (so the parent's directory lock is the parent's alone)."""
        if self._log is not None:
            self._log.forget_in_child()

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> dict[str, Any]:
        """Counters and gauges as plain data (heartbeats, /status, Prometheus); every
        count is in units.

        `depth` counts what waits in memory for the consumer (never more than
        `capacity`, but for one item larger than it, or a batch handed back at a
        stop); `in_flight` what the consumer holds; `spill_pending` what waits on
        disk or on its way there; `waiting_s` how long producers have been waiting for
        room (0 when none is: block mode, a `can_wait` producer, a drop with wait).
        """
        now = time.monotonic()
        with self._lock:
            by_reason: dict[str, int] = {}
            by_tag: dict[str, dict[str, int]] = {}
            for (reason, tag), n in self._dropped.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
                by_tag.setdefault(str(tag), {})[reason] = n
            depth = self._mem_units + self._retry_units
            out: dict[str, Any] = {
                "name": self.name, "when_full": self.config.when_full,
                "depth": depth, "capacity": self._max_units,
                "in_memory": self._mem_units + self._tail_units + sum(
                    b.count for b in self._retry if b.entries is not None),
                "bytes": self._mem_bytes + self._retry_bytes, "max_bytes": self._max_bytes,
                "high_watermark": self._hw, "in_flight": self._in_flight,
                "enqueued": self._enqueued,
                "enqueued_by_tag": {str(k): v for k, v in self._enq_tag.items()},
                "acked": self._acked, "nacked": self._nacked,
                "replayed": self._replayed, "dropped": sum(by_reason.values()),
                "dropped_by_reason": by_reason, "dropped_by_tag": by_tag,
                "spilled": sum(self._spilled.values()),
                "spilled_by_tag": {str(k): v for k, v in self._spilled.items()},
                "spill_pending": self._tail_units + self._spiller_busy + self._disk_unread,
                "spill_full": self._disk_full,
                "spill_full_events": self._spill_full_events,
                "stalled_spills": self._stalled_spills,
                "failing": self._failing,
                "waiting_s": 0.0 if self._waiting_since is None
                else round(now - self._waiting_since, 3),
            }
        log_ = self._log
        out["spill_bytes"] = log_.disk_bytes() if log_ is not None else 0
        out["spill_max_bytes"] = self.config.spill_max_bytes if log_ is not None else 0
        out["spill_segments"] = log_.segment_count() if log_ is not None else 0
        out["corrupt_records"] = log_.corrupt_records if log_ is not None else 0
        return out
