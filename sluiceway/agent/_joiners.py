"""Stateful stages that join records: `multiline`, `cri` and `docker` (partial lines).

They hold records across batches, so each reports `held_from()`: the file offset of the
first byte still held. The positions tracker never advances past it, so a crash while
a stack trace is half collected re-reads the whole trace.

The ledger (ARCHITECTURE.md §ledger): the entry is the unit. The pipeline's last
joiner numbers each entry when it opens it (`number`, set by the input), so an entry
still held has its number already (`held_seq()`): a file reads it again after a
restart, from its first line, and it gets the same number; an input that cannot read
again loses it at a SIGKILL with its number emitted, so the ledger shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import re2

from sluiceway.agent._config import CriStage, DockerStage, MultilineStage
from sluiceway.agent._records import Records
from sluiceway.model import parse_rfc3339

# A held partial is released after this long without its continuation.
PARTIAL_WAIT_S = 3.0


class _Held:
    """One record being assembled: its parts, first timestamp, start offset, labels."""

    __slots__ = ("parts", "ts", "start", "labels", "since", "seq")

    def __init__(self, ts: int, start: int, labels: dict[str, str] | None,
                 seq: int = -1) -> None:
        self.parts: list[str] = []
        self.ts, self.start, self.labels, self.seq = ts, start, labels, seq
        self.since = time.monotonic()


class _Joiner:
    """Common output plumbing: collect finished records with their columns."""

    def __init__(self) -> None:
        self._held: _Held | None = None
        # The ledger's next number (the input's), when this joiner numbers entries.
        self.number: Callable[[], int] | None = None

    def held_from(self) -> int | None:
        return self._held.start if self._held is not None else None

    def held_seq(self) -> int | None:
        """The number of the entry held (None: none held, or not numbering)."""
        h = self._held
        return h.seq if h is not None and self.number is not None else None

    def _open(self, ts: int, start: int, labels: dict[str, str] | None) -> _Held:
        number = self.number
        h = self._held = _Held(ts, start, labels, number() if number is not None else -1)
        return h

    def _new_out(self, with_labels: bool) -> Records:
        out = Records([], [], starts=[])
        if with_labels:
            out.labels = []
        if self.number is not None:
            out.seqs = []
        return out

    def _emit(self, out: Records, h: _Held, sep: str) -> None:
        out.ts.append(h.ts)
        out.lines.append(sep.join(h.parts))
        assert out.starts is not None
        out.starts.append(h.start)
        if out.labels is not None:
            out.labels.append(h.labels)
        if out.seqs is not None:
            out.seqs.append(h.seq)

    def _release_if_due(self, out: Records, wait: float, final: bool, sep: str) -> None:
        h = self._held
        if h is not None and (final or time.monotonic() - h.since >= wait):
            self._emit(out, h, sep)
            self._held = None


class Multiline(_Joiner):
    """Lines not matching `firstline` join the record started by the last line that did."""

    def __init__(self, cfg: MultilineStage, rx: re2._Regexp) -> None:
        super().__init__()
        self._cfg, self._rx = cfg, rx

    def __call__(self, recs: Records, final: bool = False) -> Records:
        # A held entry keeps its own labels when it is released by an empty call (a
        # timeout, a stop): without them it would go out with none.
        held = self._held
        out = self._new_out(recs.labels is not None
                            or (held is not None and held.labels is not None))
        starts = recs.starts or [0] * len(recs.lines)
        labels = recs.labels
        match, max_lines = self._rx.search, self._cfg.max_lines
        for i, line in enumerate(recs.lines):
            h = self._held
            if h is not None and match(line) is None and len(h.parts) < max_lines:
                h.parts.append(line)
                continue
            if h is not None:
                self._emit(out, h, "\n")
            h = self._open(recs.ts[i], starts[i], labels[i] if labels else None)
            h.parts.append(line)
        self._release_if_due(out, self._cfg.max_wait_time, final, "\n")
        return out


class Cri(_Joiner):
    """`<RFC3339Nano> <stdout|stderr> <P|F> <msg>`: P parts join up to the next F."""

    def __init__(self, cfg: CriStage) -> None:
        super().__init__()
        self._cfg = cfg
        self._stream_labels: dict[str, dict[str, str]] = {}

    def _labels(self, stream: str, base: dict[str, str] | None) -> dict[str, str]:
        lab = self._stream_labels.get(stream)
        if lab is None:
            lab = self._stream_labels[stream] = {"stream": stream}
        return lab if base is None else {**base, **lab}

    def __call__(self, recs: Records, final: bool = False) -> Records:
        out = self._new_out(True)
        starts = recs.starts or [0] * len(recs.lines)
        labels = recs.labels
        for i, line in enumerate(recs.lines):
            parts = line.split(" ", 3)
            if len(parts) < 4 or parts[2] not in ("P", "F"):
                parts = [parts[0], "stdout", "F", line] if len(parts) < 4 else parts
            stamp, stream, tag, msg = parts
            try:
                ts = parse_rfc3339(stamp)
            except ValueError:
                ts, msg = recs.ts[i], line
            h = self._held
            if h is None:
                h = self._open(ts, starts[i],
                               self._labels(stream, labels[i] if labels else None))
            h.parts.append(msg)
            if tag == "F" or len(h.parts) >= self._cfg.max_partial_lines:
                self._emit(out, h, "")
                self._held = None
        self._release_if_due(out, PARTIAL_WAIT_S, final, "")
        return out


class Docker(_Joiner):
    """Docker json-file lines `{"log": "...\\n", "stream": ..., "time": ...}`; a `log`
    without its trailing newline is a partial that joins the next one."""

    def __init__(self, cfg: DockerStage) -> None:
        super().__init__()
        self._cfg = cfg
        self._stream_labels: dict[str, dict[str, str]] = {}

    def __call__(self, recs: Records, final: bool = False) -> Records:
        out = self._new_out(True)
        starts = recs.starts or [0] * len(recs.lines)
        labels = recs.labels
        for i, line in enumerate(recs.lines):
            try:
                obj = orjson.loads(line)
                msg, stream = str(obj["log"]), str(obj.get("stream", "stdout"))
                ts = parse_rfc3339(str(obj["time"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                msg, stream, ts = line + "\n", "stdout", recs.ts[i]
            h = self._held
            if h is None:
                lab = self._stream_labels.setdefault(stream, {"stream": stream})
                base = labels[i] if labels else None
                h = self._open(ts, starts[i], lab if base is None else {**base, **lab})
            done = msg.endswith("\n")
            h.parts.append(msg[:-1] if done else msg)
            if done or len(h.parts) >= self._cfg.max_partial_lines:
                self._emit(out, h, "")
                self._held = None
        self._release_if_due(out, PARTIAL_WAIT_S, final, "")
        return out
