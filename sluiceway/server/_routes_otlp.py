"""`POST /otlp/v1/logs` (OTLP/HTTP logs, as Loki 3 serves it): decode in a worker, then
the same store checks, rate limit, WAL and 204 as a Loki push."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request, Response

from sluiceway.server._context import bad, ctx_of
from sluiceway.server._distributor import PushError, finish_push
from sluiceway.server._otlp_ingest import prepare_otlp
from sluiceway.store import WalWriteError
from sluiceway.wire import BodyTooLarge, WireError

log = logging.getLogger("sluiceway.server")
router = APIRouter()


@router.post("/otlp/v1/logs")
async def otlp_logs(request: Request) -> Response:
    ctx = ctx_of(request)
    tenant = ctx.tenants(request.headers, allow_many=False)[0]
    max_body = ctx.cfg.server.max_body_size
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body:
        return bad(f"request body too large: {declared} bytes, limit {max_body}", 413)
    body = await request.body()
    if len(body) > max_body:
        return bad(f"request body too large: {len(body)} bytes, limit {max_body}", 413)
    try:
        prepared = await ctx.pool.run(prepare_otlp, tenant, body,
                                      request.headers.get("content-type"),
                                      request.headers.get("content-encoding"), max_body,
                                      ctx.limits, time.time_ns())
    except BodyTooLarge as exc:  # a WireError too: first
        return bad(str(exc), 413)
    except (WireError, PushError) as exc:
        return bad(str(exc))
    v, payload, crc = finish_push(tenant, prepared, ctx.limits, ctx.store)
    if v.blocks and not ctx.rate.allow(tenant, v.bytes):
        ctx.metrics.lines_rejected.labels(tenant, "rate_limited").inc(v.lines)
        return bad(ctx.rate.message(tenant, v.lines, v.bytes), 429)
    for reason, n in v.rejected.items():
        ctx.metrics.lines_rejected.labels(tenant, reason).inc(n)
    if v.blocks:
        try:
            await asyncio.wrap_future(ctx.store.push(tenant, v.blocks, payload, crc))
        except WalWriteError as exc:
            log.error("OTLP logs not stored: %s", exc)
            return bad(f"could not store the batch, retry later: {exc}", 503)
        ctx.metrics.lines_received.labels(tenant).inc(v.lines)
        ctx.metrics.bytes_received.labels(tenant).inc(v.bytes)
        ctx.hub.publish(tenant, v.blocks)
    if v.total_rejected:
        return bad(v.message())
    return Response(status_code=204)
