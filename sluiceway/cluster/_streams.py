"""`max_global_streams_per_user` across the cluster, decided by the distributor before it
answers (Loki's "global" stream limit; a 429 with Loki's text, never a line dropped after
the 204).

Every ingester writes, every `refresh_s`, one KV entry per tenant it holds streams of:
`<member>.<tenant>` (base64url parts) in the bucket `<prefix>active-streams`, whose value
is the fingerprints of the tenant's active streams in its heads (8 bytes each) and when
it was written; the bucket's TTL (three beats) forgets a dead ingester's entries, and
entries older than that are ignored anyway. Every distributor reads the whole bucket on
the same beat: a tenant's active streams are the union of every entry (a stream counted
by two ingesters around a partition move counts once), of this process's own heads, and
of the new streams this distributor admitted within the last `4 * refresh_s` (not in
any entry yet). A stream in that set is known and always admitted; a new one only while
the set is smaller than the limit.

The approximation: a distributor learns other distributors' new streams up to about two
beats (plus consuming) late, so a burst of new streams spread over `D` distributors can
go over the limit by up to `(D - 1)` times the room left at the start of the burst; a
single distributor never overshoots (its own admissions count at once).
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from base64 import b64decode, b64encode
from typing import TYPE_CHECKING

from sluiceway.cluster._admin import ensure_kv, kv_snapshot, kv_token, kv_untoken
from sluiceway.cluster._conn import NatsConn

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

    from sluiceway.store import Store

log = logging.getLogger("sluiceway.cluster")


def pack_fps(fps: set[int]) -> str:
    return b64encode(struct.pack(f"<{len(fps)}Q", *sorted(fps))).decode()


def unpack_fps(text: str) -> set[int]:
    raw = b64decode(text)
    return set(struct.unpack(f"<{len(raw) // 8}Q", raw[:len(raw) // 8 * 8]))


class ActiveStreamsBoard:
    """This process's part (module docstring): `publish` its ingester's active streams
    (when `store` is an ingester's), `read` everyone's; `active_streams` answers the
    stream limiter as a store does, from what was last read (no NATS call on a push)."""

    def __init__(self, conn: NatsConn, bucket: str, me: str, replicas: int,
                 refresh_s: float, store: Store | None, ingests: bool) -> None:
        self.conn, self.me, self.refresh_s = conn, me, refresh_s
        self.store, self.ingests = store, ingests
        self.recent_s = 4 * refresh_s
        self._kv: KeyValue = conn.run(ensure_kv(conn.js, bucket, replicas, 3 * refresh_s),
                                      f"KV bucket {bucket}")
        self._lock = threading.Lock()
        self._view: dict[str, set[int]] = {}
        self._recent: dict[str, dict[int, float]] = {}
        self._published: set[str] = set()
        self.read_at = 0.0  # Unix seconds of the last read (0: none yet)

    # --- ingester side -------------------------------------------------------------
    async def _publish(self) -> None:
        if self.store is None or not self.ingests:
            return
        now = time.time()
        mine = self.store.active_fingerprints()
        for tenant, fps in mine.items():
            if not fps and tenant not in self._published:
                continue
            value = json.dumps({"at": now, "fps": pack_fps(fps)}).encode()
            try:
                await self._kv.put(f"{kv_token(self.me)}.{kv_token(tenant)}", value)
            except Exception as exc:  # noqa: BLE001 - too big for max_payload, say: the others go on
                log.warning("cluster: active streams of tenant %s (%d) not shared now: %s",
                            tenant, len(fps), exc)
                continue
            if fps:
                self._published.add(tenant)
            else:
                self._published.discard(tenant)

    # --- distributor side ----------------------------------------------------------
    def refresh(self) -> None:
        """Write this ingester's entries, then read every entry (blocking)."""
        self.conn.run(self._publish(), "active streams", timeout=4 * self.conn.cfg.timeout)
        entries = self.conn.run(kv_snapshot(self._kv), "active streams",
                                timeout=4 * self.conn.cfg.timeout)
        now = time.time()
        view: dict[str, set[int]] = {}
        for key, value in entries.items():
            try:
                _member, tenant_b = key.split(".")
                tenant = kv_untoken(tenant_b)
                doc = json.loads(value)
                if now - float(doc["at"]) > 3 * self.refresh_s:
                    continue  # its writer stopped writing: it left, or lost NATS
                view.setdefault(tenant, set()).update(unpack_fps(str(doc["fps"])))
            except (ValueError, KeyError, TypeError, struct.error) as exc:
                log.warning("cluster: active streams entry %s not read: %s", key, exc)
        mono = time.monotonic()
        with self._lock:
            self._view = view
            for tenant in list(self._recent):
                seen = view.get(tenant, set())
                rec = {fp: at for fp, at in self._recent[tenant].items()
                       if fp not in seen and mono - at < self.recent_s}
                if rec:
                    self._recent[tenant] = rec
                else:
                    del self._recent[tenant]
            self.read_at = now

    def active_streams(self, tenant: str, fps: list[int]) -> tuple[int, set[int]]:
        """The tenant's active streams cluster-wide as last read, and which of `fps` are
        among them (the stream limiter's question, answered as `Store` does)."""
        local: set[int] = set()
        if self.store is not None:
            local = self.store.active_fingerprints(tenant).get(tenant, set())
        with self._lock:
            known = local | self._view.get(tenant, set()) | self._recent.get(tenant, {}).keys()
        return len(known), {fp for fp in fps if fp in known}

    def admitted(self, tenant: str, fps: list[int]) -> None:
        """New streams this distributor let in (published): known here at once."""
        if not fps:
            return
        now = time.monotonic()
        with self._lock:
            rec = self._recent.setdefault(tenant, {})
            for fp in fps:
                rec[fp] = now

    def tenants(self) -> dict[str, int]:
        """Active streams per tenant, as last read (for /cluster/status)."""
        with self._lock:
            return {t: len(v | self._recent.get(t, {}).keys()) for t, v in self._view.items()}
