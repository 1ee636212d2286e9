"""`GET /loki/api/v1/tail` (websocket): the history since `start`, then every new line."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from sluiceway.logql import Expr, QueryError, QueryParams, evaluate, parse
from sluiceway.model import EntryBlock
from sluiceway.server._context import ServerContext, bad, ctx_of
from sluiceway.server._params import (
    ParamError,
    parse_limit,
    parse_seconds_or_duration,
    parse_time,
)
from sluiceway.server._querier import StoreSource
from sluiceway.server._tail import BlocksSource

router = APIRouter()


@dataclass(frozen=True, slots=True)
class _TailRequest:
    expr: Expr
    tenants: list[str]
    limit: int
    delay_s: float
    start: int


def _tenants(ctx: ServerContext, ws: WebSocket) -> list[str]:
    """Browsers cannot set headers on a websocket: `orgId` stands in for X-Scope-OrgID."""
    orgid = ws.query_params.get("orgId")
    if "x-scope-orgid" in ws.headers or not orgid:
        return ctx.tenants(ws.headers, allow_many=True)
    return ctx.tenant_ids(orgid, allow_many=True)


def _tail_request(ctx: ServerContext, ws: WebSocket) -> _TailRequest:
    p = dict(ws.query_params)
    delay = parse_seconds_or_duration(p.get("delay_for") or "0", "delay_for")
    if delay > 5:
        raise ParamError("delay_for can't be greater than 5")
    return _TailRequest(
        expr=parse(p.get("query") or ""),
        tenants=_tenants(ctx, ws),
        limit=parse_limit(p.get("limit"), 100, ctx.limits.max_entries_limit_per_query),
        delay_s=delay,
        start=parse_time(p.get("start"), time.time_ns() - 3600 * 10**9, "start"))


@router.websocket("/loki/api/v1/tail")
async def tail(ws: WebSocket) -> None:
    ctx = ctx_of(ws)
    try:
        _tenants(ctx, ws)
    except PermissionError as exc:  # auth_enabled and no tenant: 401 before the upgrade
        await ws.send_denial_response(bad(str(exc), 401))
        return
    except ParamError:
        pass  # closed with its message below, as other bad parameters are
    await ws.accept()
    try:
        await _session(ctx, ws, _tail_request(ctx, ws))
    except WebSocketDisconnect:
        return
    except (ParamError, QueryError) as exc:
        await ws.close(code=1008, reason=str(exc)[:120])


async def _session(ctx: ServerContext, ws: WebSocket, req: _TailRequest) -> None:
    session = ctx.hub.open(req.tenants)  # before the history query: no line falls between
    watcher = asyncio.create_task(_until_disconnect(ws))
    try:
        hist = await run_in_threadpool(evaluate, StoreSource(ctx.store), req.expr, QueryParams(
            tenants=req.tenants, start=req.start, end=time.time_ns() + 1, limit=req.limit,
            direction="backward"))
        first = hist.to_loki_json()
        # A line pushed while the history query ran is in both: send it once.
        sent = {(v[0], v[1]) for s in first["result"] for v in s["values"]}
        if first["result"]:  # Loki sends no frame for an empty history
            await ws.send_text(_frame(first))
        while True:
            get = asyncio.ensure_future(session.queue.get())
            done, _ = await asyncio.wait({get, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:  # the client went away
                get.cancel()
                return
            tenant, blocks = get.result()
            if req.delay_s:
                await asyncio.sleep(req.delay_s)
            msg = await _live(req.expr, tenant, blocks, sent)
            if msg["result"]:
                await ws.send_text(_frame(msg))
    finally:
        watcher.cancel()
        ctx.hub.close(session)


async def _live(expr: Expr, tenant: str, blocks: list[EntryBlock],
                sent: set[tuple[str, str]]) -> dict[str, Any]:
    # `limit` bounds the history only; every new line that matches is sent.
    everything = max(1, sum(len(b) for b in blocks))
    res = await run_in_threadpool(evaluate, BlocksSource(tenant, blocks), expr, QueryParams(
        tenants=[tenant], start=0, end=2**62, limit=everything, direction="forward"))
    msg = res.to_loki_json()
    if sent:
        for s in msg["result"]:
            s["values"] = [v for v in s["values"] if (v[0], v[1]) not in sent]
        msg["result"] = [s for s in msg["result"] if s["values"]]
    return msg


def _frame(data: dict[str, Any]) -> str:
    """Loki's tail frame: one stream object per entry, oldest first."""
    entries = [(int(v[0]), s["stream"], v) for s in data["result"] for v in s["values"]]
    entries.sort(key=lambda e: e[0])
    streams = [{"stream": labels, "values": [v]} for _, labels, v in entries]
    return orjson.dumps({"streams": streams}).decode()


async def _until_disconnect(ws: WebSocket) -> None:
    """Returns when the tail client closes; it sends nothing else we need."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
