"""Lanes: one queue, batcher and set of shippers per backend (client) and tenant.

Every line goes to each client (Promtail's `clients`), and within a client to the lane of
its tenant: the client's own `tenant`, or the one a `tenant` stage set (the label
`__tenant_id__`, taken off before the push). A lane is what a single-backend agent was:
its config is the agent's with the client's keys, so the queue and the shippers need not
know lanes exist.

File positions move once per range, when every lane that got lines of that range has
them durable: `FanIn` counts the lanes a range went to and hands the range to the
positions tracker when the last one is done.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from sluiceway.agent._config import AgentConfig, ClientConfig
from sluiceway.agent._positions import Checkpoint, Positions
from sluiceway.agent._promtail_metrics import RequestDurations
from sluiceway.agent._queue import AgentQueue, Batcher
from sluiceway.agent._ship import Shipper
from sluiceway.agent._stats import Stats
from sluiceway.durable import atomic_write, ensure_dir
from sluiceway.model import StreamBatch

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
            for key, gen, start, _end in checkpoints:
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


class Lane:
    def __init__(self, cfg: AgentConfig, index: int, positions: FanIn, stats: Stats,
                 stop_now: threading.Event, durations: RequestDurations) -> None:
        self.cfg, self.client_index, self.stats = cfg, index, stats
        self.queue = AgentQueue(cfg.queue, cfg.batch, cfg.data_dir, positions,  # type: ignore[arg-type]
                                stats)
        self.batcher = Batcher(cfg.batch, cfg.format, self.queue, positions)  # type: ignore[arg-type]
        self.shippers = [Shipper(cfg, self.queue, positions, stats, stop_now)  # type: ignore[arg-type]
                         for _ in range(cfg.workers)]
        for shipper in self.shippers:
            durations.watch(shipper.pusher.client, cfg.url)
        self.threads: list[threading.Thread] = []

    def start(self, name: str) -> None:
        for n, shipper in enumerate(self.shippers):
            t = threading.Thread(target=shipper.run, name=f"agent-shipper-{name}-{n}",
                                 daemon=True)
            t.start()
            self.threads.append(t)

    def summary(self) -> dict[str, Any]:
        s = self.stats
        with s.lock:
            return {"url": self.cfg.url, "tenant": self.cfg.tenant, "client": self.client_index,
                    "shipped": s.lines_shipped, "enqueued": s.lines_enqueued,
                    "bytes_shipped": s.bytes_shipped,
                    "spilled": s.lines_spilled, "lost_by_reason": dict(s.lost_by_reason),
                    "backend": s.backend_state, "last_error": s.last_error,
                    "queue_depth": self.queue.snapshot()["depth"]}


def lane_dir(data_dir: Path, url: str, tenant: str | None, first: bool) -> Path:
    """The first client's own lane keeps the agent's data dir (its spill stays where it
    always was); every other lane has a directory named after its URL and tenant."""
    if first:
        return data_dir
    digest = hashlib.blake2b(f"{url}\n{tenant or ''}".encode(), digest_size=6).hexdigest()
    return data_dir / "lanes" / digest


class Lanes:
    """Every lane, made at start for each client and later for each tenant a `tenant`
    stage names; `emit` is what inputs hand their pieces to."""

    def __init__(self, cfg: AgentConfig, positions: Positions, stats: Stats,
                 stop_now: threading.Event) -> None:
        self.cfg, self.stop_now = cfg, stop_now
        self.clients = cfg.client_configs()
        self.fan = FanIn(positions)
        self.durations = RequestDurations()
        self._lock = threading.Lock()
        self._lanes: dict[tuple[int, str | None], Lane] = {}
        self._started = False
        for i, c in enumerate(self.clients):
            self._make(i, c.tenant, stats if i == 0 else Stats())
        self._reopen_tenant_lanes()

    @property
    def first(self) -> Lane:
        return self._lanes[(0, self.clients[0].tenant)]

    def all(self) -> list[Lane]:
        with self._lock:
            return list(self._lanes.values())

    def _make(self, index: int, tenant: str | None, stats: Stats) -> Lane:
        c = self.clients[index]
        first = index == 0 and tenant == c.tenant
        where = lane_dir(self.cfg.data_dir, c.url, tenant, first)
        ensure_dir(where)
        if not first:
            atomic_write(where / "lane.json", orjson.dumps({"url": c.url, "tenant": tenant}))
        lane = Lane(lane_config(self.cfg, c, tenant, where), index, self.fan, stats,
                    self.stop_now, self.durations)
        self._lanes[(index, tenant)] = lane
        if self._started:
            lane.start(f"{index}-{tenant or ''}")
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
                    self._make(i, tenant, Stats())
                    break

    def start(self) -> None:
        with self._lock:
            self._started = True
            for (i, tenant), lane in self._lanes.items():
                lane.start(f"{i}-{tenant or ''}")

    def _lane(self, index: int, tenant: str | None) -> Lane:
        with self._lock:
            lane = self._lanes.get((index, tenant))
            if lane is None:
                log.info("client %s: a lane of its own for tenant %r", self.clients[index].url,
                         tenant)
                lane = self._make(index, tenant, Stats())
            return lane

    def emit(self, streams: list[StreamBatch], lines: int, nbytes: int,
             checkpoints: list[Checkpoint]) -> None:
        """Hand a piece to every client's lanes (blocks when a lane's queue blocks)."""
        if len(self.clients) == 1 and not any(TENANT_LABEL in sb.labels for sb in streams) \
                and not self.clients[0].external_labels:
            self.first.batcher.add(streams, lines, nbytes, checkpoints)  # the common path
            return
        deliveries: list[tuple[Lane, list[StreamBatch]]] = []
        for i, c in enumerate(self.clients):
            by_tenant: dict[str | None, list[StreamBatch]] = {}
            for sb in streams:
                labels = sb.labels
                tenant = c.tenant
                if TENANT_LABEL in labels:
                    labels = dict(labels)
                    tenant = labels.pop(TENANT_LABEL) or c.tenant
                if c.external_labels:
                    labels = {**c.external_labels, **labels}
                if labels is not sb.labels:
                    sb = StreamBatch(labels, sb.ts, sb.lines, sb.metadata)
                by_tenant.setdefault(tenant, []).append(sb)
            if not by_tenant:
                by_tenant[c.tenant] = []  # the checkpoints still go through this client
            deliveries += [(self._lane(i, t), part) for t, part in by_tenant.items()]
        self.fan.expect(checkpoints, len(deliveries))
        for lane, part in deliveries:
            n = sum(len(sb) for sb in part)
            size = sum(len(line) for sb in part for line in sb.lines) if n != lines else nbytes
            lane.batcher.add(part, n, size, checkpoints)

    def tick(self, force: bool = False) -> None:
        for lane in self.all():
            lane.batcher.tick(force)
