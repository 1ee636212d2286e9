"""Operations: readiness, Prometheus metrics, build info, flush, compaction, memory,
heartbeats."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse

from sluiceway import __version__
from sluiceway.model import HeartbeatRefused, parse_heartbeat
from sluiceway.server._body import read_body
from sluiceway.server._context import JSONResponse, bad, ctx_of
from sluiceway.server._memory import memory_report
from sluiceway.server._params import parse_seconds_or_duration
from sluiceway.store import ChunkWriteError
from sluiceway.wire import BodyTooLarge

router = APIRouter()


@router.get("/ready")
async def ready(request: Request) -> Response:
    ctx = ctx_of(request)
    if ctx.cluster is not None and not ctx.cluster.ready.is_set():
        return PlainTextResponse("waiting for NATS (cluster mode)\n", status_code=503)
    if ctx.opened_store is None or not ctx.store.ready:
        return PlainTextResponse("starting\n", status_code=503)
    return PlainTextResponse("ready\n")


@router.get("/metrics")
async def prom_metrics(request: Request) -> Response:
    return Response(generate_latest(ctx_of(request).metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


@router.get("/loki/api/v1/status/buildinfo")
async def buildinfo() -> Response:
    return JSONResponse({"version": __version__, "revision": "", "branch": "main",
                         "buildDate": "", "buildUser": "", "goVersion": "",
                         "application": "sluiceway"})


@router.post("/flush")
async def flush(request: Request) -> Response:
    """Write every head to chunks now: 204 once all are written, 503 when some could not
    be (disk full): their data stays in memory and in the WAL, and the store retries."""
    try:
        await run_in_threadpool(ctx_of(request).store.flush_all)
    except ChunkWriteError as exc:
        return bad(str(exc), 503)
    return Response(status_code=204)


@router.post("/sluiceway/api/v1/compact")
async def compact(request: Request) -> Response:
    """Run a compaction pass now (garbage, the orphan sweep, chunk compaction, delete
    requests past their cancel period, index compaction); `min_age` (duration) overrides
    the configured age."""
    age = request.query_params.get("min_age")
    min_age = parse_seconds_or_duration(age, "min_age") if age else None
    r = await run_in_threadpool(ctx_of(request).store.compact, min_age)
    return JSONResponse({"status": "success", "data": {
        "chunks_in": r.chunks_in, "chunks_out": r.chunks_out, "bytes_in": r.bytes_in,
        "bytes_out": r.bytes_out, "lines_deleted": r.lines_deleted,
        "orphans_deleted": r.orphans_deleted, "orphan_bytes_deleted": r.orphan_bytes_deleted,
        "orphans_kept": r.orphans_kept,
        "seconds": round(r.seconds, 3)}})


@router.get("/sluiceway/api/v1/storage")
async def storage(request: Request) -> Response:
    return JSONResponse({"status": "success", "data": ctx_of(request).store.disk_usage()})


@router.get("/sluiceway/api/v1/memory")
async def memory(request: Request) -> Response:
    """What each part of the server holds (now, peak, bound) and its processes' RSS."""
    return JSONResponse({"status": "success", "data": memory_report(ctx_of(request))})


@router.post("/sluiceway/api/v1/heartbeat")
async def heartbeat(request: Request) -> Response:
    """Keep the card of (tenant, id): 204; 400 bad JSON or several tenants, 401 no tenant
    with auth on, 409 another process's card, 413 too large, 429 tenant full."""
    ctx = ctx_of(request)
    tenant = ctx.tenants(request.headers, allow_many=False)[0]
    try:
        body = await read_body(request, ctx.cfg.server.heartbeat_max_size)
        hb = parse_heartbeat(body)
        ctx.pipeline.record(tenant, hb)
        ctx.ledger.reported(tenant, str(hb["id"]), hb)
        if ctx.cluster_ops is not None:  # every node's pipeline page shows it
            ctx.cluster_ops.heartbeats.publish(tenant, hb)
    except BodyTooLarge as exc:
        return bad(f"{exc} (server.heartbeat_max_size)", 413)
    except HeartbeatRefused as exc:
        return bad(str(exc), exc.status)
    return Response(status_code=204)


@router.get("/cluster/status")
async def cluster_status(request: Request) -> Response:
    """The cluster as this node sees it (`sluiceway.cluster.ClusterStatus`); a single
    node says `mode: single`; 503 while a cluster node is not connected yet."""
    ctx = ctx_of(request)
    if ctx.cluster is None:
        return JSONResponse({"status": "success", "data": {"mode": "single"}})
    ops = ctx.cluster_ops
    if ops is None:
        return bad("not ready: cluster mode is not connected to NATS yet", 503)
    return JSONResponse({"status": "success",
                         "data": await run_in_threadpool(ops.status.snapshot)})


@router.get("/sluiceway/api/v1/pipeline")
async def pipeline(request: Request) -> Response:
    """The cards of the caller's tenant (several with multi-tenant queries enabled)."""
    ctx = ctx_of(request)
    cards = ctx.pipeline.snapshot(ctx.tenants(request.headers, allow_many=True))
    return JSONResponse({"status": "success", "data": cards})
