"""Delete requests (Loki's delete API): kept per tenant in the object store, left out of
every read while they stand, and removed from chunks by the compactor.

Each request is one small JSON object, `deletes/<tenant dir>/<id>.json`, put whole
(atomic and durable through the `ObjectStore`): its query (a LogQL log selector with
optional stages), its time range (Loki's: milliseconds, both ends inclusive), when it
was made and its status (`received`, then `processed` once the compactor removed its
lines). A cancel deletes the object. A request is an object of its own, not an index
record, because its status changes: an index object is never changed.

The store knows no LogQL: the owner (the server) sets `compile`, which turns a request
into a `LineDeleter` (which streams it selects, which lines of a block it matches), and
`mode_for` (Loki's per-tenant `deletion_mode`). Reads (`Store.blocks`) drop what a
request of a tenant whose mode is not `disabled` matches; the compactor removes it for
good for tenants in `filter-and-delete`, once the cancel period is over.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt
import orjson

from sluiceway.model import EntryBlock
from sluiceway.store._objstore import NotFound, ObjectStore

log = logging.getLogger("sluiceway.deletes")

PREFIX = "deletes/"
RECEIVED, PROCESSED = "received", "processed"
DISABLED, FILTER_ONLY, FILTER_AND_DELETE = "disabled", "filter-only", "filter-and-delete"
_MS = 1_000_000


class LineDeleter(Protocol):
    """What a request deletes, as the owner compiled it."""

    @property
    def every_line(self) -> bool:
        """No filter: every line of a selected stream in the range."""
        ...

    def selects(self, labels: dict[str, str]) -> bool:
        """The request's stream selector matches these stream labels."""
        ...

    def lines(self, block: EntryBlock) -> npt.NDArray[np.bool_]:
        """Which lines of `block` (one stream) its filters match, time aside."""
        ...


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """One request; times as Loki keeps them (Unix ms, `end_ms` inclusive)."""

    id: str
    query: str
    start_ms: int
    end_ms: int
    created: float  # Unix seconds, ms precision
    status: str = RECEIVED

    @property
    def lo(self) -> int:
        """The first ns a line may have to be deleted."""
        return self.start_ms * _MS

    @property
    def hi(self) -> int:
        """The last ns (inclusive), as Loki compares (ms → ns)."""
        return self.end_ms * _MS

    def record(self) -> bytes:
        return orjson.dumps({"v": 1, "request_id": self.id, "query": self.query,
                             "start_ms": self.start_ms, "end_ms": self.end_ms,
                             "created": self.created, "status": self.status})

    @staticmethod
    def of(data: bytes) -> DeleteRequest:
        """From `record`'s bytes; ValueError, KeyError or TypeError when it is not one."""
        r = orjson.loads(data)
        if not isinstance(r, dict) or r.get("v") != 1:
            raise ValueError("not a version-1 delete request")
        status = str(r["status"])
        if status not in (RECEIVED, PROCESSED):
            raise ValueError(f"status {status!r}")
        return DeleteRequest(str(r["request_id"]), str(r["query"]), int(r["start_ms"]),
                             int(r["end_ms"]), float(r["created"]), status)


Applying = tuple[int, int, LineDeleter]  # lo, hi (ns, inclusive), what it deletes


def deleted_mask(block: EntryBlock, applying: Sequence[Applying]) -> npt.NDArray[np.bool_]:
    """Lines of `block` that one of `applying` deletes."""
    out = np.zeros(len(block), dtype=np.bool_)
    for lo, hi, d in applying:
        if not len(block) or int(block.ts[-1]) < lo or int(block.ts[0]) > hi:
            continue
        in_range = (block.ts >= lo) & (block.ts <= hi)
        if not in_range.any():
            continue
        out |= in_range if d.every_line else in_range & d.lines(block)
    return out


def without_deleted(block: EntryBlock, applying: Sequence[Applying]) -> EntryBlock:
    """`block` without the lines `applying` deletes (the block itself when none)."""
    mask = deleted_mask(block, applying)
    return block.take(~mask) if mask.any() else block


class DeleteRequests:
    """Every tenant's delete requests: read at start (`load`), changed through the API's
    calls, each change put durably before it is answered."""

    def __init__(self, objects: ObjectStore, dirname: Callable[[str], str],
                 tenant_of: Callable[[str], str | None]) -> None:
        self.objects = objects
        self.dirname = dirname
        self.tenant_of = tenant_of
        self._lock = threading.Lock()
        # Held by writes and by `sync`, so a listing made before a write never undoes it.
        self._write_lock = threading.Lock()
        self._by_tenant: dict[str, dict[str, DeleteRequest]] = {}
        self._compiled: dict[tuple[str, str], LineDeleter | None] = {}
        self.version = 0  # bumped by every request made or cancelled (the generation)
        self.compile: Callable[[str, DeleteRequest], LineDeleter] | None = None
        self.mode_for: Callable[[str], str] = lambda _t: FILTER_AND_DELETE

    def key(self, tenant: str, request_id: str) -> str:
        return f"{PREFIX}{self.dirname(tenant)}/{request_id}.json"

    def load(self) -> int:
        """Read every request (at start); OSError when they cannot be listed. Returns how
        many there are."""
        self.sync()
        with self._lock:
            return sum(len(r) for r in self._by_tenant.values())

    def sync(self) -> bool:
        """Fold in what other processes sharing the object store did (requests made,
        processed or cancelled there): a listing, and a read of each object that is new
        or changed size (the status is part of it). True when something changed (the
        version moves: cached results are stale). OSError when they cannot be listed."""
        with self._write_lock:
            return self._sync()

    def _sync(self) -> bool:
        listed: dict[tuple[str, str], int] = {}
        for info in self.objects.list(PREFIX):
            parts = info.key[len(PREFIX):].split("/")
            tenant = self.tenant_of(parts[0]) if len(parts) == 2 else None
            if tenant is not None and parts[1].endswith(".json"):
                listed[(tenant, parts[1].removesuffix(".json"))] = info.size
        changed = False
        for (tenant, rid), size in listed.items():
            known = self.get(tenant, rid)
            if known is not None and len(known.record()) == size:
                continue
            try:
                req = DeleteRequest.of(self.objects.get(self.key(tenant, rid)))
            except NotFound:
                continue
            except (ValueError, KeyError, TypeError) as exc:
                log.error("delete request %s of tenant %s cannot be read (%s): it is not "
                          "applied", rid, tenant, exc)
                continue
            with self._lock:
                self._by_tenant.setdefault(tenant, {})[req.id] = req
            changed = True
        with self._lock:
            for tenant, reqs in self._by_tenant.items():
                for rid in [r for r in reqs if (tenant, r) not in listed]:
                    del reqs[rid]  # cancelled by another process
                    self._compiled.pop((tenant, rid), None)
                    changed = True
            if changed:
                self.version += 1
        return changed

    def add(self, tenant: str, query: str, start_ms: int, end_ms: int,
            now: float) -> DeleteRequest:
        """A new request, durable when this returns (OSError when it cannot be put)."""
        with self._lock:
            taken = self._by_tenant.get(tenant, {})
            rid = secrets.token_hex(4)
            while rid in taken:
                rid = secrets.token_hex(4)
        req = DeleteRequest(rid, query, start_ms, end_ms, round(now, 3))
        with self._write_lock:
            self.objects.put(self.key(tenant, rid), req.record())
            with self._lock:
                self._by_tenant.setdefault(tenant, {})[rid] = req
                self.version += 1
        log.info("delete request %s of tenant %s: %s from %d to %d (ms)", rid, tenant, query,
                 start_ms, end_ms)
        return req

    def requests(self, tenant: str) -> list[DeleteRequest]:
        """The tenant's requests, oldest first."""
        with self._lock:
            reqs = list(self._by_tenant.get(tenant, {}).values())
        return sorted(reqs, key=lambda r: (r.created, r.id))

    def get(self, tenant: str, request_id: str) -> DeleteRequest | None:
        with self._lock:
            return self._by_tenant.get(tenant, {}).get(request_id)

    def cancel(self, tenant: str, request_id: str) -> None:
        """Forget a request (its object deleted durably first)."""
        with self._write_lock:
            self.objects.delete(self.key(tenant, request_id))
            with self._lock:
                self._by_tenant.get(tenant, {}).pop(request_id, None)
                self._compiled.pop((tenant, request_id), None)
                self.version += 1
        log.info("delete request %s of tenant %s cancelled", request_id, tenant)

    def processed(self, tenant: str, req: DeleteRequest) -> None:
        """The compactor removed the request's lines: its status says so."""
        done = replace(req, status=PROCESSED)
        with self._write_lock:
            if self.get(tenant, req.id) is None:
                return  # cancelled meanwhile: not put back
            self.objects.put(self.key(tenant, req.id), done.record())
            with self._lock:
                self._by_tenant.setdefault(tenant, {})[req.id] = done

    def _deleter(self, tenant: str, req: DeleteRequest) -> LineDeleter | None:
        key = (tenant, req.id)
        with self._lock:
            if key in self._compiled:
                return self._compiled[key]
        compile_ = self.compile
        d: LineDeleter | None = None
        if compile_ is not None:
            try:
                d = compile_(tenant, req)
            except Exception as exc:  # noqa: BLE001 - one bad request must not stop reads
                log.error("delete request %s of tenant %s (%s) cannot be applied: %s",
                          req.id, tenant, req.query, exc)
        else:
            return None  # not compiled yet: nothing to apply it with
        with self._lock:
            self._compiled[key] = d
        return d

    def for_read(self, tenant: str, labels: dict[str, str], start: int,
                 end: int, processed_only: bool = False) -> list[Applying]:
        """What reads of this stream in [start, end) leave out (none in `disabled` mode);
        `processed_only`: only the requests whose lines are removed for good."""
        if not self._by_tenant.get(tenant) or self.mode_for(tenant) == DISABLED:
            return []
        out: list[Applying] = []
        for req in self.requests(tenant):
            if req.hi < start or req.lo >= end:
                continue
            if processed_only and req.status != PROCESSED:
                continue
            d = self._deleter(tenant, req)
            if d is not None and d.selects(labels):
                out.append((req.lo, req.hi, d))
        return out

    def due(self, now: float, cancel_period: float
            ) -> list[tuple[str, DeleteRequest, LineDeleter]]:
        """Requests the compactor removes now: received, past the cancel period, of a
        tenant in `filter-and-delete` mode."""
        out = []
        with self._lock:
            tenants = list(self._by_tenant)
        for tenant in tenants:
            if self.mode_for(tenant) != FILTER_AND_DELETE:
                continue
            for req in self.requests(tenant):
                if req.status == RECEIVED and req.created + cancel_period <= now:
                    d = self._deleter(tenant, req)
                    if d is not None:
                        out.append((tenant, req, d))
        return out
