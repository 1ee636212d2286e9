"""Loki's delete API: `POST|PUT /loki/api/v1/delete` makes a request, `GET` lists the
tenant's requests, `DELETE ?request_id=` cancels one not yet processed; and
`GET /loki/api/v1/cache/generation_numbers`. As in Loki these exist only with
`compactor.retention_enabled` (404 otherwise), and a tenant whose `deletion_mode` is
`disabled` gets 403. Requests are kept by the store (`Store.deletes`); their lines are
left out of reads at once and removed by the compactor after the cancel period."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from sluiceway.model import format_go_duration, parse_duration
from sluiceway.server._context import JSONResponse, ServerContext, bad, ctx_of
from sluiceway.server._deletion import delete_times, parse_delete_query
from sluiceway.server._params import ParamError
from sluiceway.store import DISABLED, RECEIVED, DeleteRequest

router = APIRouter()
PATH = "/loki/api/v1/delete"
NOT_AVAILABLE = "deletion is not available for this tenant"
NO_API = ("404 page not found: the delete API needs compactor.retention_enabled: true "
          "(as in Loki)")


def _tenant(ctx: ServerContext, request: Request) -> str | Response:
    """The request's tenant, or the answer when the API is not there for it."""
    if not ctx.cfg.compactor.retention_enabled:
        return bad(NO_API, 404)
    tenant = ctx.tenants(request.headers, False)[0]
    if ctx.limits_for(tenant).deletion_mode == DISABLED:
        return bad(NOT_AVAILABLE, 403)
    return tenant


def _interval(max_interval: str | None, has_filter: bool, lo: int, hi: int,
              limit_s: float) -> None:
    """Loki's checks of `max_interval` (it splits requests with line filters into
    pieces; here a request is one piece, so only the checks remain)."""
    if not has_filter:
        return
    span_ms = hi - lo
    if not max_interval:
        if span_ms < 1000:
            raise ParamError("difference between start time and end time must be at least "
                             "one second")
        return
    try:
        secs = parse_duration(max_interval)
    except ValueError:
        secs = 0.0
    if secs < 1:
        raise ParamError("invalid max_interval: valid time units are 's', 'm', 'h'")
    if limit_s and secs > limit_s:
        limit = format_go_duration(round(limit_s * 1e9))
        raise ParamError(f"max_interval can't be greater than {limit}")
    if secs * 1000 > span_ms:
        raise ParamError("max_interval can't be greater than the interval to be deleted "
                         f"({format_go_duration(span_ms * 1_000_000)})")


def _seconds(ms: int) -> int | float:
    """Loki's JSON of a `model.Time`: Unix seconds, the milliseconds as a fraction."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _json(req: DeleteRequest) -> dict[str, object]:
    return {"request_id": req.id, "start_time": _seconds(req.start_ms),
            "end_time": _seconds(req.end_ms), "query": req.query, "status": req.status,
            "created_at": _seconds(round(req.created * 1000)), "user_id": ""}


@router.api_route(PATH, methods=["POST", "PUT"])
async def create(request: Request) -> Response:
    ctx = ctx_of(request)
    tenant = _tenant(ctx, request)
    if isinstance(tenant, Response):
        return tenant
    p = request.query_params  # Loki reads the URL's parameters only
    query = p.get("query", "")
    expr = parse_delete_query(query)
    now = time.time()
    lo, hi = delete_times(p.get("start"), p.get("end"), int(now * 1000))
    _interval(p.get("max_interval"), bool(expr.stages), lo, hi,
              ctx.cfg.compactor.delete_max_interval)
    try:
        req = await run_in_threadpool(ctx.store.deletes.add, tenant, query, lo, hi, now)
    except OSError as exc:
        return bad(f"the delete request could not be stored: {exc}", 500)
    return Response(status_code=204, headers={"X-Delete-Request-Id": req.id})


@router.get(PATH)
async def list_requests(request: Request) -> Response:
    ctx = ctx_of(request)
    tenant = _tenant(ctx, request)
    if isinstance(tenant, Response):
        return tenant
    reqs = ctx.store.deletes.requests(tenant)
    return JSONResponse([_json(r) for r in reqs], media_type="application/json")


@router.delete(PATH)
async def cancel(request: Request) -> Response:
    ctx = ctx_of(request)
    tenant = _tenant(ctx, request)
    if isinstance(tenant, Response):
        return tenant
    rid = request.query_params.get("request_id", "")
    req = ctx.store.deletes.get(tenant, rid)
    if req is None:
        return bad("could not find delete request with given id", 404)
    if req.status != RECEIVED:
        return bad("deletion of request which is in process or already processed is not "
                   "allowed")
    try:
        await run_in_threadpool(ctx.store.deletes.cancel, tenant, rid)
    except OSError as exc:
        return bad(f"the delete request could not be cancelled: {exc}", 500)
    return Response(status_code=204)


@router.get("/loki/api/v1/cache/generation_numbers")
async def generation_numbers(request: Request) -> Response:
    """Loki's cache generation of the tenant (a JSON string): here the store's, which
    delete requests, compaction and retention move."""
    ctx = ctx_of(request)
    tenant = _tenant(ctx, request)
    if isinstance(tenant, Response):
        return tenant
    return JSONResponse(str(ctx.store.generation), media_type="application/json")
