"""Leases in a KV bucket: one mechanism for every "one owner at a time" in the cluster
(an ingester's partitions, the compactor and later singletons such as the ruler).

The bucket has a TTL (`ttl_s`): a key not written for that long expires, so a holder
that dies loses its leases by itself. Taking a lease is `create` (only when the key does
not exist, or expired, or was released); keeping it is `update` with the revision last
written (compare-and-set: if anyone else wrote the key meanwhile, the update fails and
the lease is lost). A holder renews every `ttl_s / 3`; `Leases.renew` says which keys it
lost, and the owner stops acting on them at once.

Works with nats-server 2.9 (bucket TTL, no per-message TTL).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sluiceway.cluster._admin import ensure_kv
from sluiceway.cluster._conn import ClusterError, NatsConn

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = logging.getLogger("sluiceway.cluster")


class Leases:
    """The leases `holder` takes in bucket `bucket` (made with `ttl_s` when missing).
    Thread-safe; every call is one or a few NATS requests."""

    def __init__(self, conn: NatsConn, bucket: str, holder: str, ttl_s: float,
                 replicas: int) -> None:
        self.conn = conn
        self.bucket = bucket
        self.holder = holder
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # key -> revision we wrote last
        self._kv: KeyValue = conn.run(ensure_kv(conn.js, bucket, replicas, ttl_s),
                                      f"KV bucket {bucket}")

    @property
    def kv(self) -> KeyValue:
        return self._kv

    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def acquire(self, key: str) -> bool:
        """Take `key` if nobody holds it (or its holder let it expire). True if ours now
        (also when it already was)."""
        from nats.js.errors import KeyWrongLastSequenceError

        if key in self.held():
            return self.renew_one(key)
        try:
            rev = self.conn.run(self._kv.create(key, self.holder.encode()), f"lease {key}")
        except ClusterError as exc:
            if isinstance(exc.__cause__, KeyWrongLastSequenceError):
                return False
            raise
        with self._lock:
            self._held[key] = rev
        return True

    def renew_one(self, key: str) -> bool:
        """Keep `key`; False (and forgotten) when someone else wrote it meanwhile."""
        from nats.js.errors import KeyWrongLastSequenceError

        with self._lock:
            rev = self._held.get(key)
        if rev is None:
            return False
        try:
            new = self.conn.run(self._kv.update(key, self.holder.encode(), last=rev),
                                f"lease {key}")
        except ClusterError as exc:
            if isinstance(exc.__cause__, KeyWrongLastSequenceError):
                with self._lock:
                    self._held.pop(key, None)
                log.warning("cluster: lease %s/%s lost to another holder", self.bucket, key)
                return False
            raise
        with self._lock:
            if key in self._held:
                self._held[key] = new
        return True

    def renew(self) -> set[str]:
        """Renew every lease held; returns the keys lost. A NATS failure loses nothing
        here (the lease may still be ours); the caller stops acting on a key when it
        could not renew it for `ttl_s`."""
        lost: set[str] = set()
        for key in sorted(self.held()):
            try:
                if not self.renew_one(key):
                    lost.add(key)
            except ClusterError as exc:
                log.warning("cluster: lease %s/%s not renewed now: %s", self.bucket, key, exc)
        return lost

    def holder_of(self, key: str) -> str | None:
        """Who holds `key` now (None: nobody)."""
        from nats.js.errors import KeyNotFoundError

        try:
            entry = self.conn.run(self._kv.get(key), f"lease {key}")
        except ClusterError as exc:
            if isinstance(exc.__cause__, KeyNotFoundError):
                return None
            raise
        return entry.value.decode() if entry.value else None

    def release(self, key: str) -> None:
        """Give `key` up now (a clean stop), so another holder need not wait for the TTL."""
        with self._lock:
            rev = self._held.pop(key, None)
        if rev is None:
            return
        try:
            self.conn.run(self._kv.delete(key, last=rev), f"release {key}")
        except ClusterError as exc:
            log.info("cluster: lease %s/%s not released (%s); it expires in %gs", self.bucket,
                     key, exc, self.ttl_s)

    def release_all(self) -> None:
        for key in sorted(self.held()):
            self.release(key)
