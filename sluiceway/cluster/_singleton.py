"""A singleton's lease: one process of the cluster does a job (the compactor; later the
ruler) while it holds the KV lease `<name>` (the cluster's one lease mechanism,
`Leases`); every process that could do it tries to take the lease every `ttl_s / 3`,
and the holder renews it as often. When the holder dies its lease expires with the
bucket TTL and another takes it: a failover, counted.

`held()` is what the job checks before each pass. The holder can lose the lease only
by not renewing it for `ttl_s` (a stall, or NATS out of reach): `held()` is then False
from the moment a renewal fails until one succeeds, and the pass in progress is the
last one it starts (a compaction pass is safe to overlap with another's: its objects
are immutable and swapped in by name).
"""

from __future__ import annotations

import logging
import threading

from sluiceway.cluster._conn import ClusterError
from sluiceway.cluster._lease import Leases

log = logging.getLogger("sluiceway.cluster")


class SingletonLease:
    def __init__(self, leases: Leases, name: str) -> None:
        self.leases, self.name = leases, name
        self.failovers = 0  # times this process took the lease from a holder that left
        self.acquired = 0
        self._held = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_other = False

    def held(self) -> bool:
        return self._held.is_set()

    def holder(self) -> str | None:
        return self.leases.holder_of(self.name)

    def start(self) -> None:
        self.tick()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"lease-{self.name}")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.leases.ttl_s / 3):
            self.tick()

    def tick(self) -> None:
        """One try: renew the lease if held, else take it if free."""
        try:
            if self.held():
                if not self.leases.renew_one(self.name):
                    self._held.clear()
                    log.warning("cluster: %s lease lost to another process", self.name)
                return
            if self.leases.acquire(self.name):
                self._held.set()
                self.acquired += 1
                if self._seen_other:
                    self.failovers += 1
                log.info("cluster: this process is the %s now", self.name)
            else:
                self._seen_other = True
        except ClusterError as exc:
            if self.held():
                log.warning("cluster: %s lease not renewed now (%s): paused until it is",
                            self.name, exc)
            self._held.clear()

    def stop(self) -> None:
        """Stop trying, and give the lease up now (a clean stop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._held.is_set():
            self._held.clear()
            self.leases.release(self.name)
