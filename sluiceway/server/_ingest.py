"""What every ingest route (Loki push, OTLP, Elasticsearch `_bulk`) does around its own
decoder: read the body within the size limit, then — once a worker has prepared the WAL
record — the out-of-order check, the tenant rate limit, the stream limit, the durable WAL
write, the heads, metrics and live tail. `loki_ingest` adds Loki's answers (204, 400, 413,
429, 503)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request, Response

from sluiceway.model import LEDGER_HEADER, EntryBlock, fingerprint
from sluiceway.server._body import read_body
from sluiceway.server._config import LimitsSection
from sluiceway.server._context import ServerContext, bad, ctx_of
from sluiceway.server._distributor import Decoder, PushError, Validated, finish_push, wal_record
from sluiceway.server._ratelimit import entry_sizes, stream_rate_message
from sluiceway.server._streamlimit import stream_limit_message
from sluiceway.store import WalWriteError
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


def _over_stream_rate(ctx: ServerContext, tenant: str, blocks: list[EntryBlock],
                      limits: LimitsSection) -> tuple[list[EntryBlock], list[Refused]]:
    kept: list[EntryBlock] = []
    refused: list[Refused] = []
    rate, burst = limits.per_stream_rate_limit, limits.per_stream_rate_limit_burst
    for b in blocks:
        sizes = entry_sizes(b)
        if ctx.stream_rate.allow(tenant, fingerprint(b.labels), int(sizes.sum()), rate, burst):
            kept.append(b)
        else:
            refused.append(Refused(b, "per_stream_rate_limit",
                                   stream_rate_message(tenant, b, sizes, rate)))
    return kept, refused


async def commit(ctx: ServerContext, tenant: str, v: Validated, payload: bytes,
                 crc: int) -> list[Refused]:
    """Store what validation kept; returns once it is durable and queryable. Raises
    RateLimited or WalWriteError, in which case nothing of it was stored. Returns the
    stream objects the tenant's stream limit or per-stream rate limit refused, in push
    order (the rest is stored; `v` is updated to what was)."""
    limits = ctx.limits_for(tenant)
    if v.blocks and not ctx.rate.allow(tenant, v.bytes, limits.ingestion_rate_mb,
                                       limits.ingestion_burst_size_mb):
        ctx.metrics.lines_rejected.labels(tenant, "rate_limited").inc(v.lines)
        raise RateLimited(ctx.rate.message(tenant, v.lines, v.bytes, limits.ingestion_rate_mb))
    for reason, n in v.rejected.items():
        ctx.metrics.lines_rejected.labels(tenant, reason).inc(n)
    adm = ctx.streams.admit(tenant, v.blocks, ctx.store, limits.max_global_streams_per_user)
    try:
        refused = [Refused(b, "stream_limit", stream_limit_message(b.labels, tenant))
                   for b in adm.refused]
        kept = adm.blocks
        if limits.per_stream_rate_limit:
            kept, over = _over_stream_rate(ctx, tenant, kept, limits)
            refused += over
        if refused:
            order = {id(b): i for i, b in enumerate(v.blocks)}
            refused.sort(key=lambda r: order[id(r.block)])
            for r in refused:
                ctx.metrics.lines_rejected.labels(tenant, r.reason).inc(len(r.block))
            v.blocks = kept
            v.lines = sum(len(b) for b in v.blocks)
            v.bytes = sum(b.nbytes for b in v.blocks)
            payload, crc = wal_record(tenant, v.blocks)
        if not v.blocks:
            return refused
        await asyncio.wrap_future(ctx.store.push(tenant, v.blocks, payload, crc))
    finally:
        ctx.streams.release(adm)
    ctx.metrics.lines_received.labels(tenant).inc(v.lines)
    ctx.metrics.bytes_received.labels(tenant).inc(v.bytes)
    ctx.hub.publish(tenant, v.blocks)
    return refused


def loki_rejected(_request: Request, v: Validated) -> Response:
    """Loki's answer when some lines were not stored: 400 naming them (the rest is)."""
    return bad(v.message())


async def loki_ingest(request: Request, decode: Decoder,
                      rejected: Callable[[Request, Validated], Response] = loki_rejected
                      ) -> Response:
    """Read the body, run `decode` on it in an ingest worker, and store the result,
    answering as Loki's push endpoint does; `rejected` answers when validation dropped
    some lines (the route's protocol may say that differently)."""
    ctx = ctx_of(request)
    tenant = ctx.tenants(request.headers, allow_many=False)[0]
    limits = ctx.limits_for(tenant)
    max_body = ctx.cfg.server.max_body_size
    try:
        body = await read_body(request, max_body)
        prepared = await ctx.pool.run(decode, tenant, body, request.headers.get("content-type"),
                                      request.headers.get("content-encoding"), max_body,
                                      limits, time.time_ns())
    except BodyTooLarge as exc:  # a WireError too: first
        return bad(str(exc), 413)
    except (WireError, PushError) as exc:
        return bad(str(exc))
    # Inline, not in a thread: tens of microseconds (no line is touched unless the
    # out-of-order check drops some), cheaper than two thread hand-offs per push.
    v, payload, crc = finish_push(tenant, prepared, limits, ctx.store)
    try:
        refused = await commit(ctx, tenant, v, payload, crc)
    except RateLimited as exc:
        return bad(str(exc), 429)
    except WalWriteError as exc:
        log.error("push not stored: %s", exc)
        return bad(f"could not store the batch, retry later: {exc}", 503)
    if not refused:
        # The ledger: the push's numbered lines that were stored, durable before the
        # answer (a refused stream makes the shipper send the push again: noted then).
        done = ctx.ledger.stored(tenant, request.headers.get(LEDGER_HEADER), v.lines,
                                 v.lines + v.total_rejected)
        if done is not None:
            try:
                await asyncio.wrap_future(done)
            except OSError as exc:
                log.error("push stored, its ledger record not: %s", exc)
                return bad(f"could not record the batch in the ledger, retry later: {exc}",
                           503)
    if refused:
        # Loki's answer is that of the last stream refused. Unlike Loki (whose answer is
        # that of the last stream it processed), any refusal is a 429: shippers retry it,
        # and a 400 for other lines would make them drop these.
        return bad(refused[-1].message, 429)
    if v.total_rejected:
        return rejected(request, v)
    return Response(status_code=204)
