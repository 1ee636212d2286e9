"""The index: immutable index objects in the store's `ObjectStore`, a set per tenant.

Keys: `index/<tenant dir>/<period>/<kind>-<created ms>-<writer>-<seq>.idx`. The period
is the UTC day (`YYYY-MM-DD`) of the chunks an object names, as in a chunk's own key
(`chunks/<day>/...`); the writer is one process's store (random per open); the kind is
`w` (a flush, compaction, retention, a chunk taken out of service, recovery), `c` (an
index compaction: it supersedes the objects it folds together) or `m` (migrated from a
version-1 index log; one per period, its name fixed so a repeated migration writes the
same object again).

An object is framed records (`_frames`: u32 length | u32 CRC32 | payload), JSON each:
the header `{"op":"hdr","v":1,"tenant","period","writer","created","supersedes":[names]}`,
then `{"op":"add","fp","labels","path","mint","maxt","n","raw","size","lvl","at"}` (a
chunk in service) and `{"op":"del","fp","path","at"}` (a chunk out of service since
`at`, Unix seconds). An object is put once, atomically, and never changed.

What the index says is order-free, so that any number of writers can add objects: a
chunk is in service when a live object adds it and no live object deletes it (paths are
unique and never reused). An object is live unless some object names it in
`supersedes`. A reader lists the tenant's objects, reads the ones it has not seen (those
it knows to be superseded are never read) and folds them in; an object gone from the
listing was deleted after it was superseded. Compaction and retention write an object
that adds the new chunk and deletes the old ones; an index compaction writes one object
per period with what its live objects still say and supersedes them (the names they
superseded that still exist are carried over, so deleting them in any order is safe).
Deleted chunks and superseded objects are deleted for good `delete_delay` after the
object that took them out of service, longer than any query and any reader's sync.

Damage: a record that does not check out costs only itself (counted in `records_lost`,
and `damaged` asks the store to compare the index with the chunks at start); an object
that cannot be read now (an I/O error) is read again at the next sync.

Deletion of lines (Loki's delete API) is another record kind in the same objects (a
tombstone with a selector and a time range), folded in by the same rules: a reader that
meets a record kind it does not know counts the record as lost rather than ignoring it.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from sluiceway.model import Matcher, parse_labels
from sluiceway.store._frames import HDR, Damage, scan
from sluiceway.store._objstore import NotFound, ObjectInfo, ObjectStore
from sluiceway.store._stream import ChunkRef

log = logging.getLogger("sluiceway.index")
_T = TypeVar("_T")

PREFIX = "index/"  # every tenant's index objects are below it
VERSION = 1
WRITTEN, COMPACTED, MIGRATED = "w", "c", "m"
_RECORD = b'{"op":'  # every record is a JSON object whose first key is "op"
_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})/([wcm])-(\d{13})-([0-9a-z]{1,32})-(\d{6,})\.idx")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
NO_PERIOD = "1970-01-01"  # a path that names no day (never made by this store)


def plausible(data: bytes, start: int, length: int) -> bool:
    """Could an index record start at `start` (for `_frames.scan`)?"""
    return length > len(_RECORD) and data.startswith(_RECORD, start)


def period_of(path: str) -> str:
    """The period of a chunk path (`chunks/<day>/<name>.chunk`): its day."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "chunks" and _DAY.fullmatch(parts[1]):
        return parts[1]
    return NO_PERIOD


def new_writer_id() -> str:
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One chunk in service: its stream (fingerprint and labels, as `format_labels`
    writes them) and where it is."""

    fp: int
    labels: str
    ref: ChunkRef

    def record(self) -> dict[str, Any]:
        r = self.ref
        return {"op": "add", "fp": self.fp, "labels": self.labels, "path": r.path,
                "mint": r.mint, "maxt": r.maxt, "n": r.n, "raw": r.raw_bytes, "size": r.size,
                "lvl": r.level, "at": r.created}

    @staticmethod
    def of(r: dict[str, Any]) -> IndexEntry:
        """From an "add" record; KeyError, ValueError or TypeError when it is not one."""
        ref = ChunkRef(str(r["path"]), int(r["mint"]), int(r["maxt"]), int(r["n"]),
                       int(r["raw"]), int(r["size"]), int(r.get("lvl", 1)),
                       float(r.get("at", 0.0)))
        labels = r["labels"]
        if not isinstance(labels, str):
            raise TypeError("labels must be a string")
        return IndexEntry(int(r["fp"]), labels, ref)


@dataclass(frozen=True, slots=True)
class Removal:
    """A chunk taken out of service (compaction, retention, damage)."""

    fp: int
    path: str


@dataclass(slots=True)
class Delta:
    """What a change did to the chunks in service."""

    added: list[IndexEntry] = field(default_factory=list)
    removed: list[IndexEntry] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)

    def extend(self, other: Delta) -> None:
        self.added += other.added
        self.removed += other.removed


@dataclass(slots=True)
class _Object:
    name: str  # below the tenant's prefix: `<period>/<file>`
    kind: str
    period: str
    created: float
    size: int
    writer: str = ""
    adds: tuple[str, ...] = ()
    dels: tuple[str, ...] = ()
    supersedes: tuple[str, ...] = ()
    lost: int = 0  # damaged records
    loaded: bool = True  # False: known to be superseded, never read
    seen: int = 0  # the fold step it came in at


@dataclass(slots=True)
class _Path:
    entry: IndexEntry | None = None
    adds: int = 0  # live objects that add it
    dels: int = 0  # live objects that delete it
    deleted_at: float = float("inf")  # the earliest "del" of it


@dataclass(slots=True)
class Decoded:
    """One object's records as read."""

    header: dict[str, Any] | None
    adds: list[IndexEntry]
    dels: list[tuple[str, float]]
    lost: int
    damage: list[Damage]


def encode(header: dict[str, Any], records: Iterable[dict[str, Any]]) -> bytes:
    frames = []
    for r in (header, *records):
        payload = orjson.dumps(r)
        frames.append(HDR.pack(len(payload), zlib.crc32(payload)) + payload)
    return b"".join(frames)


def decode(data: bytes, where: str) -> Decoded:
    """The records of an index object. Damage is counted and logged, with `where`; an
    object is put whole, so a frame cut short at its end is damage too."""
    out = Decoded(None, [], [], 0, [])
    first = True
    header_counted = False  # the first record was lost (counted) where the header belongs
    for item in scan(data, plausible, _RECORD):
        first_here, first = first, False
        if isinstance(item, Damage):
            header_counted = header_counted or first_here
            out.damage.append(item)
            out.lost += item.records
            for off in item.offsets:
                log.warning("index %s: damaged record at offset %d skipped", where, off)
            continue
        start, end = item
        try:
            rec = orjson.loads(data[start + HDR.size : end])
        except orjson.JSONDecodeError:
            rec = None
        try:
            if not isinstance(rec, dict):
                raise TypeError("not a JSON object")
            op = rec.get("op")
            if op == "hdr" and first_here:
                if rec.get("v") != VERSION:
                    raise ValueError(f"version {rec.get('v')!r}; this release reads {VERSION}")
                out.header = rec
            elif op == "add":
                out.adds.append(IndexEntry.of(rec))
            elif op == "del":
                out.dels.append((str(rec["path"]), float(rec.get("at", 0.0))))
            else:
                raise ValueError(f"a record of kind {op!r} this release does not know here")
        except (KeyError, ValueError, TypeError) as exc:
            header_counted = header_counted or first_here
            out.lost += 1
            log.warning("index %s: record at offset %d skipped (%s): %.200r", where, start,
                        exc, rec)
    if out.header is None and not header_counted:
        out.lost += 1  # no header, and not counted with damage at the start
        log.warning("index %s: the object has no header: what it supersedes is unknown", where)
    return out


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


class Writer:
    """Names index objects of one store: its id, and a sequence shared by its tenants."""

    def __init__(self, writer_id: str | None = None) -> None:
        self.id = writer_id or new_writer_id()
        self._seq = itertools.count()

    def name(self, period: str, kind: str, created: float) -> str:
        return f"{period}/{kind}-{int(created * 1000):013d}-{self.id}-{next(self._seq):06d}.idx"


class TenantIndex:
    """One tenant's index: the objects below `index/<tenant dir>/`, folded into the chunks
    in service; writes add objects. Every change returns a `Delta`; the caller applies
    deltas to its streams in the order they were made, holding `lock`."""

    def __init__(self, tenant: str, objects: ObjectStore, dirname: str,
                 writer: Writer | None = None) -> None:
        self.tenant = tenant
        self.objects = objects
        self.prefix = f"{PREFIX}{dirname}/"
        self.writer = writer  # None: read-only
        self.lock = threading.RLock()
        self._objects: dict[str, _Object] = {}
        self._superseded: dict[str, float] = {}  # name -> when the first object said so
        self._paths: dict[str, _Path] = {}
        self._gone: set[str] = set()  # deleted chunks (this process deleted them)
        self._step = 0
        self._live: dict[str, IndexEntry] = {}
        self.unreadable: set[str] = set()  # objects that could not be read (retried)
        self.records_lost = 0
        self.damaged = False

    # --- reading ----------------------------------------------------------------------
    def key(self, name: str) -> str:
        return self.prefix + name

    @property
    def step(self) -> int:
        """Grows with every object folded in: take it before a listing, for `sync`."""
        return self._step

    def sync(self, listing: Sequence[ObjectInfo] | None = None,
             listed_at: int | None = None) -> Delta:
        """Fold in the objects of `listing` (of this tenant's prefix; listed now when None)
        that are new, and forget those gone from it. `listed_at`: `step` just before the
        listing was made (an object folded in since, our own write, is not in it but not
        gone either)."""
        if listing is None:
            listed_at = self._step
            listing = self.objects.list(self.prefix)
        cut = len(self.prefix)
        listed = {o.key[cut:]: o for o in listing if o.key.startswith(self.prefix)}
        with self.lock:
            step = self._step if listed_at is None else listed_at
            new = [n for n in listed if n not in self._objects]
        out = Delta()
        for n in sorted(new, key=_load_order):
            m = _NAME.fullmatch(n)
            if m is None:
                continue
            with self.lock:
                if n in self._objects:
                    continue
                skip = n in self._superseded
            if skip:
                obj = _Object(n, m[2], m[1], int(m[3]) / 1000, listed[n].size, m[4],
                              loaded=False)
                with self.lock:
                    out.extend(self._fold(obj, [], []))
                continue
            try:
                data = self.objects.get(self.key(n))
            except NotFound:
                continue  # deleted since the listing (superseded)
            except OSError as exc:
                if n not in self.unreadable:
                    log.warning("index object %s of tenant %s cannot be read now (%s); it "
                                "is read again at the next sync", self.key(n), self.tenant, exc)
                self.unreadable.add(n)
                continue
            self.unreadable.discard(n)
            obj, entries, dels_at = self._parse(n, m, data)
            with self.lock:
                out.extend(self._fold(obj, entries, dels_at))
        with self.lock:
            for n in [n for n, o in self._objects.items() if n not in listed and o.seen <= step]:
                out.extend(self._forget(n))
        return out

    def _parse(self, name: str, m: re.Match[str], data: bytes
               ) -> tuple[_Object, list[IndexEntry], list[tuple[str, float]]]:
        d = decode(data, self.key(name))
        h = d.header or {}
        created = h.get("created")
        sup = h.get("supersedes", [])
        obj = _Object(name, m[2], m[1],
                      float(created) if isinstance(created, int | float) else int(m[3]) / 1000,
                      len(data), m[4], tuple(e.ref.path for e in d.adds),
                      tuple(p for p, _ in d.dels),
                      tuple(str(s) for s in sup) if isinstance(sup, list) else (), d.lost)
        if d.lost:
            self.records_lost += d.lost
            self.damaged = True
        return obj, d.adds, d.dels

    def _fold(self, obj: _Object, entries: Sequence[IndexEntry],
              dels_at: Sequence[tuple[str, float]]) -> Delta:
        """Take `obj` in (under `lock`): its supersedes first, then its records when it is
        live."""
        self._step += 1
        obj.seen = self._step
        self._objects[obj.name] = obj
        touched: set[str] = set()
        for x in obj.supersedes:
            if x in self._superseded:
                continue
            self._superseded[x] = obj.created
            old = self._objects.get(x)
            if old is not None and old.loaded:
                self._count(old, -1, touched)
        if obj.loaded and obj.name not in self._superseded:
            for e in entries:
                p = self._paths.setdefault(e.ref.path, _Path())
                if p.entry is None:
                    p.entry = e
            for path, at in dels_at:
                p = self._paths.setdefault(path, _Path())
                p.deleted_at = min(p.deleted_at, at)
            self._count(obj, 1, touched)
        return self._settle(touched)

    def _count(self, obj: _Object, sign: int, touched: set[str]) -> None:
        for path in obj.adds:
            self._paths.setdefault(path, _Path()).adds += sign
            touched.add(path)
        for path in obj.dels:
            self._paths.setdefault(path, _Path()).dels += sign
            touched.add(path)

    def _settle(self, touched: set[str]) -> Delta:
        """The chunks `touched` whose service changed: a path is in service while a live
        object adds it and none deletes it. `_live` keeps who is."""
        out = Delta()
        live = self._live
        for path in touched:
            p = self._paths[path]
            now = p.adds > 0 and p.dels == 0 and p.entry is not None
            was = live.get(path)
            if now and was is None:
                assert p.entry is not None
                live[path] = p.entry
                out.added.append(p.entry)
            elif not now and was is not None:
                del live[path]
                out.removed.append(was)
            if p.adds <= 0 and p.dels <= 0:
                del self._paths[path]
                self._gone.discard(path)
            elif p.adds <= 0:
                p.entry = None
        return out

    def _forget(self, name: str) -> Delta:
        """An object gone from the listing: deleted once superseded (or by hand)."""
        obj = self._objects.pop(name)
        touched: set[str] = set()
        if obj.loaded and name not in self._superseded and (obj.adds or obj.dels):
            lost = len(obj.adds) + len(obj.dels)
            log.warning("index object %s of tenant %s was live and is gone (deleted by "
                        "hand?): its %d records are lost; the chunks it named leave "
                        "service", self.key(name), self.tenant, lost)
            self.records_lost += lost
            self.damaged = True
            self._count(obj, -1, touched)
        return self._settle(touched)

    def live(self) -> list[IndexEntry]:
        """Every chunk in service."""
        with self.lock:
            return list(self._live.values())

    def deleted(self) -> set[str]:
        """Chunk paths some live object deletes (their objects may still exist)."""
        with self.lock:
            return {path for path, p in self._paths.items() if p.dels > 0}

    def named(self) -> set[str]:
        """Chunk paths some index object this reader holds names, adding or deleting
        them: the live ones, and the superseded ones not deleted yet. (A superseded object
        this reader never read names nothing else on disk: what superseded it carries over
        every name whose chunk was not deleted for good.)"""
        with self.lock:
            out = set(self._paths)
            for o in self._objects.values():
                out.update(o.adds)
                out.update(o.dels)
            return out

    def object_count(self) -> int:
        with self.lock:
            return sum(1 for n in self._objects if n not in self._superseded)

    def size_bytes(self) -> int:
        with self.lock:
            return sum(o.size for o in self._objects.values())

    # --- writing ----------------------------------------------------------------------
    def _header(self, period: str, created: float, supersedes: Sequence[str] = ()
                ) -> dict[str, Any]:
        assert self.writer is not None, "a read-only index writes nothing"
        return {"op": "hdr", "v": VERSION, "tenant": self.tenant, "period": period,
                "writer": self.writer.id, "created": created, "supersedes": list(supersedes)}

    def write(self, changes: Sequence[tuple[Sequence[IndexEntry], Sequence[Removal]]],
              kind: str = WRITTEN) -> tuple[Delta, list[OSError | None]]:
        """One object per change (its adds and removals), put together (`put_many`);
        those that are durable are folded in. One result per change."""
        assert self.writer is not None, "a read-only index writes nothing"
        now = time.time()
        items: list[tuple[str, bytes]] = []
        objs: list[tuple[_Object, list[IndexEntry], list[tuple[str, float]]]] = []
        for adds, removals in changes:
            period = period_of(adds[0].ref.path) if adds else \
                period_of(removals[0].path) if removals else _day(now)
            name = self.writer.name(period, kind, now)
            dels = [{"op": "del", "fp": r.fp, "path": r.path, "at": now} for r in removals]
            items.append((self.key(name),
                          encode(self._header(period, now), [*(e.record() for e in adds),
                                                             *dels])))
            objs.append((_Object(name, kind, period, now, len(items[-1][1]), self.writer.id,
                                 tuple(e.ref.path for e in adds),
                                 tuple(r.path for r in removals)),
                         list(adds), [(r.path, now) for r in removals]))
        results = self.objects.put_many(items)
        out = Delta()
        with self.lock:
            for (obj, entries, dels_at), res in zip(objs, results, strict=True):
                if res is None and obj.name not in self._objects:
                    out.extend(self._fold(obj, entries, dels_at))
        return out, results

    def add(self, entries: Sequence[IndexEntry]) -> tuple[Delta, list[IndexEntry],
                                                           OSError | None]:
        """Name new chunks: one object per period. Returns the delta, the entries whose
        object could not be written, and the first error."""
        groups = _by_period(entries, lambda e: e.ref.path)
        delta, results = self.write([(g, ()) for g in groups])
        failed = [e for g, r in zip(groups, results, strict=True) if r is not None for e in g]
        return delta, failed, next((r for r in results if r is not None), None)

    def remove(self, removals: Sequence[Removal]) -> Delta:
        """Take chunks out of service: one object per period of their paths. Raises the
        first OSError once the others are written and folded in."""
        groups = _by_period(removals, lambda r: r.path)
        delta, results = self.write([((), g) for g in groups])
        error = next((r for r in results if r is not None), None)
        if error is not None:
            raise error
        return delta

    def replace(self, new: IndexEntry, old: Sequence[Removal]) -> Delta:
        """One object that adds `new` and takes `old` out (compaction)."""
        delta, results = self.write([([new], old)])
        if results[0] is not None:
            raise results[0]
        return delta

    def put_migrated(self, adds: Sequence[IndexEntry], removals: Sequence[Removal],
                     created: float) -> None:
        """The objects of a migrated version-1 index log: one per period, at names fixed by
        the period, so that a migration interrupted and run again puts the same bytes."""
        periods: dict[str, tuple[list[IndexEntry], list[Removal]]] = {}
        for e in adds:
            periods.setdefault(period_of(e.ref.path), ([], []))[0].append(e)
        for r in removals:
            periods.setdefault(period_of(r.path), ([], []))[1].append(r)
        items = []
        for period, (a, d) in sorted(periods.items()):
            header = {"op": "hdr", "v": VERSION, "tenant": self.tenant, "period": period,
                      "writer": "v1", "created": created, "supersedes": []}
            records = [*(e.record() for e in a),
                       *({"op": "del", "fp": r.fp, "path": r.path, "at": 0.0} for r in d)]
            items.append((self.key(f"{period}/{MIGRATED}-{0:013d}-v1-{0:06d}.idx"),
                          encode(header, records)))
        for res in self.objects.put_many(items):
            if res is not None:
                raise res

    # --- compaction and garbage -------------------------------------------------------
    def compact(self) -> int:
        """Fold the live objects of each period with more than one (or with records that
        say nothing any more) into one; returns how many objects it superseded."""
        if self.writer is None:
            return 0
        with self.lock:
            by_period: dict[str, list[_Object]] = {}
            for o in self._objects.values():
                if o.loaded and o.name not in self._superseded and not o.lost:
                    by_period.setdefault(o.period, []).append(o)
            plans = [self._plan(period, objs) for period, objs in sorted(by_period.items())]
        n = 0
        for plan in plans:
            if plan is None:
                continue
            period, group, adds, removals, carried = plan
            now = time.time()
            name = self.writer.name(period, COMPACTED, now)
            sup = sorted({o.name for o in group} | carried)
            data = encode(self._header(period, now, sup),
                          [*(e.record() for e in adds),
                           *({"op": "del", "fp": r.fp, "path": r.path, "at": at}
                             for r, at in removals)])
            try:
                self.objects.put(self.key(name), data)
            except OSError as exc:
                log.warning("index compaction of tenant %s, period %s: %s; the objects stay "
                            "as they are", self.tenant, period, exc)
                continue
            obj = _Object(name, COMPACTED, period, now, len(data), self.writer.id,
                          tuple(e.ref.path for e in adds), tuple(r.path for r, _ in removals),
                          tuple(sup))
            with self.lock:
                delta = self._fold(obj, adds, [(r.path, at) for r, at in removals])
            # What the group said is what the new object says: nothing changes service.
            if delta:
                log.error("index compaction of tenant %s changed the chunks in service "
                          "(%d in, %d out)", self.tenant, len(delta.added), len(delta.removed))
            n += len(group)
        return n

    def _plan(self, period: str, group: list[_Object]
              ) -> tuple[str, list[_Object], list[IndexEntry], list[tuple[Removal, float]],
                         set[str]] | None:
        """What one compacted object of `group` says (under `lock`), or None when it would
        say the same as the group."""
        inside = {o.name for o in group}
        added_inside: dict[str, int] = {}
        for o in group:
            for path in o.adds:
                added_inside[path] = added_inside.get(path, 0) + 1
        adds: dict[str, IndexEntry] = {}
        removals: dict[str, tuple[Removal, float]] = {}
        pointless = 0
        for o in group:
            for path in o.adds:
                e = self._live.get(path)
                if e is not None:
                    adds[path] = e
                else:
                    pointless += 1
            for path in o.dels:
                p = self._paths.get(path)
                if p is None:
                    continue
                added_outside = p.adds > added_inside.get(path, 0)
                if added_outside or path not in self._gone:
                    fp = p.entry.fp if p.entry is not None else 0
                    removals[path] = (Removal(fp, path), p.deleted_at)
                else:
                    pointless += 1
        carried = {s for o in group for s in o.supersedes
                   if s in self._objects and s not in inside}
        if len(group) < 2 and not pointless:
            return None
        return period, group, list(adds.values()), list(removals.values()), carried

    def garbage(self, now: float, delay: float) -> tuple[list[str], list[str]]:
        """(chunk paths, index object names) to delete for good: out of service for
        `delay` seconds. An object that says nothing (a compaction of records that no
        longer said anything) goes too, once none of the objects it supersedes is left."""
        with self.lock:
            chunks = [path for path, p in self._paths.items()
                      if p.dels > 0 and p.deleted_at + delay <= now and path not in self._gone]
            objs = [n for n, t in self._superseded.items()
                    if t + delay <= now and n in self._objects]
            objs += [n for n, o in self._objects.items()
                     if o.loaded and not o.adds and not o.dels and not o.lost
                     and n not in self._superseded and o.created + delay <= now
                     and not any(x in self._objects for x in o.supersedes)]
        return chunks, objs

    def chunks_deleted(self, paths: Iterable[str]) -> None:
        with self.lock:
            self._gone.update(paths)

    def objects_deleted(self, names: Iterable[str]) -> Delta:
        out = Delta()
        with self.lock:
            for n in names:
                if n in self._objects:
                    out.extend(self._forget(n))
        return out


def _load_order(name: str) -> tuple[int, int, str]:
    """Index compactions first, newest first (what they supersede is then never read)."""
    m = _NAME.fullmatch(name)
    if m is not None and m[2] == COMPACTED:
        return 0, -int(m[3]), name
    return 1, 0, name


def _by_period(items: Iterable[_T], path: Callable[[_T], str]) -> list[list[_T]]:
    out: dict[str, list[_T]] = {}
    for it in items:
        out.setdefault(period_of(path(it)), []).append(it)
    return [out[k] for k in sorted(out)]


def tenant_dirs(listing: Iterable[ObjectInfo]) -> dict[str, list[ObjectInfo]]:
    """A listing of `PREFIX` by tenant directory."""
    out: dict[str, list[ObjectInfo]] = {}
    for o in listing:
        rest = o.key[len(PREFIX):] if o.key.startswith(PREFIX) else ""
        d, sep, _ = rest.partition("/")
        if sep:
            out.setdefault(d, []).append(o)
    return out


class IndexReader:
    """Every tenant's index in an `ObjectStore`, read-only (tools and tests; the store's
    `TenantStore`s hold their own `TenantIndex`)."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._tenants: dict[str, TenantIndex] = {}

    def sync(self) -> None:
        for d, infos in tenant_dirs(self.objects.list(PREFIX)).items():
            self._tenants.setdefault(d, TenantIndex(d, self.objects, d)).sync(infos)

    def tenant_dirs(self) -> list[str]:
        return sorted(self._tenants)

    def refs(self, tenant_dir: str, matchers: Sequence[Matcher] = (), start: int = -(1 << 63),
             end: int = (1 << 63) - 1) -> list[IndexEntry]:
        """The chunks in service of one tenant (by its directory name) whose stream matches
        every matcher and whose time range overlaps [start, end)."""
        ti = self._tenants.get(tenant_dir)
        if ti is None:
            return []
        out = []
        for e in ti.live():
            if e.ref.maxt < start or e.ref.mint >= end:
                continue
            if matchers:
                labels = parse_labels(e.labels)
                if not all(m.matches(labels.get(m.name, "")) for m in matchers):
                    continue
            out.append(e)
        return sorted(out, key=lambda e: (e.fp, e.ref.mint, e.ref.path))

    def records(self) -> dict[str, dict[str, Any]]:
        """`<tenant dir>/<chunk path>` → the "add" record of every chunk in service."""
        return {f"{d}/{e.ref.path}": e.record() for d in self.tenant_dirs()
                for e in self.refs(d)}
