"""What every ingest route (Loki push, OTLP, Elasticsearch `_bulk`) does around its own
decoder: read the body within the size limit, then — once a worker has validated the push
and encoded its record — the tenant rate limit, the stream limit, the store (durable in
the WAL, then applied to the heads, which may refuse lines too far behind), metrics and
live tail. `loki_ingest` adds Loki's answers (204, 400, 413, 429, 503)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request, Response

from sluiceway.cluster import ClusterError, PayloadTooLarge
from sluiceway.model import LEDGER_HEADER, EntryBlock, PushRecord, fingerprint
from sluiceway.server._body import read_body
from sluiceway.server._config import LimitsSection
from sluiceway.server._context import ServerContext, bad, ctx_of
from sluiceway.server._distributor import Decoder, PushError, Rejections
from sluiceway.server._inflight import Ticket
from sluiceway.server._ratelimit import entry_sizes, stream_rate_message
from sluiceway.server._streamlimit import stream_limit_message
from sluiceway.store import Applied, WalWriteError
from sluiceway.wire import BodyTooLarge, WireError

log = logging.getLogger("sluiceway.server")


class RateLimited(Exception):
    """The tenant is over its ingestion rate: nothing stored (HTTP 429, retryable)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A stream object of a push that was not stored, why (Loki's reason) and Loki's text."""

    block: EntryBlock
    reason: str  # stream_limit | per_stream_rate_limit
    message: str


@dataclass(slots=True)
class Stored:
    """What `commit` did: `lines` stored (exact duplicates count as stored, as in Loki),
    what the heads did, and the stream objects the tenant's stream limit or per-stream
    rate limit refused, in push order."""

    lines: int = 0
    applied: Applied | None = None
    refused: list[Refused] = field(default_factory=list)


def _over_stream_rate(ctx: ServerContext, tenant: str, blocks: list[EntryBlock],
                      keep: list[int], limits: LimitsSection
                      ) -> tuple[list[int], list[tuple[int, Refused]]]:
    """Of the blocks at `keep`, those within their stream's `per_stream_rate_limit`, and
    the others (with their index in the push)."""
    kept: list[int] = []
    refused: list[tuple[int, Refused]] = []
    rate, burst = limits.per_stream_rate_limit, limits.per_stream_rate_limit_burst
    for i in keep:
        b = blocks[i]
        sizes = entry_sizes(b)
        if ctx.stream_rate.allow(tenant, fingerprint(b.labels), int(sizes.sum()), rate, burst):
            kept.append(i)
        else:
            refused.append((i, Refused(b, "per_stream_rate_limit",
                                       stream_rate_message(tenant, b, sizes, rate))))
    return kept, refused


# How long a push waits for the flusher while the heads are over `storage.max_heads_size`
# before it is answered 503 (chunks cannot be written: disk full, object store down).
HEADS_WAIT_S = 10.0


async def room_in_heads(ctx: ServerContext) -> None:
    """Wait while the streams hold more than `storage.max_heads_size` (the flusher is
    writing what was cut); WalWriteError (503) when no room comes in `HEADS_WAIT_S`."""
    store = ctx.store
    if store.over_memory() and not await asyncio.to_thread(store.wait_for_room,
                                                           HEADS_WAIT_S):
        raise WalWriteError(
            f"the heads hold more than storage.max_heads_size "
            f"({store.memory.max_heads_bytes} bytes) and chunks are not being written")


async def commit(ctx: ServerContext, record: PushRecord, rej: Rejections) -> Stored:
    """Store what validation kept; returns once it is durable and queryable. Raises
    RateLimited or WalWriteError, in which case nothing of it was stored. Lines the heads
    refuse are added to `rej`; the stream objects the tenant's stream limit or per-stream
    rate limit refused are in `Stored.refused` (the rest is stored)."""
    tenant = record.tenant
    limits = ctx.limits_for(tenant)
    strategy = limits.ingestion_rate_strategy
    if record.blocks and not ctx.rate.allow(tenant, record.nbytes, limits.ingestion_rate_mb,
                                            limits.ingestion_burst_size_mb, strategy=strategy):
        ctx.metrics.lines_rejected.labels(tenant, "rate_limited").inc(record.lines)
        raise RateLimited(ctx.rate.message(tenant, record.lines, record.nbytes,
                                           limits.ingestion_rate_mb, strategy))
    for reason, n in rej.counts.items():
        ctx.metrics.lines_rejected.labels(tenant, reason).inc(n)
    # Cluster mode: the cluster's active streams (every ingester's, shared through KV).
    board = ctx.cluster_ops.streams if ctx.cluster_ops is not None else None
    adm = ctx.streams.admit(tenant, record.blocks, board or ctx.store,
                            limits.max_global_streams_per_user)
    try:
        kept = set(adm.keep)
        refused = [(i, Refused(b, "stream_limit", stream_limit_message(b.labels, tenant)))
                   for i, b in enumerate(record.blocks) if i not in kept]
        keep = adm.keep
        if limits.per_stream_rate_limit:
            keep, over = _over_stream_rate(ctx, tenant, record.blocks, keep, limits)
            refused += over
        refused.sort(key=lambda r: r[0])
        for _, x in refused:
            ctx.metrics.lines_rejected.labels(tenant, x.reason).inc(len(x.block))
        if refused:
            record = record.subset(keep)
        if not record.blocks:
            return Stored(refused=[x for _, x in refused])
        if ctx.cluster is not None:
            applied = await _publish(ctx, record)
            if board is not None:
                board.admitted(tenant, adm.reserved)
        else:
            await room_in_heads(ctx)
            applied = await asyncio.wrap_future(ctx.store.ingest(record))
    finally:
        ctx.streams.release(adm)
    lines, nbytes = record.lines, record.nbytes
    for h in applied.rejections:
        rej.add(h.reason, len(h), h.detail())
        ctx.metrics.lines_rejected.labels(tenant, h.reason).inc(len(h))
        lines -= len(h)
        nbytes -= h.lines.nbytes
    ctx.metrics.lines_received.labels(tenant).inc(lines)
    ctx.metrics.bytes_received.labels(tenant).inc(nbytes)
    if ctx.cluster is None:  # cluster mode: every node's tail relay hands it to its hub
        ctx.hub.publish(tenant, applied.blocks)
    if ctx.patterns is not None:  # mined later, elsewhere: never waits
        if applied.rejections or applied.duplicates:  # rare: only what the heads took
            taken = PushRecord(tenant, applied.blocks)
            ctx.patterns.offer(taken.encode(), taken.lines)
        else:
            ctx.patterns.offer(record.encode(), lines)  # the WAL's bytes, made once
    return Stored(lines, applied, [x for _, x in refused])


async def _publish(ctx: ServerContext, record: PushRecord) -> Applied:
    """Cluster mode: stored means acked by JetStream (every partition's part); the
    ingesters apply it to their heads afterwards (lines they refuse as too far behind
    are counted there: `sluiceway_cluster_refused_lines_total`)."""
    assert ctx.cluster is not None
    try:
        await ctx.cluster.publish(record)
    except ClusterError as exc:
        raise WalWriteError(str(exc)) from None
    return Applied(blocks=list(record.blocks))


def loki_rejected(_request: Request, rej: Rejections, stored: int) -> Response:
    """Loki's answer when some lines were not stored: 400 naming them (the rest is)."""
    return bad(rej.message(stored))


async def loki_ingest(request: Request, decode: Decoder,
                      rejected: Callable[[Request, Rejections, int], Response] = loki_rejected
                      ) -> Response:
    """Read the body, run `decode` on it in an ingest worker, and store the result,
    answering as Loki's push endpoint does; `rejected` answers when some lines were not
    stored (the route's protocol may say that differently)."""
    ctx = ctx_of(request)
    tenant = ctx.tenants(request.headers, allow_many=False)[0]
    async with ctx.inflight.push(declared_size(request)) as held:
        return await _loki_ingest(ctx, request, tenant, decode, rejected, held)


async def _loki_ingest(ctx: ServerContext, request: Request, tenant: str, decode: Decoder,
                       rejected: Callable[[Request, Rejections, int], Response],
                       held: Ticket) -> Response:
    limits = ctx.limits_for(tenant)
    max_body = ctx.cfg.server.max_body_size
    try:
        body = await read_body(request, max_body)
        held.add(len(body) - held.bytes)
        prepared = await ctx.pool.run(decode, tenant, body, request.headers.get("content-type"),
                                      request.headers.get("content-encoding"), max_body,
                                      limits, time.time_ns())
        held.add(len(prepared.payload))
    except BodyTooLarge as exc:  # a WireError too: first
        return bad(str(exc), 413)
    except (WireError, PushError) as exc:
        return bad(str(exc))
    rej = prepared.rejections
    try:
        # Inline, not in a thread: the record's lines stay in the worker's bytes.
        stored = await commit(ctx, prepared.record(), rej)
    except RateLimited as exc:
        return bad(str(exc), 429)
    except PayloadTooLarge as exc:  # cluster mode: a line past NATS's max_payload
        return bad(str(exc), 413)
    except WalWriteError as exc:
        log.error("push not stored: %s", exc)
        return bad(f"could not store the batch, retry later: {exc}", 503)
    if not stored.refused:
        # The ledger: the push's numbered lines that were stored, durable before the
        # answer (a refused stream makes the shipper send the push again: noted then).
        done = ctx.ledger.stored(tenant, request.headers.get(LEDGER_HEADER), stored.lines,
                                 stored.lines + rej.total)
        if done is not None:
            try:
                await asyncio.wrap_future(done)
            except OSError as exc:
                log.error("push stored, its ledger record not: %s", exc)
                return bad(f"could not record the batch in the ledger, retry later: {exc}",
                           503)
    if stored.refused:
        # Loki's answer is that of the last stream refused. Unlike Loki (whose answer is
        # that of the last stream it processed), any refusal is a 429: shippers retry it,
        # and a 400 for other lines would make them drop these.
        return bad(stored.refused[-1].message, 429)
    if rej.total:
        return rejected(request, rej, stored.lines)
    return Response(status_code=204)


def declared_size(request: Request) -> int:
    """A request's Content-Length (0 when it has none)."""
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else 0
