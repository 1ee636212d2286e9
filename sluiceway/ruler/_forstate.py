"""`for` state across restarts.

Prometheus restores how long an alert has been pending from the `ALERTS_FOR_STATE`
series in its own TSDB; Loki's ruler from the WAL of what it remote-writes. Our ruler
keeps the same facts in a small document per group (`StateBlobs`: a local file in a
directory, `DirBlobs`, or in cluster mode a key of the cluster's KV, so the member that
takes a group over reads what the last one wrote), replaced after every
evaluation that has (or just stopped having) pending or firing alerts: for each alert
its label set and `active_at`, and the evaluation time the file was written at (the
last `ALERTS_FOR_STATE` sample: "down at"). The series themselves still go out by
remote write for dashboards.

After a restart, the group's first evaluation creates its alerts afresh (active now);
then `restore` applies Prometheus' rule (`RestoreForState`) to each alert found in the
file, if the file is younger than `for_outage_tolerance`:
- rules whose `for` is shorter than `for_grace_period` are not restored;
- an alert that had already been pending for `for` keeps its old `active_at` (it fires
  at the next evaluation);
- one with less than `for_grace_period` left fires `for_grace_period` from now;
- otherwise the time it spent pending before the outage counts: `active_at` moves
  forward by the length of the outage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sluiceway.durable import atomic_write, ensure_dir
from sluiceway.ruler._rules import AlertingRule, key_of

log = logging.getLogger("sluiceway.ruler")


@dataclass(slots=True)
class SavedState:
    saved_at: int  # Unix ns of the evaluation that wrote it ("down at")
    alerts: dict[tuple[str, tuple[tuple[str, str], ...]], int]  # (rule, labels) -> active_at


class StateBlobs(Protocol):
    """Where for-state documents live, by name (a name is `[0-9a-f]{32}`). Errors are
    OSError (a cluster's NATS not answering is one)."""

    def read(self, name: str) -> bytes | None: ...

    def write(self, name: str, data: bytes) -> None: ...

    def remove(self, name: str) -> None: ...

    def where(self, name: str) -> str: ...


class DirBlobs:
    """One file per document in `directory`, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def read(self, name: str) -> bytes | None:
        try:
            return (self.directory / f"{name}.json").read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        ensure_dir(self.directory)
        atomic_write(self.directory / f"{name}.json", data)

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{name}.json").unlink()

    def where(self, name: str) -> str:
        return str(self.directory / f"{name}.json")


StateHome = Path | StateBlobs  # a directory (for `DirBlobs`), or blobs as they are


def blobs_of(home: StateHome) -> StateBlobs:
    return DirBlobs(home) if isinstance(home, Path) else home


def state_name(tenant: str, namespace: str, group: str) -> str:
    """The name of a group's for-state document (`[0-9a-f]{32}`)."""
    return hashlib.sha256("\0".join((tenant, namespace, group)).encode()).hexdigest()[:32]


class ForStateFile:
    def __init__(self, home: StateHome, tenant: str, namespace: str, group: str) -> None:
        self.blobs = blobs_of(home)
        self.name = state_name(tenant, namespace, group)
        self.path = self.blobs.where(self.name)
        self.ident = {"tenant": tenant, "namespace": namespace, "group": group}
        self._raw: bytes | None = None
        try:
            self._raw = self.blobs.read(self.name)
        except OSError as exc:
            log.warning("cannot read for-state %s: %s", self.path, exc)
        self.had_alerts = self._raw is not None

    def load(self) -> SavedState | None:
        raw_bytes, self._raw = self._raw, None
        try:
            if raw_bytes is None:
                raw_bytes = self.blobs.read(self.name)
            if raw_bytes is None:
                return None
            raw: dict[str, Any] = json.loads(raw_bytes)
            alerts = {(a["rule"], key_of(a["labels"])): int(a["active_at"])
                      for a in raw["alerts"]}
            return SavedState(int(raw["saved_at"]), alerts)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable for-state %s: %s", self.path, exc)
            return None

    def save(self, ts: int, rules: list[AlertingRule]) -> None:
        alerts = [{"rule": r.name, "labels": a.labels, "active_at": a.active_at,
                   "state": a.state} for r in rules for a in r.active_alerts()]
        if not alerts and not self.had_alerts:
            return
        self.blobs.write(self.name, json.dumps({**self.ident, "saved_at": ts,
                                                "alerts": alerts}).encode())
        self.had_alerts = bool(alerts)

    def remove(self) -> None:
        """The group is gone: so is its state."""
        self.blobs.remove(self.name)


def restore(rules: list[AlertingRule], saved: SavedState | None, ts: int,
            outage_tolerance_ns: int, grace_ns: int) -> None:
    """Prometheus' `RestoreForState` over the saved state, after the first evaluation at
    `ts`; every rule counts as restored afterwards."""
    usable = saved is not None and ts - saved.saved_at <= outage_tolerance_ns
    for rule in rules:
        if usable and rule.hold_ns >= grace_ns:
            assert saved is not None
            for a in rule.active_alerts():
                old = saved.alerts.get((rule.name, key_of(a.labels)))
                if old is None:
                    continue
                remaining = rule.hold_ns - (saved.saved_at - old)
                if remaining <= 0:
                    a.active_at = old
                elif remaining < grace_ns:
                    a.active_at = ts + grace_ns - rule.hold_ns
                else:
                    a.active_at = old + (ts - saved.saved_at)
        rule.restored = True
