"""Loki's /index/volume and /index/volume_range: bytes of log lines per label group."""

from __future__ import annotations

import numpy as np

from sluiceway.model import Matcher
from sluiceway.store import Store


def _group_key(labels: dict[str, str], targets: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, labels[k]) for k in targets if k in labels)


def volume(store: Store, tenants: list[str], matchers: list[Matcher], start: int, end: int,
           step_ns: int | None, targets: list[str] | None, limit: int,
           aggregate_by: str) -> dict[tuple[tuple[str, str], ...], np.ndarray]:
    """Bytes per group: one value (step None) or one per step bucket from `start`."""
    names = targets or sorted({m.name for m in matchers})
    nb = 1 if step_ns is None else max(1, -(-(end - start) // step_ns))
    acc: dict[tuple[tuple[str, str], ...], np.ndarray] = {}
    for ref in store.series(tenants, matchers, start, end):
        if aggregate_by == "labels":
            keys: list[tuple[tuple[str, str], ...]] = [
                ((k, v),) for k, v in ref.labels.items() if not targets or k in targets]
        else:
            keys = [_group_key(ref.labels, names)]
        sums = np.zeros(nb, dtype=np.int64)
        for b in store.blocks(ref, start, end, "forward"):
            sizes = np.diff(b.offsets)
            if step_ns is None:
                sums[0] += int(sizes.sum())
            else:
                idx = np.minimum((b.ts - start) // step_ns, nb - 1)
                sums += np.bincount(idx, weights=sizes, minlength=nb).astype(np.int64)
        for key in keys:
            acc[key] = acc.get(key, np.zeros(nb, dtype=np.int64)) + sums
    top = sorted(acc.items(), key=lambda kv: -int(kv[1].sum()))[:limit]
    return dict(top)
