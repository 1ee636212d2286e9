"""The version-1 index: one append-only log per tenant (`tenants/<dir>/index.log` in the
data dir), read once to migrate it to index objects (`_index`).

Its records (framed as the WAL's, `_frames`) are `{"op":"add", "fp", "labels", "path",
"mint", "maxt", "n", "raw", "size", "lvl", "at", "seg", "off"}` and `{"op":"del", "fp",
"path"}`, in the order they happened. A damaged record is skipped and reading resumes at
the next valid one; a torn tail (a crash mid-append, never acknowledged) costs nothing.

Migration folds the log in order into the chunks it names, and puts them (and the "del"
records of chunks that may still be on disk) as one index object per period at fixed
names (`TenantIndex.put_migrated`). The log is removed only once the start that migrated
it has finished (after the WAL replay and the recovery of a damaged index), so a crash
before that migrates it again, to the same objects.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sluiceway.durable import fsync_dir
from sluiceway.store._frames import HDR, Damage, scan
from sluiceway.store._index import IndexEntry, Removal, TenantIndex, plausible

log = logging.getLogger("sluiceway.index")

NAME = "index.log"
_RECORD = b'{"op":'


@dataclass(slots=True)
class IndexScan:
    records: list[dict[str, Any]] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    malformed: int = 0

    @property
    def lost(self) -> int:
        """Damaged records; a torn tail never was a whole record and does not count."""
        return sum(d.records for d in self.damage if not d.torn) + self.malformed


def read_index(path: Path) -> IndexScan:
    """The records of a version-1 index log, in order."""
    out = IndexScan()
    if not path.exists():
        return out
    data = path.read_bytes()
    for item in scan(data, plausible, _RECORD):
        if isinstance(item, Damage):
            out.damage.append(item)
            if item.torn:
                log.warning("index %s: torn record at offset %d (%d bytes), a write cut "
                            "short by a crash; it is cut off", path, item.start,
                            item.end - item.start)
            else:
                for off in item.offsets:
                    log.warning("index %s: damaged record at offset %d skipped", path, off)
            continue
        start, end = item
        try:
            rec = orjson.loads(data[start + HDR.size : end])
        except orjson.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            log.warning("index %s: record at offset %d is not a JSON object; skipped", path,
                        start)
            out.damage.append(Damage(start, end, [start], [], False))
            continue
        out.records.append(rec)
    return out


@dataclass(slots=True)
class Migrated:
    """What a version-1 log held, for the start that migrated it."""

    path: Path
    chunks: int
    lost: int  # damaged records (the index must then be compared with the chunks)
    damaged: bool


def fold(scan_: IndexScan, where: Path) -> tuple[list[IndexEntry], list[Removal], int]:
    """The log's records in order: the chunks it names at its end, the chunks it took out
    of service (their files may still be there), and the malformed records."""
    live: dict[str, IndexEntry] = {}
    removed: dict[str, Removal] = {}
    malformed = 0
    for r in scan_.records:
        try:
            if r["op"] == "add":
                e = IndexEntry.of(r)
                live[e.ref.path] = e
                removed.pop(e.ref.path, None)
            elif r["op"] == "del":
                path = str(r["path"])
                live.pop(path, None)
                removed[path] = Removal(int(r["fp"]), path)
            else:
                raise ValueError(f"unknown op {r['op']!r}")
        except (KeyError, ValueError, TypeError) as exc:
            malformed += 1
            log.warning("index %s: malformed record skipped (%r): %s", where, exc, r)
    return list(live.values()), list(removed.values()), malformed


def migrate(root: Path, index: TenantIndex) -> Migrated | None:
    """Put the chunks the version-1 log in `root` (a tenant's directory) names as index
    objects; None when there is no log. The log stays until `finish`."""
    path = root / NAME
    try:
        created = path.stat().st_mtime
    except FileNotFoundError:
        return None
    scan_ = read_index(path)
    adds, removals, malformed = fold(scan_, path)
    scan_.malformed = malformed
    index.put_migrated(adds, removals, created)
    # As the version-1 store did: any damage, a torn tail too (its record may have named
    # a chunk that is on disk), has the index compared with the chunks.
    return Migrated(path, len(adds), scan_.lost, bool(scan_.damage) or bool(malformed))


def finish(m: Migrated) -> None:
    """The migrated log is no longer needed: remove it, durably."""
    try:
        os.unlink(m.path)
    except FileNotFoundError:
        return
    fsync_dir(m.path.parent)
