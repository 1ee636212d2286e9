"""`ClusterNode`: one Sluiceway process of a cluster — what its role runs, wired to the
local store once NATS is reachable.

`start` (on a thread of its own) waits for the connection (retried and logged by
`NatsConn`), makes the ingest streams, opens the object store (by default the JetStream
object store bucket `<prefix>chunks`, replicated like the streams) and the local store
(`make_store`), and starts the role's parts: the member registry (every role), the
publisher (distributor), the ingester and its heads server (ingester), the compactor
singleton (compactor), and the rule groups' shard (every role; only `ruler` and `all`
take groups). `ready` is set once all run; the server answers `/ready` 503
and its API 503 until then. One lease keeper thread renews every lease this process
holds (a second renewer would race its own compare-and-set)."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sluiceway.cluster._config import ClusterConfig
from sluiceway.cluster._conn import ClusterError, NatsConn
from sluiceway.cluster._heads import HeadsClient, HeadsServer
from sluiceway.cluster._ingester import COMPACTOR, Ingester
from sluiceway.cluster._lease import Leases
from sluiceway.cluster._members import Member, MemberRegistry
from sluiceway.cluster._publish import Publisher
from sluiceway.cluster._rulers import RuleGroupShard
from sluiceway.cluster._source import ClusterSource
from sluiceway.logql import LogSource
from sluiceway.model import PushRecord
from sluiceway.store import JetStreamBucket, ObjectStore, Store

log = logging.getLogger("sluiceway.cluster")

OpenObjects = Callable[[], ObjectStore | None]


def default_objects(cfg: ClusterConfig) -> ObjectStore:
    """The JetStream object store bucket `<prefix>chunks` on the cluster's NATS, with the
    streams' replicas (fewer when the NATS cluster is smaller, logged)."""
    replicas = cfg.replicas
    while True:
        try:
            return JetStreamBucket(
                list(cfg.urls), "chunks", name_prefix=cfg.name_prefix, replicas=replicas,
                timeout_s=cfg.timeout, user=cfg.user or None,
                password=cfg.password or None, token=cfg.token or None,
                creds_file=cfg.creds_file or None, nkey_seed_file=cfg.nkey_seed_file or None,
                tls_ca_file=cfg.tls_ca_file or None, tls_cert_file=cfg.tls_cert_file or None,
                tls_key_file=cfg.tls_key_file or None)
        except OSError as exc:
            text = str(exc).lower()
            if replicas > 1 and ("replicas" in text or "insufficient resources" in text):
                replicas -= 1
                log.warning("cluster: object store bucket gets %d replicas: the NATS "
                            "cluster has fewer servers than %d", replicas, cfg.replicas)
                continue
            raise


class ClusterNode:
    def __init__(self, cfg: ClusterConfig, address: str, version: str,
                 make_store: Callable[[ObjectStore], Store],
                 open_objects: OpenObjects | None = None,
                 compaction_interval_s: float = 600.0) -> None:
        self.cfg = cfg
        self.id = f"{socket.gethostname()}-{address.rsplit(':', 1)[-1]}-{uuid.uuid4().hex[:6]}"
        self.member = Member(self.id, cfg.role, address, version, time.time())
        self._make_store = make_store
        self._open_objects = open_objects
        self._compaction_interval_s = compaction_interval_s
        self.conn = NatsConn(cfg, name=f"sluiceway {self.id}")
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self._closing = threading.Event()
        self.store: Store | None = None
        self.objects: ObjectStore | None = None
        self.publisher = Publisher(self.conn, cfg)
        self.members: MemberRegistry | None = None
        self.leases: Leases | None = None
        self.ingester: Ingester | None = None
        self.heads: HeadsServer | None = None
        self.heads_client: HeadsClient | None = None
        self.rule_shard: RuleGroupShard | None = None
        self._threads: list[threading.Thread] = []

    # --- start -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect and start the role (blocks until ready or closed; run on a thread)."""
        while not self.conn.wait_connected(1.0):
            if self._closing.is_set():
                return
        while not self._closing.is_set():
            try:
                self._start_parts()
                return
            except Exception as exc:  # noqa: BLE001 - retried: NATS may still be electing
                log.warning("cluster: starting failed (%s: %s); retrying in 2s",
                            type(exc).__name__, exc)
                self._closing.wait(2.0)

    def _start_parts(self) -> None:
        cfg, conn = self.cfg, self.conn
        if self.store is None:
            if cfg.has("distributor"):
                self.publisher.ensure_streams()
            if self.objects is None:
                opened = self._open_objects() if self._open_objects else None
                self.objects = opened if opened is not None else default_objects(cfg)
            self.store = self._make_store(self.objects)
        store = self.store
        interval = max(0.5, cfg.lease_ttl / 3)
        if self.members is None:
            self.members = MemberRegistry(conn, cfg.bucket("members"), self.member, interval,
                                          cfg.replicas)
            self.members.start()
        if self.leases is None:
            self.leases = Leases(conn, cfg.bucket("leases"), self.id, cfg.lease_ttl,
                                 cfg.replicas)
        if self.rule_shard is None:
            # Every member reads the rules; those with the ruler role evaluate groups.
            self.rule_shard = RuleGroupShard(self.leases, self.members, self.id,
                                             cfg.has("ruler"), max(0.5, cfg.lease_ttl / 2))
        if cfg.has("ingester") and self.ingester is None:
            self.heads = HeadsServer(conn, cfg, store, self.id)
            self.heads.start()
            self.ingester = Ingester(conn, cfg, store, self.leases, self.members, self.id)
            self.ingester.start()
        self.heads_client = HeadsClient(conn, cfg, store, self.members, self.id, self.heads)
        self._spawn("cluster-leases", self._lease_loop)
        if cfg.has("compactor"):
            self._spawn("cluster-compactor", self._compact_loop)
        self.ready.set()
        log.info("cluster: member %s ready (role %s, %d partitions over %d streams)",
                 self.id, cfg.role, cfg.partitions, cfg.streams)

    def _spawn(self, name: str, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # --- leases ------------------------------------------------------------------------
    def _lease_loop(self) -> None:
        tick = max(0.5, self.cfg.lease_ttl / 4)
        while not self._closing.is_set():
            self.keep_leases()
            self._closing.wait(tick)

    def keep_leases(self) -> None:
        """One tick of the lease keeper: renew every lease held, hand the lost keys to the
        ingester first (it stops those partitions at once), then try for the compactor.
        Each step runs even when an earlier one failed (a NATS timeout): the failure is
        logged and tried again at the next tick. (The rule groups' leases are renewed
        here; they are claimed and given back by the ruler's own poll.)"""
        leases = self.leases
        assert leases is not None
        lost: set[str] = set()
        try:
            lost = leases.renew()
        except Exception:  # noqa: BLE001 - the keeper must go on
            log.exception("cluster: renewing leases failed; tried again")
        if COMPACTOR in lost:
            log.warning("cluster: compactor lease lost")
        ingester = self.ingester
        if ingester is not None:
            try:
                ingester.balance(lost)
            except Exception:  # noqa: BLE001 - the keeper must go on
                log.exception("cluster: balancing partitions failed; tried again")
        if self.cfg.has("compactor") and COMPACTOR not in leases.held():
            try:
                if leases.acquire(COMPACTOR):
                    log.info("cluster: this member is the compactor now")
            except Exception:  # noqa: BLE001 - the keeper must go on
                log.exception("cluster: taking the compactor lease failed; tried again")

    def _compact_loop(self) -> None:
        while not self._closing.wait(self._compaction_interval_s):
            if self.leases is None or self.store is None or COMPACTOR not in self.leases.held():
                continue
            try:
                self.store.compact()
            except Exception:  # noqa: BLE001 - one bad pass must not end compaction
                log.exception("cluster: compaction pass failed")

    # --- the server's calls ------------------------------------------------------------
    async def publish(self, record: PushRecord) -> int:
        if not self.ready.is_set():
            raise ClusterError("cluster mode is not connected yet")
        return await self.publisher.publish(record)

    def source(self, local: LogSource) -> ClusterSource:
        """The read source of this process: `local` (the store's) and the other
        ingesters' heads."""
        client = self.heads_client
        if client is None:
            raise ClusterError("cluster mode is not connected yet")
        return ClusterSource(local, client.fetch)

    # --- stop --------------------------------------------------------------------------
    def stopping(self) -> None:
        """Stop waiting for NATS or retrying the start (`start` returns soon)."""
        self._closing.set()

    def close_roles(self) -> None:
        """Stop the role's parts (a clean stop: heads written, sequences recorded, leases
        given back at once); the store is closed by the server after this."""
        self._closing.set()
        for t in self._threads:
            t.join(10)
        if self.ingester is not None:
            self.ingester.close(flush=True)
        if self.heads is not None:
            self.heads.stop()
        if self.leases is not None:
            self.leases.release_all()
        if self.members is not None:
            self.members.stop()

    def close(self) -> None:
        """After the store: the object store's and the NATS connections."""
        self._closing.set()
        if self.objects is not None:
            self.objects.close()
        self.conn.close()
