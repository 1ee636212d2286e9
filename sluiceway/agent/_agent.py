"""The agent: inputs -> pipeline -> lanes (per client and tenant: batcher -> buffer ->
delivery loops), plus positions and reports.

Threads: one per input, `workers` delivery loops (`sluiceway.ship`) per lane, one flusher
(batch max_wait), one positions writer, the status HTTP server and the heartbeat. Shutdown
order matters: inputs stop first, the loops drain until the deadline (a push still
unanswered then is given up and its lines requeued), then the buffer closes (spilling
what is left in spill mode) and positions are written last.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
import uuid
from typing import Any, Protocol

from sluiceway.agent._config import (
    AgentConfig,
    DemoInput,
    FileInput,
    JournalInput,
    LokiPushInput,
    StdinInput,
    SyslogInput,
)
from sluiceway.agent._dryrun import DryRun
from sluiceway.agent._http import StatusServer
from sluiceway.agent._inputs import DemoGenerator, LineInput, StdinReader
from sluiceway.agent._journal import JournalReader
from sluiceway.agent._lanes import Lane, Lanes
from sluiceway.agent._ledger import AgentLedger, input_source
from sluiceway.agent._pipeline import PipelineSpec
from sluiceway.agent._positions import Positions
from sluiceway.agent._push_input import PushReceiver
from sluiceway.agent._report import collector, heartbeat, status
from sluiceway.agent._ship import push_target
from sluiceway.agent._stats import Stats
from sluiceway.agent._syslog import SyslogListener
from sluiceway.agent._tail import FileTailer
from sluiceway.agent._view import PipelineView, view_url
from sluiceway.ship import HeartbeatSender

log = logging.getLogger("sluiceway.agent")


class StartError(RuntimeError):
    """The agent could not start (port taken, data dir not writable, ...)."""


class Input(Protocol):
    spec: PipelineSpec

    def run(self) -> None: ...


class Agent:
    def __init__(self, cfg: AgentConfig, listen: str | None = None,
                 dry_run: bool = False) -> None:
        self.config = cfg  # as given: inputs and every client
        self.listen = listen if listen is not None else cfg.listen
        if not dry_run:  # a dry run leaves the disk as it is: it only reads
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
        # Stable per data dir, so the server's pipeline page keeps one row per agent.
        where = uuid.uuid5(uuid.NAMESPACE_URL, str(cfg.data_dir.resolve())).hex[:12]
        self.id = f"agent-{socket.gethostname()}-{where}"
        self.stats = Stats()
        self.positions = Positions(cfg.data_dir / "positions.json", read_only=dry_run)
        if cfg.promtail_positions is not None:
            self.positions.import_promtail(cfg.promtail_positions,
                                           cfg.promtail_positions_ignore_invalid)
        self.ledger = AgentLedger(self.positions, self.id)
        self.stop_inputs = threading.Event()
        self.stop_now = threading.Event()
        self.stopped = threading.Event()
        self.lanes = Lanes(cfg, self.positions, self.stop_now, self.ledger,
                           on_disk=not dry_run)
        first = self.lanes.first
        # The first client's lane is what /status, /metrics and heartbeats describe at
        # the top; every lane is listed under `clients` (and labelled on /metrics).
        self.cfg = first.cfg
        self.queue, self.batcher, self.delivery = first.queue, first.batcher, first.delivery
        if not dry_run:
            self._warn_orphan_spill()
        # --dry-run: entries are printed instead of sent, and no position is saved.
        self.dry_run = DryRun() if dry_run else None
        self.view = PipelineView(lambda: heartbeat(self.status()),
                                 cfg.heartbeat_interval, cfg.heartbeat_forget_after,
                                 self.stop_now)
        self.inputs: list[Input] = [self._input(i) for i in cfg.inputs]
        self.http: StatusServer | None = None
        self.heartbeat: HeartbeatSender | None = None
        # Every other lane reports its own ledger to its own backend and tenant.
        self.lane_beats: dict[str, HeartbeatSender] = {}
        self._threads: list[threading.Thread] = []  # flusher, positions writer
        self._input_threads: list[threading.Thread] = []
        self._registry: Any = None

    def _input(self, icfg: Any) -> Input:
        emit = self.dry_run.emit if self.dry_run is not None else self.lanes.emit
        stats, stop = self.stats, self.stop_inputs
        if isinstance(icfg, FileInput):
            return FileTailer(icfg, self.positions, emit, stats, self.batcher.max_lines,
                              self.cfg.batch.max_bytes, stop,
                              source=input_source(self.id, "file", ",".join(icfg.paths)),
                              inherit=self.ledger.received)
        inp: LineInput
        if isinstance(icfg, StdinInput):
            inp, what = StdinReader(icfg, emit, stats, stop), "stdin"
        elif isinstance(icfg, SyslogInput):
            inp, what = SyslogListener(icfg, emit, stats, stop), f"syslog:{icfg.listen}"
        elif isinstance(icfg, DemoInput):
            inp, what = DemoGenerator(icfg, emit, stats, stop), "demo"
        elif isinstance(icfg, LokiPushInput):  # a relayed push keeps its own numbers
            inp = PushReceiver(icfg, emit, stats, stop, received=self.ledger.received,
                               lose=self.ledger.lose, heartbeat=self.view.receive)
            what = f"loki_push:{icfg.listen}"
        elif isinstance(icfg, JournalInput):
            inp = JournalReader(icfg, self.config.data_dir, emit, stats, stop)
            what = f"journal:{inp.cursor_file.name}"
        else:
            raise ValueError(f"unknown input {icfg!r}")
        inp.numbers = self.ledger.line_input(input_source(self.id, what.split(":")[0], what))
        return inp

    def _warn_orphan_spill(self) -> None:
        spill = self.cfg.data_dir / "spill"
        if self.cfg.queue.when_full == "spill" or not spill.is_dir():
            return
        held = sum(p.stat().st_size for p in spill.glob("*.seg"))
        if held:
            log.warning("%s holds %d bytes spilled by an earlier run; they are sent only "
                        "with queue.when_full: spill", spill, held)

    def filtered(self) -> int:
        return sum(i.spec.filtered.value for i in self.inputs)

    def filtered_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.inputs:
            for reason, n in i.spec.filtered.by_reason.items():
                out[reason] = out.get(reason, 0) + n
        return out

    def status(self) -> dict[str, Any]:
        return status(self)

    def metrics(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(collector(self))
        out: bytes = generate_latest(self._registry)
        return out

    # -- lifecycle -------------------------------------------------------------------------
    @staticmethod
    def _spawn(target: Any, name: str, group: list[threading.Thread]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        group.append(t)

    def start(self) -> Agent:
        if self.listen:  # first: a taken port should fail before anything runs
            self.http = StatusServer(self.listen, self.status, self.metrics,
                                     self.view).start()
            self.view.url = view_url(self.http.address)
        seen: set[str] = set()
        for inp in self.inputs:
            if isinstance(inp, FileTailer):
                seen |= inp.scan()
        if self.dry_run is None:
            self.positions.prune(seen)
            self.positions.save(force=True)
            self.lanes.start()
            self._spawn(self._flush_loop, "agent-flusher", self._threads)
            self._spawn(self._positions_loop, "agent-positions", self._threads)
        for n, inp in enumerate(self.inputs):
            self._spawn(inp.run, f"agent-input-{n}", self._input_threads)
        if self.cfg.report_url != "off" and self.dry_run is None:
            self.heartbeat = self._heartbeat()
            self.heartbeat.thread.start()
            self._spawn(self._lane_heartbeats, "agent-lane-heartbeats", self._threads)
        # The view, and the relay of its reporters' heartbeats (posted to the listen
        # address, or to a Loki push input by the clients that push there).
        if self.http is not None or any(isinstance(i, PushReceiver) for i in self.inputs):
            self.view.start(self.heartbeat)
        log.info("agent %s shipping to %s (queue %s, when_full=%s)", self.cfg.name,
                 ", ".join(c.url for c in self.lanes.clients), self.cfg.queue.capacity,
                 self.cfg.queue.when_full)
        return self

    def _heartbeat(self, lane: Lane | None = None) -> HeartbeatSender:
        """Heartbeats to `report_url`; `auto`: to the push target, off if it is a Loki.
        `lane`: another lane's own (its client's URL and tenant)."""
        cfg = self.cfg
        target = push_target(lane.cfg if lane is not None else cfg)
        auto = cfg.report_url == "auto"
        build = self.view.own if lane is None else (
            lambda: heartbeat(status(self, lane)))
        return HeartbeatSender(target.base_url if auto else cfg.report_url, build,
                               lambda: target.http(min(5.0, cfg.heartbeat_interval)),
                               cfg.heartbeat_interval, self.stop_now, auto=auto, log=log,
                               name="agent-heartbeat")

    def _lane_heartbeats(self) -> None:
        """A heartbeat sender for each lane but the first, as lanes appear (a `tenant`
        stage makes them as it goes)."""
        while True:
            for lane in self.lanes.all():
                if lane.first or lane.tag is None or lane.tag in self.lane_beats:
                    continue
                sender = self._heartbeat(lane)
                self.lane_beats[lane.tag] = sender
                sender.thread.start()
            if self.stop_now.wait(self.cfg.heartbeat_interval):
                return

    def _flush_loop(self) -> None:
        tick = max(0.01, min(0.1, self.cfg.batch.max_wait / 2))
        while not self.stop_now.wait(tick):
            self.lanes.tick()

    def _positions_loop(self) -> None:
        while not self.stop_now.wait(self.cfg.positions_sync):
            try:
                self.positions.save()
            except OSError as exc:
                log.error("cannot write positions: %s", exc)

    def shutdown(self) -> None:
        """Stop reading, ship what the backend takes before the deadline, keep the rest."""
        if self.stopped.is_set():
            return
        deadline = time.monotonic() + self.cfg.shutdown_timeout
        log.info("agent stopping: draining for up to %.1fs", self.cfg.shutdown_timeout)
        self.stop_inputs.set()
        self._join(self._input_threads, deadline)
        flush = threading.Thread(target=self.lanes.tick, args=(True,), daemon=True)
        flush.start()
        flush.join(max(0.0, deadline - time.monotonic()))
        for lane in self.lanes.all():
            lane.queue.buffer.join(max(0.0, deadline - time.monotonic()))
        self.stop_now.set()
        # Loops give up a push still unanswered (within a poll of 50 ms) and hand its
        # lines back, so the close below keeps them with the rest of the queue.
        self._join([t for lane in self.lanes.all() for t in lane.threads],
                   time.monotonic() + 1)
        # Spill mode: what is still queued goes to disk for the next run; otherwise its
        # positions were never advanced, so files are re-read from there. Closing also
        # frees the flusher and inputs blocked on a full queue (block mode): their puts
        # fail, and positions stay before those lines.
        for lane in self.lanes.all():
            lane.queue.buffer.close(persist=True)
        self._join(self._threads + self._input_threads, time.monotonic() + 1)
        if self.dry_run is None:
            self.positions.save(force=True)
        if self.http is not None:
            self.http.stop()
        if self.heartbeat is not None:  # the settled figures, once more
            self.heartbeat.final(timeout=min(2.0, self.cfg.heartbeat_interval))
        for sender in list(self.lane_beats.values()):
            sender.final(timeout=min(2.0, self.cfg.heartbeat_interval))
        self.stopped.set()
        ln = self.status()["lines"]
        log.info("agent stopped: %d lines read, %d shipped, %d spilled, %d lost", ln["read"],
                 ln["shipped"], ln["spilled"], ln["lost"])

    @staticmethod
    def _join(threads: list[threading.Thread], deadline: float) -> None:
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def run_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT (or every input ended) and shut down."""
        done = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s", signal.Signals(signum).name)
            done.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            self.start()
        except OSError as exc:
            raise StartError(str(exc)) from exc
        while not done.wait(0.5):
            if self._input_threads and not any(t.is_alive() for t in self._input_threads):
                log.info("all inputs finished")
                done.set()
        self.shutdown()

