"""Loki's /index/volume and /index/volume_range: bytes of log lines per label group."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sluiceway.logql import Deadline, LogSource
from sluiceway.model import Matcher, format_labels


def _group_key(labels: Mapping[str, str], targets: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, labels[k]) for k in targets if k in labels)


def bucket_edges(start: int, end: int, step_ns: int) -> np.ndarray:
    """[start, step boundaries counted from the Unix epoch inside (start, end), end]."""
    first = (start // step_ns + 1) * step_ns
    inner = np.arange(first, end, step_ns, dtype=np.int64)
    return np.concatenate([[start], inner, [end]]).astype(np.int64)


def volume(source: LogSource, tenants: list[str], matchers: list[Matcher], start: int,
           end: int, step_ns: int | None, targets: list[str] | None, limit: int,
           aggregate_by: str, deadline: Deadline | None = None,
           ) -> dict[tuple[tuple[str, str], ...], np.ndarray]:
    """Bytes per group: one value (step None) or one per bucket of `bucket_edges`, from
    the per-series sums of `source.volume`; `deadline` is checked before each block. As
    Loki: `aggregate_by` "series" groups by the `targets` (default: the selector's label
    names), "labels" by label *name* (the value left empty); a target the selector does
    not name must be present (`=~".+"`); the largest first (ties by name), at most
    `limit`."""
    names = targets or sorted({m.name for m in matchers})
    if targets:
        named = {m.name for m in matchers}
        matchers = matchers + [Matcher(t, "=~", ".+") for t in targets if t not in named]
    edges = bucket_edges(start, end, step_ns) if step_ns else np.array([start, end],
                                                                       dtype=np.int64)
    nb = len(edges) - 1
    acc: dict[tuple[tuple[str, str], ...], np.ndarray] = {}
    for ref, sums in source.volume(tenants, matchers, start, end, edges, deadline=deadline):
        if aggregate_by == "labels":
            keys: list[tuple[tuple[str, str], ...]] = [
                ((k, ""),) for k in ref.labels if not targets or k in targets]
        else:
            keys = [_group_key(ref.labels, names)]
        for key in keys:
            acc[key] = acc.get(key, np.zeros(nb, dtype=np.int64)) + sums
    top = sorted(acc.items(), key=lambda kv: (-int(kv[1].sum()),
                                              format_labels(dict(kv[0]))))[:limit]
    return dict(top)
