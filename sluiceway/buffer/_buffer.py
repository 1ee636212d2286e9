"""The bounded queue shared by the client and the agent.

Logical order of queued items: `retry` (nacked batches) → `mem` → disk log → `tail`.
Producers append to `mem` until a spill starts; from then on they append to `tail`
(behind everything on disk) until the disk backlog is drained, which keeps order.
Only the spiller thread touches the disk on the write side, so `put` costs a lock,
a tuple and a deque append.
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
    entries: list[Entry] | None = field(default=None, repr=False)
    refs: list[_Read] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.items)


class Buffer(Generic[T]):
    """Bounded by items and bytes, with `when_full` = block | drop | spill.

    Producers call `put` from any thread. Consumers call `get_batch`, deliver, then
    `ack` (delivered and durable downstream) or `nack` (give it back for a retry).
    """

    def __init__(self, config: BufferConfig | None = None, *, name: str = "buffer",
                 codec: Codec | None = None,
                 on_spilled: Callable[[list[T]], None] | None = None) -> None:
        self.config = cfg = config or BufferConfig()
        self.name = name
        self._codec = codec or OrjsonCodec()
        self._on_spilled = on_spilled
        self._max_items, self._max_bytes = cfg.max_items, cfg.max_bytes
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._spill_cv = threading.Condition(self._lock)
        self._mem: deque[Entry] = deque()
        self._tail: deque[Entry] = deque()
        self._retry: deque[Batch[T]] = deque()
        self._mem_bytes = self._tail_bytes = 0
        self._consumers_waiting = self._producers_waiting = 0
        self._divert = False  # True: puts take the slow path (spilling or closed)
        self._closed = False
        self._spill_req = False
        self._spiller_busy = 0
        self._disk_unread = 0
        self._disk_full = False
        self._in_flight = 0
        self._enqueued = self._acked = self._nacked = self._replayed = self._hw = 0
        self._spill_full_events = 0
        self._stalled_spills = 0
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

    def put(self, item: T, size: int = 0, *, protected: bool = False,
            tag: Hashable = None) -> bool:
        """Enqueue `item`; False when the policy dropped it (counted by reason and tag).

        `size` is what the byte bound counts (pass an estimate); `protected` items evict
        the oldest unprotected queued item instead of being dropped; `tag` (e.g. a
        level) keys the drop and spill counters.
        """
        entry = (item, size, protected, tag)
        with self._lock:
            mem = self._mem
            if (not self._divert and len(mem) < self._max_items
                    and self._mem_bytes + size <= self._max_bytes):
                mem.append(entry)
                self._mem_bytes += size
                self._enqueued += 1
                self._enq_tag[tag] = self._enq_tag.get(tag, 0) + 1
                if len(mem) > self._hw:
                    self._hw = len(mem)
                if self._consumers_waiting:
                    self._not_empty.notify()
                return True
            if self._drop_at_once and not protected and not self._divert and mem:
                # the common overload case, kept short: a full queue under plain drop
                key = ("full", tag)
                self._dropped[key] = self._dropped.get(key, 0) + 1
                return False
            return self._put_slow(entry)

    def _put_slow(self, e: Entry) -> bool:
        cfg = self.config
        deadline: float | None = None
        policy: str
        while True:
            if self._closed:
                self._count_drop("closed", e[3])
                return False
            to_tail = self._divert or (cfg.when_full == "spill" and self._mem_full(e[1]))
            if to_tail:
                if cfg.when_full == "spill" and not self._tail_full(e[1]):
                    self._append(e, tail=True)
                    return True
                policy, wait = cfg.when_spill_full, self._wait_for(cfg.when_spill_full)
                reason = "spill_full" if self._disk_full else "spill_backlog"
            elif not self._mem_full(e[1]):
                self._append(e, tail=False)
                return True
            else:
                policy, wait = cfg.when_full, self._wait_for(cfg.when_full)
                reason = "full"
            if e[2] and self._evict(tail=to_tail):
                self._append(e, tail=to_tail)
                return True
            if policy == "drop" and cfg.drop == "oldest" and not to_tail and self._mem:
                # the oldest unprotected item goes; protected ones only if nothing else
                if not self._evict(tail=False, reason="oldest"):
                    old = self._mem.popleft()
                    self._mem_bytes -= old[1]
                    self._count_drop("oldest", old[3])
                continue
            if wait is not None and wait <= 0:
                self._count_drop(reason, e[3])
                return False
            now = time.monotonic()
            if deadline is None and wait is not None:
                deadline = now + wait
            if deadline is not None and now >= deadline:
                self._count_drop("timeout" if policy == "block" else reason, e[3])
                return False
            self._producers_waiting += 1
            try:
                self._not_full.wait(None if deadline is None else deadline - now)
            finally:
                self._producers_waiting -= 1

    def _wait_for(self, policy: str) -> float | None:
        """Seconds a full put may wait: None forever, 0 not at all."""
        return self.config.block_timeout if policy == "block" else self.config.drop_wait

    def _mem_full(self, size: int) -> bool:
        mem = self._mem
        return len(mem) >= self._max_items or (
            bool(mem) and self._mem_bytes + size > self._max_bytes)

    def _tail_full(self, size: int) -> bool:
        tail = self._tail
        return len(tail) >= self._max_items or (
            bool(tail) and self._tail_bytes + size > self._max_bytes)

    def _append(self, e: Entry, *, tail: bool) -> None:
        if tail:
            self._tail.append(e)
            self._tail_bytes += e[1]
            self._update_divert()
            self._spill_cv.notify()
        else:
            self._mem.append(e)
            self._mem_bytes += e[1]
        self._enqueued += 1
        self._enq_tag[e[3]] = self._enq_tag.get(e[3], 0) + 1
        depth = self._depth()
        if depth > self._hw:
            self._hw = depth
        if self._consumers_waiting:
            self._not_empty.notify()

    def _evict(self, *, tail: bool, reason: str = "evicted") -> bool:
        """Drop the oldest unprotected queued item to make room."""
        q = self._tail if tail else self._mem
        for i, old in enumerate(q):
            if not old[2]:
                del q[i]
                if tail:
                    self._tail_bytes -= old[1]
                else:
                    self._mem_bytes -= old[1]
                self._count_drop(reason, old[3])
                return True
        return False

    def _count_drop(self, reason: str, tag: Hashable) -> None:
        key = (reason, tag)
        self._dropped[key] = self._dropped.get(key, 0) + 1

    def _update_divert(self) -> None:
        self._divert = bool(self._closed or self._tail or self._disk_unread
                            or self._spill_req or self._spiller_busy)

    def _depth(self) -> int:
        return (len(self._mem) + len(self._tail) + self._disk_unread + self._spiller_busy
                + sum(len(b) for b in self._retry))

    # ---- consumer side ----------------------------------------------------------------

    def get_batch(self, max_items: int = 1000, max_bytes: int = 1 << 20,
                  max_wait: float = 1.0) -> Batch[T] | None:
        """Oldest items first: up to `max_items`/`max_bytes`, waiting up to `max_wait`
        for the first one. None when nothing came (or the buffer is closed and empty).
        A batch replayed from disk holds whole spill records (at most `record_items`
        each), so it can be that much larger than `max_items`.
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

    def _take_memory(self, max_items: int, max_bytes: int,
                     deadline: float) -> Batch[T] | bool | None:
        """Under the lock: a batch, None to read the disk, False for nothing in time."""
        self._last_take = time.monotonic()  # the consumer is here, not stuck downstream
        while True:
            if self._retry:
                b = self._retry.popleft()
                self._in_flight += len(b)
                self._last_take = time.monotonic()
                return b
            if self._mem and not self._spill_req:
                return self._take(max_items, max_bytes, tail=False)
            if self._disk_unread > 0:
                return None
            if self._tail and not self._spiller_busy and not self._spill_req:
                return self._take(max_items, max_bytes, tail=True)
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

    def _take(self, max_items: int, max_bytes: int, *, tail: bool) -> Batch[T]:
        q = self._tail if tail else self._mem
        entries: list[Entry] = []
        nbytes = 0
        while q and len(entries) < max_items:
            size = q[0][1]
            if entries and nbytes + size > max_bytes:
                break
            entries.append(q.popleft())
            nbytes += size
        if tail:
            self._tail_bytes -= nbytes
            self._update_divert()
        else:
            self._mem_bytes -= nbytes
        self._in_flight += len(entries)
        self._last_take = time.monotonic()
        if self._producers_waiting:
            self._not_full.notify_all()
        return Batch([e[0] for e in entries], nbytes, "memory", entries=entries)

    def _take_disk(self, max_items: int, max_bytes: int) -> Batch[T] | None:
        assert self._log is not None
        records = self._log.read(max_items, max_bytes)
        items: list[T] = []
        refs: list[_Read] = []
        nbytes = 0
        for rec in records:
            refs.append(rec.ref)
            try:
                items.extend(self._codec.decode(rec.payload))
                nbytes += len(rec.payload)
            except Exception:  # a record that passed its CRC but not the codec
                log.warning("spill buffer %s: undecodable record of %d items skipped",
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
            self._in_flight += len(items)
            self._replayed += len(items)
            self._last_take = time.monotonic()
        return Batch(items, nbytes, "disk", refs=refs)

    def ack(self, batch: Batch[T]) -> None:
        """The batch is delivered and durable downstream: forget it (frees spill segments)."""
        if batch.refs and self._log is not None:
            self._log.ack(batch.refs)
        with self._lock:
            self._in_flight -= len(batch)
            self._acked += len(batch)
            if self._disk_full:
                self._spill_cv.notify()

    def nack(self, batch: Batch[T], *, spill: bool = False) -> None:
        """Delivery failed: the batch goes back to the head of the queue for a retry.

        With `spill=True` in spill mode (the consumer saw its downstream fail), memory
        is moved to disk now so an outage followed by SIGKILL loses nothing; a memory
        batch goes first. If older items are already on disk it lands behind them:
        the one case where order is relaxed.
        """
        with self._lock:
            self._in_flight -= len(batch)
            self._nacked += len(batch)
            if spill and self._log is not None:
                self._spill_req = True
                self._update_divert()
                if batch.entries is not None:
                    self._mem.extendleft(reversed(batch.entries))
                    self._mem_bytes += batch.nbytes
                else:
                    self._retry.appendleft(batch)
                self._spill_cv.notify()
            else:
                self._retry.appendleft(batch)
            self._not_empty.notify()

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
                    self._mem_bytes = 0
                    self._spill_req = False
                entries.extend(self._tail)
                self._tail.clear()
                self._tail_bytes = 0
                self._spiller_busy = len(entries)
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
            log.warning("spill buffer %s: consumer idle for %.1f s with %d items waiting; "
                        "moving them to disk", self.name, time.monotonic() - self._last_take,
                        len(self._mem))
            self._spill_req = True
            self._update_divert()
            self._stalled_spills += 1

    def _after_write(self, written: list[Entry], left: list[Entry]) -> None:
        assert self._log is not None
        for e in written:
            self._spilled[e[3]] = self._spilled.get(e[3], 0) + 1
        if left:
            self._tail.extendleft(reversed(left))
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
                records.append((done[0], len(done[1])))
                kept.append(done[1])
        n = self._log.append(records)
        written = [e for run in kept[:n] for e in run]
        left = [e for run in kept[n:] for e in run]
        return written, left

    def _bad_item(self, e: Entry) -> None:
        with self._lock:
            self._count_drop("encode", e[3])

    # ---- lifecycle and figures --------------------------------------------------------

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every item was acked or dropped; True if so within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._depth() == 0 and self._in_flight == 0:
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
        """Counters and gauges as plain data (heartbeats, /status, Prometheus)."""
        with self._lock:
            by_reason: dict[str, int] = {}
            by_tag: dict[str, dict[str, int]] = {}
            for (reason, tag), n in self._dropped.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
                by_tag.setdefault(str(tag), {})[reason] = n
            out: dict[str, Any] = {
                "name": self.name, "when_full": self.config.when_full,
                "depth": self._depth(), "capacity": self._max_items,
                "in_memory": len(self._mem) + len(self._tail) + sum(
                    len(b) for b in self._retry if b.entries is not None),
                "bytes": self._mem_bytes + self._tail_bytes, "max_bytes": self._max_bytes,
                "high_watermark": self._hw, "in_flight": self._in_flight,
                "enqueued": self._enqueued,
                "enqueued_by_tag": {str(k): v for k, v in self._enq_tag.items()},
                "acked": self._acked, "nacked": self._nacked,
                "replayed": self._replayed, "dropped": sum(by_reason.values()),
                "dropped_by_reason": by_reason, "dropped_by_tag": by_tag,
                "spilled": sum(self._spilled.values()),
                "spilled_by_tag": {str(k): v for k, v in self._spilled.items()},
                "spill_pending": self._disk_unread, "spill_full": self._disk_full,
                "spill_full_events": self._spill_full_events,
                "stalled_spills": self._stalled_spills,
            }
        log_ = self._log
        out["spill_bytes"] = log_.disk_bytes() if log_ is not None else 0
        out["spill_segments"] = log_.segment_count() if log_ is not None else 0
        out["corrupt_records"] = log_.corrupt_records if log_ is not None else 0
        return out
