"""Lanes: one queue, batcher and set of delivery loops per backend (client) and tenant.

Every line goes to each client (Promtail's `clients`), and within a client to the lane of
its tenant: the client's own `tenant`, or the one a `tenant` stage set (the label
`__tenant_id__`, taken off before the push). A lane is what a single-backend agent is:
an `AgentQueue` (its own buffer and spill), a `Batcher` with the client's batch
settings, and `sluiceway.ship.DeliveryLoop`s with the client's URL, tenant, auth, TLS,
timeout, backoff and retry limit, built from the agent's config with the client's keys
(`lane_config`), so neither the queue nor the loops know lanes exist. There is one
delivery path: the lanes only make more of it.

File positions move once per range, when every lane that got lines of that range has
them durable: `FanIn` counts the lanes a range went to and hands the range to the
positions tracker when the last one is done.

One client, no `tenant` stage and no `external_labels` (the common case): `emit` hands
the pieces straight to the one lane's batcher, so the raw-bytes path pays nothing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from sluiceway.agent._config import AgentConfig, ClientConfig, MatchStage, TenantStage
from sluiceway.agent._ledger import AgentLedger, lane_source
from sluiceway.agent._positions import Checkpoint, Positions
from sluiceway.agent._queue import AgentQueue, Batcher, batch_lines, renamed
from sluiceway.agent._records import Piece
from sluiceway.agent._ship import shippers
from sluiceway.durable import atomic_write, ensure_dir
from sluiceway.model import LedgerGroup
from sluiceway.ship import DeliveryLoop, DeliveryStats, Push

log = logging.getLogger("sluiceway.agent")
TENANT_LABEL = "__tenant_id__"


class FanIn:
    """Positions for lanes: a range is done once every lane it went to says so."""

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self._lock = threading.Lock()
        self._left: dict[tuple[str, int, int], int] = defaultdict(int)

    def expect(self, checkpoints: list[Checkpoint], lanes: int) -> None:
        if lanes <= 1:
            return
        with self._lock:
            for key, gen, start, *_rest in checkpoints:
                self._left[(key, gen, start)] += lanes - 1

    def done(self, checkpoints: list[Checkpoint] | list[list[object]]) -> None:
        finished = []
        with self._lock:
            for ck in checkpoints:
                k = (str(ck[0]), int(str(ck[1])), int(str(ck[2])))
                left = self._left.get(k, 0)
                if left:
                    self._left[k] = left - 1
                    if left == 1:
                        del self._left[k]
                    continue
                finished.append(ck)
        if finished:
            self.positions.done(finished)  # type: ignore[arg-type]

    def save(self, force: bool = False) -> None:
        self.positions.save(force)


def lane_config(cfg: AgentConfig, client: ClientConfig, tenant: str | None,
                data_dir: Path) -> AgentConfig:
    """The agent's config as a single-backend agent sending to `client` for `tenant`."""
    return cfg.model_copy(update={
        "url": client.url, "clients": [], "tenant": tenant, "format": client.format,
        "timeout": client.timeout, "workers": client.workers, "auth": client.auth,
        "tls": client.tls, "headers": client.headers, "retry": client.retry,
        "batch": client.batch, "external_labels": client.external_labels,
        "data_dir": data_dir})


def lane_tag(index: int, tenant: str | None) -> str:
    """A lane's name in the ledger (its sources are `<input source>@<tag>`)."""
    tag = f"c{index + 1}"
    if tenant:
        tag += "-" + "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in tenant)
    return tag


class Lane:
    """One client (and tenant): its queue, batcher and delivery loops."""

    def __init__(self, cfg: AgentConfig, index: int, first: bool, positions: FanIn,
                 stop_now: threading.Event, ledger: AgentLedger | None = None) -> None:
        self.cfg, self.client_index, self.first = cfg, index, first
        tenant = f" tenant {cfg.tenant}" if cfg.tenant else ""
        # The first lane speaks as the agent always has; others say which client they are.
        self.who = "agent" if first else f"agent client {index + 1}{tenant}"
        name = "agent" if first else f"agent-{index + 1}-{cfg.tenant or ''}"
        # The ledger: the first lane ships the inputs' numbers as they are; every other
        # lane ships its own copy (`<source>@<tag>`) and counts its own losses of it.
        self.tag = None if first else lane_tag(index, cfg.tenant)
        self.ledger = ledger
        self.queue = AgentQueue(cfg.queue, cfg.data_dir, positions, name=name,
                                ledger=ledger.lane(self.tag) if ledger is not None else None)
        self.batcher = Batcher(cfg.batch, cfg.format, self.queue, positions,
                               batch_lines(cfg.queue, cfg.batch))
        self.loops: list[DeliveryLoop[Push]] = shippers(cfg, self.queue, stop_now, self.who)
        self.delivery: DeliveryStats = self.loops[0].stats  # shared by its loops
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for n, loop in enumerate(self.loops):
            t = threading.Thread(target=loop.run, daemon=True,
                                 name=f"agent-shipper-{self.queue.buffer.name}-{n}")
            t.start()
            self.threads.append(t)

    def summary(self) -> dict[str, Any]:
        q, d = self.queue.snapshot(), self.delivery.snapshot()
        lost = renamed(q["dropped_by_reason"])
        for r, n in d["lost_by_reason"].items():
            lost[r] = lost.get(r, 0) + n
        return {"url": self.cfg.url, "tenant": self.cfg.tenant, "client": self.client_index,
                "shipped": d["shipped"], "enqueued": q["enqueued"],
                "bytes_shipped": d["bytes_shipped"], "spilled": q["spilled"],
                "lost_by_reason": lost, "backend": d["state"], "last_error": d["last_error"],
                "queue_depth": q["depth"]}


def lane_dir(data_dir: Path, url: str, tenant: str | None, first: bool) -> Path:
    """The first client's own lane keeps the agent's data dir (its spill stays where it
    always was); every other lane has a directory named after its URL and tenant."""
    if first:
        return data_dir
    digest = hashlib.blake2b(f"{url}\n{tenant or ''}".encode(), digest_size=6).hexdigest()
    return data_dir / "lanes" / digest


def _sets_tenant(stages: list[Any]) -> bool:
    return any(isinstance(s, TenantStage)
               or (isinstance(s, MatchStage) and _sets_tenant(list(s.stages))) for s in stages)


class Lanes:
    """Every lane, made at start for each client and later for each tenant a `tenant`
    stage names; `emit` is what inputs hand their pieces to."""

    def __init__(self, cfg: AgentConfig, positions: Positions,
                 stop_now: threading.Event, ledger: AgentLedger | None = None,
                 on_disk: bool = True) -> None:
        self.cfg, self.stop_now = cfg, stop_now
        # False (`--dry-run`): nothing is sent, so lanes keep nothing on disk: no lane
        # directory, their queues never spill, and no earlier run's lane is reopened.
        self.on_disk = on_disk
        self.ledger = ledger
        self.clients = cfg.client_configs()
        self.fan = FanIn(positions)
        self._lock = threading.Lock()
        self._lanes: dict[tuple[int, str | None], Lane] = {}
        self._started = False
        for i, c in enumerate(self.clients):
            self._make(i, c.tenant)
        if on_disk:
            self._reopen_tenant_lanes()
        tenants = any(_sets_tenant(list(i.pipeline)) for i in cfg.inputs)
        # More than one lane can exist: figures on /metrics carry `client` and `tenant`.
        self.labelled = len(self.clients) > 1 or tenants or len(self._lanes) > 1
        # One client, no labels to add: pieces go straight to its batcher.
        self._direct = len(self.clients) == 1 and not self.clients[0].external_labels

    @property
    def first(self) -> Lane:
        return self._lanes[(0, self.clients[0].tenant)]

    def all(self) -> list[Lane]:
        with self._lock:
            return list(self._lanes.values())

    def _make(self, index: int, tenant: str | None) -> Lane:
        c = self.clients[index]
        first = index == 0 and tenant == c.tenant
        where = lane_dir(self.cfg.data_dir, c.url, tenant, first)
        cfg = lane_config(self.cfg, c, tenant, where)
        if self.on_disk:
            ensure_dir(where)
            if not first:
                atomic_write(where / "lane.json",
                             orjson.dumps({"url": c.url, "tenant": tenant}))
        elif cfg.queue.when_full == "spill":
            cfg = cfg.model_copy(update={
                "queue": cfg.queue.model_copy(update={"when_full": "block"})})
        lane = Lane(cfg, index, first, self.fan, self.stop_now, self.ledger)
        self._lanes[(index, tenant)] = lane
        if self._started:
            lane.start()
        return lane

    def _reopen_tenant_lanes(self) -> None:
        """Lanes a `tenant` stage made in an earlier run may hold spilled lines: open them
        again so they are sent."""
        root = self.cfg.data_dir / "lanes"
        if not root.is_dir():
            return
        for meta in sorted(root.glob("*/lane.json")):
            try:
                doc = orjson.loads(meta.read_bytes())
                url, tenant = str(doc["url"]), doc.get("tenant")
            except (OSError, ValueError, KeyError, TypeError):
                continue
            for i, c in enumerate(self.clients):
                if c.url == url and (i, tenant) not in self._lanes:
                    self._make(i, tenant)
                    break

    def start(self) -> None:
        with self._lock:
            self._started = True
            for lane in self._lanes.values():
                lane.start()

    def _lane(self, index: int, tenant: str | None) -> Lane:
        with self._lock:
            lane = self._lanes.get((index, tenant))
            if lane is None:
                log.info("client %s: a lane of its own for tenant %r", self.clients[index].url,
                         tenant)
                lane = self._make(index, tenant)
            return lane

    def emit(self, pieces: list[Piece], lines: int, nbytes: int,
             checkpoints: list[Checkpoint], can_wait: bool = False,
             numbers: list[LedgerGroup] | None = None) -> None:
        """Hand pieces to every client's lanes (blocks when a lane's queue blocks).
        `numbers` (the ledger's) go with the pieces to every lane whole: a lane that
        gets only some of the pieces (a tenant stage) ships them unnumbered."""
        if self._direct and not any(TENANT_LABEL in p.labels for p in pieces):
            self.first.batcher.add(pieces, lines, nbytes, checkpoints, can_wait, numbers)
            return
        deliveries: list[tuple[Lane, list[Piece]]] = []
        for i, c in enumerate(self.clients):
            by_tenant: dict[str | None, list[Piece]] = {}
            for p in pieces:
                labels = p.labels
                tenant = c.tenant
                if TENANT_LABEL in labels:
                    labels = dict(labels)
                    tenant = labels.pop(TENANT_LABEL) or c.tenant
                if c.external_labels:
                    labels = {**c.external_labels, **labels}
                if labels is not p.labels:
                    p = Piece(labels, p.ts, p.lines, p.metadata)
                by_tenant.setdefault(tenant, []).append(p)
            if not by_tenant:
                by_tenant[c.tenant] = []  # the checkpoints still go through this client
            deliveries += [(self._lane(i, t), part) for t, part in by_tenant.items()]
        self.fan.expect(checkpoints, len(deliveries))
        for lane, part in deliveries:
            n = sum(map(len, part))
            size = sum(len(line) for p in part for line in p.lines) if n != lines else nbytes
            whole = n == lines
            lane.batcher.add(part, n, size, checkpoints, can_wait,
                             self._numbers(lane, numbers) if whole else None)

    def _numbers(self, lane: Lane, numbers: list[LedgerGroup] | None
                 ) -> list[LedgerGroup] | None:
        """The numbers a lane ships: the first lane's as they are; another lane's, the
        agent's own as that lane's copy (a client's numbers travel on the first lane
        only: on the others those lines go unnumbered)."""
        if not numbers or lane.tag is None or self.ledger is None:
            return numbers
        own = [LedgerGroup(lane_source(g.source, lane.tag), g.epoch, g.runs)
               for g in numbers if self.ledger.is_own(g.source)]
        return own or None

    def tick(self, force: bool = False) -> None:
        for lane in self.all():
            lane.batcher.tick(force)
