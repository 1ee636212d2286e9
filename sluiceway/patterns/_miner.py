"""Patterns of recent lines, per tenant, stream and `detected_level`, as Loki's pattern
ingester keeps them: one Drain per (stream, level), lines counted per sample interval,
samples older than `retain_for` forgotten. A query sums the samples of equal
(pattern, level) over the matching streams into step buckets and keeps the patterns
with at least 30 lines in the range, most lines first, at most 300 (Loki's querier).

Memory is bounded by `max_streams_per_tenant` (a new stream past it is not mined, its
lines counted as `stream_limit`), `max_clusters` per (stream, level), and `retain_for`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sluiceway.logql import DETECTED_LEVEL, LevelRules, block_levels
from sluiceway.model import EntryBlock, Matcher, fingerprint, matches_all
from sluiceway.patterns._config import PatternIngesterConfig
from sluiceway.patterns._drain import Drain
from sluiceway.patterns._tokenize import Tokenizer, detect_format, tokenizer_for

MIN_LINES = 30  # Loki's querier drops patterns with fewer lines in the range
MAX_PATTERNS = 300
KNOWN_LEVELS = frozenset(("unknown", "debug", "info", "warn", "error", "fatal", "critical",
                          "trace"))


@dataclass(frozen=True, slots=True)
class MinerConfig:
    """The `pattern_ingester:` section as it is, and what the miner takes from `limits`."""

    ingester: PatternIngesterConfig = PatternIngesterConfig()
    json_fields: tuple[str, ...] = ("log", "message", "msg", "msg_", "_msg", "content")
    levels: LevelRules | None = LevelRules()  # None: only a `detected_level` sent along


@dataclass(slots=True)
class _Stream:
    labels: dict[str, str]
    tokenizer: Tokenizer
    drains: dict[str, Drain] = field(default_factory=dict)
    last_ts: int = -(2**63)


@dataclass(slots=True)
class PatternSeries:
    pattern: str
    level: str
    samples: list[tuple[int, int]]  # (Unix seconds, lines), ascending

    @property
    def total(self) -> int:
        return sum(n for _, n in self.samples)

    def to_json(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "level": self.level,
                "samples": [list(s) for s in self.samples]}


class PatternMiner:
    """Not thread-safe: one owner feeds and queries it (see the server's service)."""

    def __init__(self, cfg: MinerConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.tenants: dict[str, dict[int, _Stream]] = {}
        self.mined = 0
        self.skipped: Counter[str] = Counter()  # lines not mined, by reason

    def _stream(self, tenant: str, labels: dict[str, str], first_line: str) -> _Stream | None:
        streams = self.tenants.setdefault(tenant, {})
        fp = fingerprint(labels)
        s = streams.get(fp)
        if s is None:
            if len(streams) >= self.cfg.ingester.max_streams_per_tenant:
                return None
            fmt = detect_format(first_line)
            s = streams[fp] = _Stream(dict(labels), tokenizer_for(
                fmt, self.cfg.ingester.max_allowed_line_length, list(self.cfg.json_fields)))
        return s

    def add(self, tenant: str, block: EntryBlock) -> None:
        """Mine a block of one stream, in its order (lines older than the newest one seen
        in the stream are skipped, as Loki's pattern ingester does)."""
        n = len(block)
        if not n:
            return
        lines = [x.decode("utf-8", "replace") for x in block.lines()]
        s = self._stream(tenant, block.labels, lines[0])
        if s is None:
            self.skipped["stream_limit"] += n
            return
        rules = self.cfg.levels
        levels: str | list[str]
        if rules is not None:
            levels = block_levels(rules, block)
        else:
            md = block.metadata or [None] * n
            levels = [(m or {}).get(DETECTED_LEVEL, "unknown").lower() for m in md]
        ts = block.ts.tolist()
        skipped = self.skipped
        for i, line in enumerate(lines):
            t = ts[i]
            if t < s.last_ts:
                skipped["out_of_order"] += 1
                continue
            s.last_ts = t
            level = levels if isinstance(levels, str) else levels[i]
            if level not in KNOWN_LEVELS:
                level = "unknown"
            d = s.drains.get(level)
            if d is None:
                d = s.drains[level] = Drain(self.cfg.ingester, s.tokenizer)
            why = d.train(line, t // 1_000_000)
            if why:
                skipped[why] += 1
            else:
                self.mined += 1

    def prune(self) -> None:
        """Forget samples older than `retain_for`, and streams left with none."""
        before = int((self.clock() - self.cfg.ingester.retain_for) * 1000)
        for streams in self.tenants.values():
            for fp, s in list(streams.items()):
                for level, d in list(s.drains.items()):
                    d.prune(before)
                    if not d.clusters:
                        del s.drains[level]
                if not s.drains:
                    del streams[fp]

    def query(self, tenants: Iterable[str], matchers: list[Matcher], start_ns: int,
              end_ns: int, step_ns: int) -> list[PatternSeries]:
        interval = self.cfg.ingester.sample_interval_ms()
        start_ms, end_ms = start_ns // 1_000_000, -(-end_ns // 1_000_000)
        step = max(step_ns // 1_000_000, interval)
        acc: dict[tuple[str, str], dict[int, int]] = {}
        for tenant in tenants:
            for s in self.tenants.get(tenant, {}).values():
                if not matches_all(matchers, s.labels):
                    continue
                for level, d in s.drains.items():
                    for c in d.clusters.values():
                        buckets = _in_range(c.buckets, c.counts, start_ms, end_ms, step,
                                            interval)
                        if not buckets:
                            continue
                        into = acc.setdefault((d.pattern(c), level), {})
                        for t, n in buckets:
                            into[t] = into.get(t, 0) + n
        out = [PatternSeries(p, lvl, [(t // 1000, n) for t, n in sorted(by_t.items())])
               for (p, lvl), by_t in acc.items() if p]
        out = [p for p in out if p.total >= MIN_LINES]
        out.sort(key=lambda p: (-p.total, p.pattern, p.level))
        return out[:MAX_PATTERNS]


def _in_range(buckets: Any, counts: Any, start: int, end: int, step: int,
              interval: int) -> list[tuple[int, int]]:
    """A cluster's samples in [start, end), in `step` buckets from its first to its last
    one (empty ones in between as 0); as they are when the step is the interval."""
    picked = [(t, n) for t, n in zip(buckets, counts, strict=True) if start <= t < end]
    if not picked or step == interval:
        return picked
    out: list[tuple[int, int]] = []
    cur = picked[0][0] - picked[0][0] % step
    out.append((cur, 0))
    for t, n in picked:
        if t >= cur + step:
            at = t - t % step
            cur += step
            while cur <= at:
                out.append((cur, 0))
                cur += step
            cur = at
        out[-1] = (out[-1][0], out[-1][1] + n)
    return out
