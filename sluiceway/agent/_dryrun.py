"""`--dry-run` and `--inspect`, as Promtail has them: entries are printed instead of
sent (nothing is pushed, no position is saved, the data dir is left as it is: see
`Positions(read_only=True)` and `Lanes(on_disk=False)`), and `--inspect` prints on
stderr what each pipeline stage changed in each entry."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from sluiceway.agent._positions import Checkpoint
from sluiceway.agent._records import Piece, Records
from sluiceway.model import format_labels

_lock = threading.Lock()


def _rfc3339(ns: int) -> str:
    import datetime as dt

    d = dt.datetime.fromtimestamp(ns // 10**9, tz=dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


class DryRun:
    """Takes the place of the lanes: prints each entry as `time\\t{labels}\\tline`."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.entries = 0

    def emit(self, pieces: list[Piece], lines: int, nbytes: int,
             checkpoints: list[Checkpoint], can_wait: bool = False,
             numbers: object = None) -> None:
        rows = sorted((int(t), format_labels(p.labels), line.decode("utf-8", "replace"), md)
                      for p in pieces
                      for t, line, md in zip(p.ts, p.lines, p.metadata or [None] * len(p),
                                             strict=True))
        with _lock:
            for t, labels, line, md in rows:
                extra = f"\t{md}" if md else ""
                self.out.write(f"{_rfc3339(t)}\t{labels}\t{line}{extra}\n")
            self.out.flush()
            self.entries += len(rows)


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = [f"+{k}={b[k]!r}" for k in b if k not in a or a[k] != b[k]]
    return out + [f"-{k}" for k in a if k not in b]


def inspect(stage: str, before: Records, after: Records, err: TextIO | None = None) -> None:
    """What `stage` changed, entry by entry (entries it removed are said so)."""
    err = err or sys.stderr
    lines = []
    if len(after.lines) < len(before.lines):
        lines.append(f"[inspect: {stage} stage]: {len(before.lines) - len(after.lines)} of "
                     f"{len(before.lines)} entries dropped")
    for i in range(min(len(before.lines), len(after.lines))):
        parts = []
        la, lb = before.labels_of(i), after.labels_of(i)
        if la != lb:
            parts.append("labels " + " ".join(_diff(la, lb)))
        fa = before.fields[i] if before.fields is not None else {}
        fb = after.fields[i] if after.fields is not None else {}
        if fa != fb:
            parts.append("extracted " + " ".join(_diff(fa, fb)))
        if before.lines[i] != after.lines[i]:
            parts.append(f"line {before.lines[i]!r} -> {after.lines[i]!r}")
        if before.ts[i] != after.ts[i]:
            parts.append(f"timestamp {_rfc3339(before.ts[i])} -> {_rfc3339(after.ts[i])}")
        ma = before.metadata[i] if before.metadata is not None else None
        mb = after.metadata[i] if after.metadata is not None else None
        if (ma or {}) != (mb or {}):
            parts.append("structured_metadata " + " ".join(_diff(ma or {}, mb or {})))
        lines.append(f"[inspect: {stage} stage] entry {i}: "
                     + ("; ".join(parts) if parts else "none"))
    with _lock:
        err.write("\n".join(lines) + "\n")
        err.flush()
