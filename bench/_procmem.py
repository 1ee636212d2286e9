"""Memory of a process tree (a server, its ingest workers, its pattern miner), sampled from
/proc while a benchmark runs.

RSS of every process comes from `/proc/<pid>/statm` (cheap: sampled every `interval`);
their sum's peak is the figure reported. Forked workers share pages with the server until
either writes them, so the RSS sum counts those pages twice: PSS (`smaps_rollup`, which
splits a shared page between its users) is sampled less often and its peak reported too.
Each process's own high-water mark (`VmHWM`) is read at the end: their sum bounds the peak
of the sum from above, spikes between samples included.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(x) for x in task.read_text().split()]
    return out


def role(pid: int, root: int) -> str:
    """What a process of a server's tree is, from its command line."""
    if pid == root:
        return "server"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return "gone"
    if b"resource_tracker" in cmd:
        return "resource tracker"
    if b"spawn_main" in cmd or b"sluiceway.patterns" in cmd:
        return "pattern miner"  # the server's only spawned child
    return "ingest worker"  # forked: the server's command line


def rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class MemoryReport:
    peak_rss: int = 0  # the largest RSS sum seen
    at_peak: dict[str, int] = field(default_factory=dict)  # role → RSS at that moment
    peak_pss: int = 0
    hwm_sum: int = 0  # sum of every process's VmHWM at the end (an upper bound)
    hwm: dict[str, int] = field(default_factory=dict)  # role → summed VmHWM
    samples: int = 0
    server_parts: dict[str, int] = field(default_factory=dict)  # the server's accounting

    def lines(self) -> list[str]:
        mb = 1e6
        parts = ", ".join(f"{r} {v / mb:.0f}" for r, v in sorted(self.at_peak.items()))
        hwm = ", ".join(f"{r} {v / mb:.0f}" for r, v in sorted(self.hwm.items()))
        out = [f"  peak memory (server + ingest workers + pattern miner): RSS sum "
               f"{self.peak_rss / mb:.0f} MB, PSS sum {self.peak_pss / mb:.0f} MB "
               f"({self.samples} samples)",
               f"    at the RSS peak, MB: {parts}",
               f"    high-water marks (VmHWM), MB: {hwm}; sum {self.hwm_sum / mb:.0f}"]
        if self.server_parts:
            out.append("    the server's own accounting at its peak, MB: " + ", ".join(
                f"{k} {v / mb:.1f}" for k, v in self.server_parts.items()))
        return out


class MemorySampler:
    """Samples the tree of `pid` on a thread from `start()` to `stop()`."""

    def __init__(self, pid: int, interval: float = 0.1, pss_every: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.pss_every = pss_every
        self.report = MemoryReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._hwm: dict[int, tuple[str, int]] = {}

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        r = self.report
        next_pss = 0.0
        roles: dict[int, str] = {}
        while not self._stop.is_set():
            pids = descendants(self.pid)
            for p in pids:
                if p not in roles:
                    roles[p] = role(p, self.pid)
            values = {p: rss(p) for p in pids}
            total = sum(values.values())
            r.samples += 1
            if total > r.peak_rss:
                r.peak_rss = total
                at: dict[str, int] = {}
                for p, v in values.items():
                    at[roles[p]] = at.get(roles[p], 0) + v
                r.at_peak = at
            now = time.monotonic()
            if now >= next_pss:
                next_pss = now + self.pss_every
                r.peak_pss = max(r.peak_pss, sum(pss(p) for p in pids))
            for p in pids:  # a process's HWM, read while it lives
                h = _status_kb(p, "VmHWM")
                if h:
                    self._hwm[p] = (roles[p], max(h, self._hwm.get(p, ("", 0))[1]))
            self._stop.wait(self.interval)

    def stop(self) -> MemoryReport:
        self._stop.set()
        self._thread.join()
        r = self.report
        r.hwm = {}
        for role_, h in self._hwm.values():
            r.hwm[role_] = r.hwm.get(role_, 0) + h
        r.hwm_sum = sum(r.hwm.values())
        return r
