"""The client's numbering (ARCHITECTURE.md §ledger).

Every record that passes the level filter gets the next number of the process's
numbering, in record keys that no sink shows as a field (`_seq`: the number; in spill
mode also `_ep`: the epoch, since the spill keeps records for a later run, which
replays them with their numbers; without it a record is of the current epoch). Each
sink is a source (`client/<name>/<host>/<sink>`, plus its spill directory in spill
mode), numbered alike: every sink gets every record.

The epoch changes when numbering starts over. In spill mode it survives a clean stop:
`ledger.json` in the first sink's spill directory says where numbering stopped, and
the next run goes on from there; a run that did not stop cleanly (SIGKILL) leaves the
file marked open, and the next run starts a new epoch.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from sluiceway.durable import atomic_write
from sluiceway.ship import LossBook, Part

if TYPE_CHECKING:
    pass

log = logging.getLogger("sluiceway.client")
STATE_FILE = "ledger.json"
# Queue drop reasons of records refused at the door (the others were accepted first).
REFUSED = frozenset({"full", "timeout", "spill_full", "spill_backlog", "closed"})


def new_epoch() -> str:
    return f"{time.time_ns() // 1_000_000:x}-{os.getpid():x}"


def source_id(app: str, sink: str, spill_dir: Path | None) -> str:
    if sink.startswith("file:"):  # written on every line of the file: kept short
        sink = "file-" + hashlib.blake2b(sink.encode(), digest_size=4).hexdigest()
    src = f"client/{app}/{socket.gethostname()}/{sink}"
    if spill_dir is not None:
        where = hashlib.blake2b(str(spill_dir.resolve()).encode(), digest_size=4).hexdigest()
        src += f"/{where}"
    return src


class Numbering:
    """The process's numbers: `next()` per record; `epoch`; `base` where they began."""

    def __init__(self, state_dir: Path | None) -> None:
        self.state_path = state_dir / STATE_FILE if state_dir is not None else None
        self.epoch, self.base = new_epoch(), 0
        state = self._load()
        if state is not None and not state.get("open", True):
            self.epoch, self.base = str(state["epoch"]), int(state["next"])
        elif state is not None:
            log.warning("sluiceway: the last run of this spill directory did not stop "
                        "cleanly; numbering starts a new epoch (%s)", self.epoch)
        self._count = itertools.count(self.base)
        self.next = self._count.__next__
        self.losses = LossBook()
        self._save(open_=True, next_=self.base)

    def _load(self) -> dict[str, Any] | None:
        if self.state_path is None:
            return None
        try:
            state = orjson.loads(self.state_path.read_bytes())
            return state if isinstance(state, dict) and "epoch" in state else None
        except (OSError, orjson.JSONDecodeError):
            return None

    def _save(self, *, open_: bool, next_: int) -> None:
        if self.state_path is None:
            return
        try:
            atomic_write(self.state_path, orjson.dumps(
                {"epoch": self.epoch, "next": next_, "open": open_}), mode=0o600)
        except OSError as exc:
            log.warning("sluiceway: cannot write %s: %s", self.state_path, exc)

    def emitted(self) -> int:
        """Numbers handed out so far (a peek: takes none)."""
        return int(self._count.__reduce__()[1][0])

    def stop(self) -> None:
        """A clean stop: the next run of this spill directory goes on from here."""
        self._save(open_=False, next_=self.emitted())


class SinkLedger:
    """One sink's source: notes the numbers its queue and its delivery lose."""

    def __init__(self, source: str, numbering: Numbering) -> None:
        self.source = source
        self.numbering = numbering
        self.losses = numbering.losses
        self.handed_on = 0  # numbers of this epoch below it were delivered (lineage)

    def refused(self, rec: dict[str, Any]) -> None:
        seq = rec["_seq"]
        self.losses.lose(self.source, rec.get("_ep", self.numbering.epoch), [(seq, seq + 1)])

    def dropped(self, items: list[Any], _reason: str) -> None:
        for r in items:
            if isinstance(r, dict) and "_seq" in r:
                self.losses.lose(self.source, str(r.get("_ep", self.numbering.epoch)),
                                 [(int(r["_seq"]), int(r["_seq"]) + 1)])

    def lost(self, part: Part, gone: dict[str, int]) -> None:
        records = part.payload if isinstance(part.payload, list) else []
        n = min(part.lines, sum(gone.values()))
        self.dropped(records[len(records) - n:], "")

    def handed(self, items: list[Any]) -> None:
        ep = self.numbering.epoch
        top = max((int(r["_seq"]) for r in items
                   if isinstance(r, dict) and "_seq" in r and r.get("_ep", ep) == ep),
                  default=-1)
        if top >= self.handed_on:
            self.handed_on = top + 1

    def unknown(self, n: int) -> None:
        self.losses.lose_unknown(self.source, self.numbering.epoch, n)

    def report(self, st: dict[str, Any], lineage: bool = False) -> dict[str, Any]:
        """The sink's ledger group for a heartbeat, from its `SinkWorker.stats()`;
        `lineage`: the sink hands its lines to another hop (a file an agent tails)."""
        lost = dict(st["dropped_by_reason"])
        for r, n in st["lost_by_reason"].items():
            lost[r] = lost.get(r, 0) + n
        refused = sum(n for r, n in st["dropped_by_reason"].items() if r in REFUSED)
        ep = self.numbering.epoch
        entries = [{"source": self.source, "epoch": ep,
                    "emitted": self.numbering.base + st["enqueued"] + refused,
                    "lost": lost, "lost_ranges": self.losses.ranges(self.source, ep)}]
        if lineage:
            entries[0]["handed_on"] = max(self.handed_on, self.numbering.base)
        for src, old in self.losses.epochs():  # records of earlier epochs, replayed
            if src == self.source and old != ep:
                entries.append({"source": src, "epoch": old, "emitted": 0, "lost": {},
                                "lost_ranges": self.losses.ranges(src, old)})
        return {"in_flight": {"queue": st["depth"], "sending": st["in_flight"],
                              "disk": st["spill_pending"]},
                "entries": entries}
