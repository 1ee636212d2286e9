"""The ledger (ARCHITECTURE.md §ledger): which numbered lines were stored, and what their
producers say they emitted, lost and hold.

What is kept, per tenant, durably in `<data_dir>/ledger/` (`_ledger_log.py`):
- per (source, epoch), the numbers stored, as disjoint sets per minute of storage
  (a number stored again — a retry, a re-read — counts once, in its first minute);
- lines stored without numbers (`unattributed`), per minute;
- each reporter's ledger part of its heartbeats (per minute, the last one of it).

The hook is narrow: `stored(tenant, header, kept, total)` where a push was applied
(the numbers of its first `kept` lines in ledger order were stored), and `reported(...)`
where a heartbeat was accepted.

`GET /sluiceway/api/v1/ledger` answers, per (source, epoch) and in total, as of `until`
(now by default) for the epochs active in `[since, until)`:
emitted = stored + lost(hop, reason) + in flight(hop, where) + unexplained, over the
numbers below the emitted count of the last report. In-flight lines are what the
producers' queues hold, spread over the unsettled numbers of the entries that share a
queue (newest epoch first); a reporter that went stale without a final heartbeat holds
nothing in memory any more, and one whose source a newer reporter speaks for holds
nothing at all (the newer one holds its disk).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluiceway.model import LedgerHeaderError, RangeSet, decode_ledger, split_ledger_order
from sluiceway.server._ledger_log import LedgerLog, read_log

log = logging.getLogger("sluiceway.ledger")
BUCKET_S = 60
MAX_SOURCES = 10_000
MAX_EPOCHS = 1000  # per source; the least recently active go first
MAX_RUNS_SHOWN = 512
MEMORY = frozenset({"queue", "sending"})

Key = tuple[str, str]  # (source, epoch)


def _bucket(ts: float) -> int:
    return int(ts // BUCKET_S) * BUCKET_S


@dataclass
class _Epoch:
    stored: RangeSet = field(default_factory=RangeSet)
    buckets: dict[int, RangeSet] = field(default_factory=dict)
    active: float = 0.0


@dataclass
class _Point:
    """One reporter's figures of one (source, epoch) at `ts`."""

    ts: float
    hop: str
    emitted: int
    lost: dict[str, int]
    lost_ranges: list[list[int]] | None
    handed_on: int | None = None  # lineage: numbers below it went on to a file
    received_up_to: int | None = None  # lineage: numbers below it were read from it


@dataclass
class _GroupPoint:
    ts: float
    interval: float
    final: bool
    hop: str
    groups: list[tuple[dict[str, int], list[Key]]]


@dataclass
class _Tenant:
    epochs: dict[Key, _Epoch] = field(default_factory=dict)
    points: dict[Key, dict[str, list[_Point]]] = field(default_factory=dict)
    groups: dict[str, list[_GroupPoint]] = field(default_factory=dict)
    unattributed: dict[int, int] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    refused: int = 0  # lines of sources past the cap (counted unattributed too)


def _thin(points: list[Any], new: Any) -> None:
    """Keep one point per minute (the last), plus the new one."""
    if points and _bucket(points[-1].ts) == _bucket(new.ts):
        points[-1] = new
    else:
        points.append(new)


def _at(points: list[Any], until: float) -> Any:
    for p in reversed(points):
        if p.ts < until:
            return p
    return None


class Ledger:
    def __init__(self, directory: Path | None, *, sync: bool = True,
                 max_sources: int = MAX_SOURCES, stale_factor: float = 3.0,
                 clock: Any = time.time) -> None:
        self.max_sources = max_sources
        self.stale_factor = stale_factor
        self.clock = clock
        self._lock = threading.Lock()
        self._tenants: dict[str, _Tenant] = {}
        self.bad_headers = 0
        self._bad_logged = 0.0
        self.log: LedgerLog | None = None
        if directory is not None:
            for rec in read_log(directory / "ledger.log"):
                self._replay(rec)
            self.log = LedgerLog(directory, self.state, sync=sync)

    # ---- the hooks --------------------------------------------------------------------

    def stored(self, tenant: str, header: str | None, kept: int,
               total: int) -> Future[None] | None:
        """A push was applied: `kept` of its `total` lines were stored. Returns a future
        that resolves once the record is durable (None: nothing to wait for)."""
        now = self.clock()
        if not header:
            if kept:
                self._unattributed(tenant, now, kept, durable=False)
            return None
        try:
            groups = decode_ledger(header)
        except LedgerHeaderError as exc:
            self._bad(tenant, f"invalid X-Sluiceway-Ledger header: {exc}")
            self._unattributed(tenant, now, kept, durable=False)
            return None
        numbered = sum(g.lines for g in groups)
        if numbered != total:
            self._bad(tenant, f"X-Sluiceway-Ledger names {numbered} lines, the push has "
                              f"{total}")
        first, _ = split_ledger_order(groups, min(kept, numbered))
        runs = [[g.source, g.epoch, [[a, b] for a, b in g.runs]] for g in first]
        rec = {"t": "s", "tn": tenant, "ts": now, "g": runs}
        with self._lock:
            self._apply_stored(rec)
        if kept > numbered:
            self._unattributed(tenant, now, kept - numbered, durable=False)
        return self.log.append(rec, wait=True) if self.log is not None else None

    def reported(self, tenant: str, reporter: str, hb: dict[str, Any]) -> None:
        """A heartbeat (validated) was accepted: keep its ledger part."""
        groups = hb.get("ledger")
        if not groups:
            return
        rec = {"t": "r", "tn": tenant, "id": reporter, "ts": self.clock(),
               "hop": hb["kind"], "iv": hb.get("interval_s", 5.0),
               "final": bool(hb.get("final")), "g": groups}
        with self._lock:
            self._apply_report(rec)
        if self.log is not None:
            self.log.append(rec, wait=False)

    def _unattributed(self, tenant: str, now: float, n: int, durable: bool) -> None:
        rec = {"t": "u", "tn": tenant, "ts": now, "n": n}
        with self._lock:
            self._apply_unattributed(rec)
        if self.log is not None:
            self.log.append(rec, wait=durable)

    def _bad(self, tenant: str, msg: str) -> None:
        self.bad_headers += 1
        now = time.monotonic()
        if now - self._bad_logged > 60:
            self._bad_logged = now
            log.warning("tenant %s: %s; the push is stored, its lines count as "
                        "unattributed (said once a minute)", tenant, msg)

    # ---- applying records (live and at replay) -----------------------------------------

    def _tenant(self, name: str) -> _Tenant:
        t = self._tenants.get(name)
        if t is None:
            t = self._tenants[name] = _Tenant()
        return t

    def _admit(self, t: _Tenant, source: str) -> bool:
        if source in t.sources:
            return True
        if len(t.sources) >= self.max_sources:
            return False
        t.sources.add(source)
        return True

    def _apply_stored(self, rec: dict[str, Any]) -> None:
        t = self._tenant(rec["tn"])
        ts = float(rec["ts"])
        b = _bucket(ts)
        for source, epoch, runs in rec["g"]:
            if not self._admit(t, source):
                n = sum(int(y) - int(x) for x, y in runs)
                t.refused += n
                t.unattributed[b] = t.unattributed.get(b, 0) + n
                continue
            e = t.epochs.get((source, epoch))
            if e is None:
                e = t.epochs[(source, epoch)] = _Epoch()
                self._cap_epochs(t, source)
            e.active = max(e.active, ts)
            bucket: RangeSet | None = None
            for x, y in runs:
                for a, c in e.stored.gaps(int(x), int(y)):  # new numbers: this minute's
                    if bucket is None:
                        bucket = e.buckets.setdefault(b, RangeSet())
                    bucket.add(a, c)
                    e.stored.add(a, c)

    def _cap_epochs(self, t: _Tenant, source: str) -> None:
        mine = [(e.active, k) for k, e in t.epochs.items() if k[0] == source]
        if len(mine) > MAX_EPOCHS:
            for _, k in sorted(mine)[:len(mine) - MAX_EPOCHS]:
                del t.epochs[k]
                t.points.pop(k, None)

    def _apply_unattributed(self, rec: dict[str, Any]) -> None:
        t = self._tenant(rec["tn"])
        b = _bucket(float(rec["ts"]))
        t.unattributed[b] = t.unattributed.get(b, 0) + int(rec["n"])

    def _apply_report(self, rec: dict[str, Any]) -> None:
        t = self._tenant(rec["tn"])
        ts, hop, reporter = float(rec["ts"]), str(rec["hop"]), str(rec["id"])
        groups: list[tuple[dict[str, int], list[Key]]] = []
        for g in rec["g"]:
            keys: list[Key] = []
            for e in g.get("entries", []):
                key = (str(e["source"]), str(e["epoch"]))
                if not self._admit(t, key[0]):
                    continue
                keys.append(key)
                _thin(t.points.setdefault(key, {}).setdefault(reporter, []),
                      _Point(ts, hop, int(e.get("emitted", 0)), dict(e.get("lost") or {}),
                             e.get("lost_ranges"), e.get("handed_on"),
                             e.get("received_up_to")))
                ep = t.epochs.get(key)
                if ep is None:
                    ep = t.epochs[key] = _Epoch()
                    self._cap_epochs(t, key[0])
                ep.active = max(ep.active, ts)
            groups.append((dict(g.get("in_flight") or {}), keys))
        _thin(t.groups.setdefault(reporter, []),
              _GroupPoint(ts, float(rec.get("iv", 5.0)), bool(rec.get("final")), hop, groups))

    def _replay(self, rec: dict[str, Any]) -> None:
        kind = rec.get("t")
        try:
            if kind == "s":
                self._apply_stored(rec)
            elif kind == "u":
                self._apply_unattributed(rec)
            elif kind == "r":
                self._apply_report(rec)
            elif kind == "snapshot":
                self._load(rec["state"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ledger record of kind %r skipped: %s", kind, exc)

    # ---- snapshot ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {}
            for name, t in self._tenants.items():
                out[name] = {
                    "epochs": [[k[0], k[1], e.active,
                                [[b, rs.ranges()] for b, rs in e.buckets.items()]]
                               for k, e in t.epochs.items()],
                    "points": [[k[0], k[1], rid, [[p.ts, p.hop, p.emitted, p.lost,
                                                   p.lost_ranges, p.handed_on,
                                                   p.received_up_to] for p in pts]]
                               for k, by in t.points.items() for rid, pts in by.items()],
                    "groups": [[rid, [[g.ts, g.interval, g.final, g.hop,
                                       [[f, [list(k) for k in keys]] for f, keys in g.groups]]
                                      for g in pts]]
                               for rid, pts in t.groups.items()],
                    "unattributed": [[b, n] for b, n in t.unattributed.items()],
                    "refused": t.refused,
                }
            return out

    def _load(self, state: dict[str, Any]) -> None:
        self._tenants.clear()
        for name, s in state.items():
            t = self._tenant(name)
            for src, ep, active, buckets in s["epochs"]:
                e = t.epochs[(src, ep)] = _Epoch(active=float(active))
                for b, runs in buckets:
                    rs = e.buckets[int(b)] = RangeSet((int(x), int(y)) for x, y in runs)
                    e.stored.add_set(rs)
                t.sources.add(src)
            for src, ep, rid, pts in s["points"]:
                t.points.setdefault((src, ep), {})[rid] = [
                    _Point(float(x[0]), str(x[1]), int(x[2]), dict(x[3]), x[4],
                           *(x[5:7] if len(x) >= 7 else (None, None))) for x in pts]
                t.sources.add(src)
            for rid, pts in s["groups"]:
                t.groups[rid] = [_GroupPoint(float(a), float(iv), bool(fi), str(h),
                                             [(dict(f), [(k[0], k[1]) for k in keys])
                                              for f, keys in gs])
                                 for a, iv, fi, h, gs in pts]
            t.unattributed = {int(b): int(n) for b, n in s["unattributed"]}
            t.refused = int(s.get("refused", 0))

    def tenant_names(self) -> list[str]:
        with self._lock:
            return sorted(self._tenants)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    # ---- the answer -------------------------------------------------------------------

    def answer(self, tenants: Iterable[str], since: float | None = None,
               until: float | None = None) -> dict[str, Any]:
        """The ledger of `tenants` as of `until` (default now), for the epochs active
        in `[since, until)`."""
        now = self.clock()
        until = now if until is None else until
        since = float("-inf") if since is None else since
        rows: list[dict[str, Any]] = []
        unattributed = refused = 0
        with self._lock:
            for name in tenants:
                t = self._tenants.get(name)
                if t is None:
                    continue
                rows += self._rows(name, t, since, until, min(now, until))
                unattributed += sum(n for b, n in t.unattributed.items()
                                    if b + BUCKET_S > since and b < until)
                refused += t.refused
        total = {"emitted": 0, "stored": 0, "lost": 0, "in_flight": 0, "unexplained": 0,
                 "overcounted": 0}
        for r in rows:
            for k in total:
                total[k] += r[k]
        return {"sources": rows, "total": total, "unattributed": unattributed,
                "sources_over_limit_lines": refused, "bad_headers": self.bad_headers,
                "since": None if since == float("-inf") else since, "until": until}

    def _rows(self, tenant: str, t: _Tenant, since: float, until: float,
              now: float) -> list[dict[str, Any]]:
        figures: dict[Key, dict[str, Any]] = {}
        for key, e in t.epochs.items():
            by = t.points.get(key, {})
            pts = [p for p in (_at(v, until) for v in by.values()) if p is not None]
            active = any(b + BUCKET_S > since and b < until for b in e.buckets) or any(
                p.ts >= since for p in pts)
            if not active:
                continue
            emitted = max((p.emitted for p in pts), default=0)
            stored = sum(rs.count_below(emitted) for b, rs in e.buckets.items() if b < until)
            lost: dict[tuple[str, str], int] = {}
            lost_set = RangeSet()
            known = True
            for p in pts:
                for reason, n in p.lost.items():
                    lost[(p.hop, reason)] = lost.get((p.hop, reason), 0) + int(n)
                if p.lost_ranges is None:
                    known = known and not sum(p.lost.values())
                    continue
                for a, b in p.lost_ranges:
                    lost_set.add(int(a), int(b))
            stored_set = RangeSet()
            for b, rs in e.buckets.items():
                if b < until:
                    stored_set.add_set(rs)
            missing = stored_set.missing(emitted)
            # Lineage: lines a client wrote to a file that the agent has not read yet.
            handed = max((p.handed_on for p in pts if p.handed_on is not None), default=None)
            read = max((p.received_up_to for p in pts if p.received_up_to is not None),
                       default=0)
            in_file = 0
            if handed is not None and handed > read:
                in_file = handed - read - (lost_set.count_below(handed)
                                           - lost_set.count_below(read))
                in_file = max(0, min(in_file, emitted - stored - sum(lost.values())))
            figures[key] = {
                "tenant": tenant, "source": key[0], "epoch": key[1], "emitted": emitted,
                "stored": stored, "lost_by": lost, "lost": sum(lost.values()),
                "in_flight_by": {("agent", "file"): in_file} if in_file > 0 else {},
                "in_flight": max(0, in_file),
                "last_report": max((p.ts for p in pts), default=None),
                "missing": missing.ranges() if missing.runs <= MAX_RUNS_SHOWN else None,
                "lost_ranges": (lost_set.ranges() if known
                                and lost_set.runs <= MAX_RUNS_SHOWN else None),
            }
        self._spread(t, figures, until, now)
        rows = []
        for f in figures.values():
            settled = f["stored"] + f["lost"] + f["in_flight"]
            f["unexplained"] = max(0, f["emitted"] - settled)
            f["overcounted"] = max(0, f["stored"] + f["lost"] - f["emitted"])
            f["lost_by"] = [{"hop": h, "reason": r, "lines": n}
                            for (h, r), n in sorted(f["lost_by"].items())]
            f["in_flight_by"] = [{"hop": h, "where": w, "lines": n}
                                 for (h, w), n in sorted(f["in_flight_by"].items())]
            rows.append(f)
        rows.sort(key=lambda r: (r["source"], -(r["last_report"] or 0), r["epoch"]))
        return rows

    def _spread(self, t: _Tenant, figures: dict[Key, dict[str, Any]], until: float,
                now: float) -> None:
        """Give each reporter's queues' lines to the unsettled numbers of its entries."""
        latest: list[tuple[str, _GroupPoint]] = []
        newest_by_source: dict[str, float] = {}
        for rid, pts in t.groups.items():
            g = _at(pts, until)
            if g is None:
                continue
            latest.append((rid, g))
            for _, keys in g.groups:
                for src, _ep in keys:
                    newest_by_source[src] = max(newest_by_source.get(src, 0.0), g.ts)
        pending = {k: max(0, f["emitted"] - f["stored"] - f["lost"] - f["in_flight"])
                   for k, f in figures.items()}
        for _rid, g in sorted(latest, key=lambda x: -x[1].ts):
            stale = not g.final and now - g.ts > self.stale_factor * g.interval
            for in_flight, keys in g.groups:
                if any(newest_by_source.get(src, 0.0) > g.ts for src, _ in keys):
                    continue  # a newer reporter speaks for this queue's source
                held = [(w, int(n)) for w, n in sorted(in_flight.items())
                        if n and not (stale and w in MEMORY)]
                for key in keys:
                    f = figures.get(key)
                    if f is None:
                        continue
                    for i, (where, n) in enumerate(held):
                        give = min(n, pending[key])
                        if give <= 0:
                            continue
                        pending[key] -= give
                        held[i] = (where, n - give)
                        f["in_flight"] += give
                        by = f["in_flight_by"]
                        by[(g.hop, where)] = by.get((g.hop, where), 0) + give
