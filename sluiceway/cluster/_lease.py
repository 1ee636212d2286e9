"""Leases in a KV bucket: one mechanism for every "one owner at a time" in the cluster
(an ingester's partitions, the compactor and later singletons such as the ruler).

The bucket has a TTL (`ttl_s`): a key not written for that long expires, so a holder
that dies loses its leases by itself. Taking a lease is `create` (only when the key does
not exist, or expired, or was released); keeping it is `update` with the revision last
written (compare-and-set: if anyone else wrote the key meanwhile, the update fails and
the lease is lost). Every way a key stops being ours (another holder wrote it; it
expired through the TTL; it was deleted or purged) fails that compare-and-set with the
same "wrong last sequence" answer (checked against nats-server 2.9). One exception: when
the key's live value is still our own name, an earlier renewal landed but its answer was
lost (a timeout), and the lease is kept at that revision. A holder renews every
`ttl_s / 3`; `Leases.renew` says which keys it lost, and the owner stops acting on them
at once; a NATS failure loses nothing.

Works with nats-server 2.9 (bucket TTL, no per-message TTL).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sluiceway.cluster._admin import ensure_kv, kv_value
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
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        if key in self.held():
            return self.renew_one(key)
        for _ in range(3):
            try:
                rev = self.conn.run(self._kv.create(key, self.holder.encode()),
                                    f"lease {key}")
            except ClusterError as exc:
                if isinstance(exc.__cause__, KeyWrongLastSequenceError):
                    return False
                if isinstance(exc.__cause__, KeyNotFoundError):
                    # `create` found the key live, then read it back gone: it expired
                    # (or was purged) in between, so it is free now: try again.
                    continue
                raise
            with self._lock:
                self._held[key] = rev
            return True
        return False

    def renew_one(self, key: str) -> bool:
        """Keep `key`; False (and forgotten) when the key is not ours any more: another
        holder wrote it, or it expired, was deleted or purged (every one of these fails
        the compare-and-set with "wrong last sequence"). A NATS failure raises
        ClusterError and loses nothing."""
        from nats.js.errors import KeyWrongLastSequenceError

        with self._lock:
            rev = self._held.get(key)
        if rev is None:
            return False
        new: int | None
        try:
            new = self.conn.run(self._kv.update(key, self.holder.encode(), last=rev),
                                f"lease {key}")
        except ClusterError as exc:
            if not isinstance(exc.__cause__, KeyWrongLastSequenceError):
                raise
            new = self._own_write(key)
            if new is None:
                with self._lock:
                    self._held.pop(key, None)
                log.warning("cluster: lease %s/%s lost (%s)", self.bucket, key,
                            exc.__cause__)
                return False
        with self._lock:
            if key in self._held:
                self._held[key] = new
        return True

    def _own_write(self, key: str) -> int | None:
        """The revision of `key` when its live value is still this holder's: an earlier
        renewal reached NATS but its answer did not (a timeout), so the revision we
        remember is one behind. None when the key is anyone else's, or gone."""
        from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

        try:
            entry = self.conn.run(self._kv.get(key), f"lease {key}")
        except ClusterError as exc:
            if isinstance(exc.__cause__, (KeyNotFoundError, KeyDeletedError)):
                return None
            raise
        if entry.value != self.holder.encode() or entry.revision is None:
            return None
        # Ours: compare-and-set on it, so a write by anyone since wins over us.
        try:
            return self.conn.run(self._kv.update(key, self.holder.encode(),
                                                 last=entry.revision), f"lease {key}")
        except ClusterError as exc:
            if isinstance(exc.__cause__, KeyWrongLastSequenceError):
                return None
            raise

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
        value = kv_value(self.conn, self._kv, key, f"lease {key}")
        return value.decode() if value else None

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
