"""Loki's `max_global_streams_per_user`: a tenant has at most this many active streams.

Active, as in Loki's ingester: a stream with data in memory or written to within
`chunk_idle_period` (the store keeps that set). A push's streams that already exist are
stored; one that would be new past the limit is refused with Loki's 429 text, naming the
last stream refused, and its lines are counted as discarded (`stream_limit`). Streams
admitted by pushes still on their way to the WAL count too, so concurrent pushes cannot
overshoot the limit. Only the event loop thread uses a limiter.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from sluiceway.model import EntryBlock, fingerprint, format_labels


class ActiveStreams(Protocol):
    """Who knows a tenant's active streams: the store, or in cluster mode the cluster's
    `ActiveStreamsBoard` (every ingester's, through KV)."""

    def active_streams(self, tenant: str, fps: list[int]) -> tuple[int, set[int]]: ...


def stream_limit_message(labels: dict[str, str], tenant: str) -> str:
    return (f"maximum active stream limit exceeded when trying to create stream "
            f"{format_labels(labels)}, reduce the number of active streams (reduce labels "
            "or reduce label values), or contact your Loki administrator to see if the "
            f"limit can be increased, user: '{tenant}'")


@dataclass(slots=True)
class Admission:
    """The blocks a push may store (`keep`: their indexes in the push), the ones refused,
    and the new streams it reserved (release them once the push is stored or failed)."""

    tenant: str
    blocks: list[EntryBlock]
    keep: list[int] = field(default_factory=list)
    refused: list[EntryBlock] = field(default_factory=list)
    reserved: list[int] = field(default_factory=list)


class StreamLimiter:
    def __init__(self) -> None:
        self._inflight: dict[str, Counter[int]] = {}

    def admit(self, tenant: str, blocks: list[EntryBlock], store: ActiveStreams,
              limit: int) -> Admission:
        """`limit`: the tenant's `max_global_streams_per_user` (0: none)."""
        if limit <= 0 or not blocks:
            return Admission(tenant, blocks, list(range(len(blocks))))
        fps = [fingerprint(b.labels) for b in blocks]
        inflight = self._inflight.setdefault(tenant, Counter())
        count, active = store.active_streams(tenant, [*fps, *inflight])
        count += sum(1 for fp in inflight if fp not in active)
        out = Admission(tenant, [])
        new: set[int] = set()
        for i, (b, fp) in enumerate(zip(blocks, fps, strict=True)):
            if fp in active or fp in inflight or fp in new:
                out.blocks.append(b)
                out.keep.append(i)
            elif count < limit:
                count += 1
                new.add(fp)
                out.blocks.append(b)
                out.keep.append(i)
            else:
                out.refused.append(b)
        out.reserved = list(new)
        inflight.update(new)
        return out

    def release(self, adm: Admission) -> None:
        inflight = self._inflight.get(adm.tenant)
        if inflight is None:
            return
        inflight.subtract(adm.reserved)
        for fp in adm.reserved:
            if inflight[fp] <= 0:
                del inflight[fp]
        if not inflight:
            del self._inflight[adm.tenant]
