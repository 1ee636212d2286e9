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

from sluiceway.model import EntryBlock, PushRecord
from sluiceway.server._body import read_body
from sluiceway.server._context import ServerContext, bad, ctx_of
from sluiceway.server._distributor import Decoder, PushError, Rejections
from sluiceway.server._streamlimit import stream_limit_message
from sluiceway.store import Applied, WalWriteError
from sluiceway.wire import BodyTooLarge, WireError

log = logging.getLogger("sluiceway.server")


class RateLimited(Exception):
    """The tenant is over its ingestion rate: nothing stored (HTTP 429, retryable)."""


@dataclass(slots=True)
class Stored:
    """What `commit` did: `lines` stored (exact duplicates count as stored, as in Loki),
    what the heads did, and the blocks of streams the tenant's stream limit refused."""

    lines: int = 0
    applied: Applied | None = None
    refused: list[EntryBlock] = field(default_factory=list)


async def commit(ctx: ServerContext, record: PushRecord, rej: Rejections) -> Stored:
    """Store what validation kept; returns once it is durable and queryable. Raises
    RateLimited or WalWriteError, in which case nothing of it was stored. Lines the heads
    refuse are added to `rej`."""
    tenant = record.tenant
    if record.blocks and not ctx.rate.allow(tenant, record.nbytes):
        ctx.metrics.lines_rejected.labels(tenant, "rate_limited").inc(record.lines)
        raise RateLimited(ctx.rate.message(tenant, record.lines, record.nbytes))
    for reason, n in rej.counts.items():
        ctx.metrics.lines_rejected.labels(tenant, reason).inc(n)
    adm = ctx.streams.admit(tenant, record.blocks, ctx.store)
    if adm.refused:
        ctx.metrics.lines_rejected.labels(tenant, "stream_limit").inc(
            sum(len(b) for b in adm.refused))
        record = record.subset(adm.keep)
    if not record.blocks:
        ctx.streams.release(adm)
        return Stored(refused=adm.refused)
    try:
        applied = await asyncio.wrap_future(ctx.store.ingest(record))
    finally:
        ctx.streams.release(adm)
    lines, nbytes = record.lines, record.nbytes
    for r in applied.rejections:
        rej.add(r.reason, len(r), r.detail())
        ctx.metrics.lines_rejected.labels(tenant, r.reason).inc(len(r))
        lines -= len(r)
        nbytes -= r.lines.nbytes
    ctx.metrics.lines_received.labels(tenant).inc(lines)
    ctx.metrics.bytes_received.labels(tenant).inc(nbytes)
    ctx.hub.publish(tenant, applied.blocks)
    return Stored(lines, applied, adm.refused)


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
    max_body = ctx.cfg.server.max_body_size
    try:
        body = await read_body(request, max_body)
        prepared = await ctx.pool.run(decode, tenant, body, request.headers.get("content-type"),
                                      request.headers.get("content-encoding"), max_body,
                                      ctx.limits, time.time_ns())
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
    except WalWriteError as exc:
        log.error("push not stored: %s", exc)
        return bad(f"could not store the batch, retry later: {exc}", 503)
    if stored.refused:
        # Loki's answer names the last stream refused. Unlike Loki (whose answer is that
        # of the last stream it processed), any refusal is a 429: shippers retry it,
        # and a 400 for other lines would make them drop these.
        return bad(stream_limit_message(stored.refused[-1].labels, tenant), 429)
    if rej.total:
        return rejected(request, rej, stored.lines)
    return Response(status_code=204)
