"""Inputs without files: stdin and a demo generator (syslog lives in `_syslog.py`).

They have no position to keep, so under `when_full: block` the only back-pressure is
to stop reading: a pipe writer then blocks on a full pipe, which is the documented
behaviour, and under `drop` their lines are counted lost.
"""

from __future__ import annotations

import logging
import os
import random
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from sluiceway.agent._config import DemoInput, StdinInput
from sluiceway.agent._ledger import LineNumbers
from sluiceway.agent._pipeline import Pipeline, PipelineSpec
from sluiceway.agent._records import Records
from sluiceway.agent._stats import Stats
from sluiceway.agent._tail import Emit, numbers_of
from sluiceway.model import runs_of

log = logging.getLogger("sluiceway.agent")


class LineInput:
    """Shared plumbing: lines in, pipeline, batcher; joiner timeouts on idle ticks."""

    def __init__(self, labels: dict[str, str], stages: list[object], emit: Emit,
                 stats: Stats, stop: threading.Event) -> None:
        self.spec = PipelineSpec(stages, labels)  # type: ignore[arg-type]
        self.pipeline: Pipeline = self.spec.new()
        self.emit, self.stats, self.stop = emit, stats, stop
        # The ledger's numbers of this input (set by the agent; None: not numbered).
        # With a joining stage (multiline, cri, docker) lines are not numbered: a
        # joined record is many lines.
        self.numbers: LineNumbers | None = None

    def deliver(self, lines: list[str], ts: list[int] | None = None,
                labels: list[dict[str, str] | None] | None = None,
                fields: list[dict[str, Any]] | None = None, final: bool = False) -> None:
        if ts is None:
            base = time.time_ns()
            ts = list(range(base, base + len(lines)))
        recs = Records(ts, lines, fields=fields, labels=labels)
        nums = self.numbers if not self.pipeline.stateful else None
        if lines:
            self.stats.add(lines_read=len(lines), bytes_read=sum(map(len, lines)))
            if nums is not None:
                recs.seqs = nums.take(len(lines))
        seqs = recs.seqs
        out = self.pipeline.run(recs, final)
        pieces = self.pipeline.to_pieces(out)
        groups = None
        if nums is not None and seqs is not None and out.seqs is not None:
            groups = numbers_of(nums.source, nums.epoch, out.seqs)
            if len(out.seqs) < len(seqs):  # a drop stage: lost on purpose, by number
                with nums.lock:
                    for a, b in runs_of(sorted(set(seqs) - set(out.seqs))):
                        nums.lost["filtered"] = nums.lost.get("filtered", 0) + \
                            nums.lost_set.add(a, b)
        if pieces:
            nbytes = sum(len(line) for p in pieces for line in p.lines)
            if groups:
                self.emit(pieces, len(out), nbytes, [], False, groups)
            else:
                self.emit(pieces, len(out), nbytes, [])


class StdinReader(LineInput):
    def __init__(self, cfg: StdinInput, emit: Emit, stats: Stats, stop: threading.Event,
                 fd: int = 0, on_eof: Callable[[], None] | None = None) -> None:
        super().__init__(dict(cfg.labels), list(cfg.pipeline), emit, stats, stop)
        self.fd, self.on_eof = fd, on_eof

    def run(self) -> None:
        partial = b""
        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.25)
            if not ready:
                if self.pipeline.stateful:
                    self.deliver([])
                continue
            data = os.read(self.fd, 1 << 20)
            if not data:
                break
            buf = partial + data
            cut = buf.rfind(b"\n")
            if cut < 0:
                partial = buf
                continue
            partial = buf[cut + 1:]
            self.deliver(buf[:cut].decode("utf-8", "replace").split("\n"))
        if partial:
            self.deliver([partial.decode("utf-8", "replace")])
        self.deliver([], final=True)
        log.info("stdin closed")
        if self.on_eof is not None:
            self.on_eof()


_DEMO_MESSAGES = [
    ("info", "GET /api/orders 200 {ms}ms"), ("info", "user login ok user_id={n}"),
    ("debug", "cache hit key=order:{n}"), ("warn", "slow query took {ms}ms table=orders"),
    ("error", "payment declined order_id={n} code=51"), ("info", "POST /api/cart 201 {ms}ms"),
]


class DemoGenerator(LineInput):
    """Sample logfmt lines at `rate` per second, for `sluiceway up` and trying things out."""

    def __init__(self, cfg: DemoInput, emit: Emit, stats: Stats, stop: threading.Event) -> None:
        super().__init__(dict(cfg.labels), list(cfg.pipeline), emit, stats, stop)
        self.rate = cfg.rate

    def run(self) -> None:
        rnd = random.Random()
        while not self.stop.wait(1.0):
            n = max(1, int(self.rate * rnd.uniform(0.5, 1.5)))
            lines = []
            for _ in range(n):
                level, msg = rnd.choice(_DEMO_MESSAGES)
                text = msg.format(ms=rnd.randint(1, 900), n=rnd.randint(1, 99999))
                lines.append(f'level={level} msg="{text}"')
            self.deliver(lines)
