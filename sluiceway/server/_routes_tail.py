"""`GET /loki/api/v1/tail` (websocket): the history since `start`, then every new line.

As in Loki, a tail that cannot run is accepted and then closed with code 1011 and the
reason (`max_concurrent_tail_requests`, or the history query past `query_timeout`);
bad parameters close it with 1008.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from sluiceway.logql import (
    Expr,
    LevelRules,
    LogExpr,
    QueryError,
    QueryParams,
    QueryResult,
    QueryTimeout,
    Stream,
    StreamsResult,
    evaluate,
    parse,
)
from sluiceway.model import EntryBlock
from sluiceway.server._context import ServerContext, bad, ctx_of
from sluiceway.server._params import (
    ParamError,
    parse_limit,
    parse_seconds_or_duration,
    parse_time,
)
from sluiceway.server._querier import StoreSource
from sluiceway.server._tail import BlocksSource, TailLimitExceeded, TailSession

router = APIRouter()
log = logging.getLogger("sluiceway.server")


@dataclass(frozen=True, slots=True)
class _TailRequest:
    expr: Expr
    tenants: list[str]
    limit: int
    delay_s: float
    start: int


def _tenant(ctx: ServerContext, ws: WebSocket) -> list[str]:
    """One tenant, as Loki's tail takes: `a|b` is a ParamError (400) even with
    multi-tenant queries enabled. Browsers cannot set headers on a websocket: `orgId`
    stands in for X-Scope-OrgID."""
    orgid = ws.query_params.get("orgId")
    if "x-scope-orgid" in ws.headers or not orgid:
        return ctx.tenants(ws.headers, allow_many=False)
    return ctx.tenant_ids(orgid, allow_many=False)


def _tail_request(ctx: ServerContext, ws: WebSocket) -> _TailRequest:
    p = dict(ws.query_params)
    delay = parse_seconds_or_duration(p.get("delay_for") or "0", "delay_for")
    if delay > 5:
        raise ParamError("delay_for can't be greater than 5")
    tenants = _tenant(ctx, ws)
    limits = ctx.read_limits(tenants)
    now = time.time_ns()
    start = parse_time(p.get("start"), now - 3600 * 10**9, "start")
    if limits.max_query_lookback:  # the history reaches no further back
        start = max(start, now - int(limits.max_query_lookback * 1e9))
    return _TailRequest(
        expr=parse(p.get("query") or ""),
        tenants=tenants,
        limit=parse_limit(p.get("limit"), 100, limits.max_entries_limit_per_query),
        delay_s=delay,
        start=start)


@router.websocket("/loki/api/v1/tail")
async def tail(ws: WebSocket) -> None:
    ctx = ctx_of(ws)
    try:
        _tenant(ctx, ws)
    except PermissionError as exc:  # auth_enabled and no tenant: 401 before the upgrade
        await ws.send_denial_response(bad(str(exc), 401))
        return
    except ParamError as exc:  # answered before the upgrade, as Loki does
        await ws.send_denial_response(bad(str(exc)))
        return
    await ws.accept()
    session: TailSession | None = None
    try:
        req = _tail_request(ctx, ws)
        selector = req.expr.matchers if isinstance(req.expr, LogExpr) else ()
        session = ctx.hub.open(req.tenants, selector)  # before the history: no line missed
        await _session(ctx, ws, req, session)
    except WebSocketDisconnect:
        return
    except (ParamError, QueryError) as exc:
        await ws.close(code=1008, reason=_reason(exc))
    except (TailLimitExceeded, QueryTimeout) as exc:
        await ws.close(code=1011, reason=_reason(exc))
    finally:
        if session is not None:
            ctx.hub.close(session)  # its buffer goes with it
            if session.dropped_total:
                log.warning("live tail for tenant(s) %s ended; %d entries were dropped "
                            "because the client did not keep up", ",".join(session.tenants),
                            session.dropped_total)


def _reason(exc: Exception) -> str:
    """A close frame's reason holds at most 123 bytes."""
    return str(exc).encode()[:123].decode("utf-8", "ignore")


async def _session(ctx: ServerContext, ws: WebSocket, req: _TailRequest,
                   session: TailSession) -> None:
    watcher = asyncio.create_task(_until_disconnect(ws))
    limits = ctx.read_limits(req.tenants)
    cap = ctx.template_cap(limits)
    try:
        hist = await run_in_threadpool(evaluate, StoreSource(ctx.store), req.expr, QueryParams(
            tenants=req.tenants, start=req.start, end=time.time_ns() + 1, limit=req.limit,
            direction="backward", max_line_size=cap, deadline=ctx.deadline(limits),
            levels=ctx.level_rules(limits)))
        first = _streams(hist)
        # A line pushed while the history query ran is in both: send it once.
        sent = {(t, line) for s in first for t, line, _ in s.entries}
        if first:  # Loki sends no frame for an empty history
            await ws.send_text(_frame(first))
        while True:
            get = asyncio.ensure_future(session.next())
            done, _ = await asyncio.wait({get, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:  # the client went away
                get.cancel()
                return
            item = get.result()
            if req.delay_s:
                await asyncio.sleep(req.delay_s)
            streams: list[Stream] = []
            if item is not None:
                streams = await _live(req.expr, item.tenant, item.blocks, sent, cap,
                                      ctx.level_rules(ctx.limits_for(item.tenant)))
            dropped = session.take_dropped()
            if streams or dropped:
                await ws.send_text(_frame(streams, dropped))
            if item is not None:
                session.done(item)
    finally:
        watcher.cancel()


def _streams(res: QueryResult) -> list[Stream]:
    if not isinstance(res.data, StreamsResult):  # the expression is a log query
        raise QueryError("tail needs a log query")
    return res.data.streams


async def _live(expr: Expr, tenant: str, blocks: list[EntryBlock],
                sent: set[tuple[int, str]], max_line_size: int,
                levels: LevelRules | None) -> list[Stream]:
    # `limit` bounds the history only; every new line that matches is sent.
    everything = max(1, sum(len(b) for b in blocks))
    res = await run_in_threadpool(evaluate, BlocksSource(tenant, blocks), expr, QueryParams(
        tenants=[tenant], start=0, end=2**62, limit=everything, direction="forward",
        max_line_size=max_line_size, levels=levels))
    streams = _streams(res)
    if sent:
        streams = [Stream(s.labels, [e for e in s.entries if (e[0], e[1]) not in sent])
                   for s in streams]
        streams = [s for s in streams if s.entries]
    return streams


def _frame(streams: list[Stream], dropped: list[dict[str, Any]] | None = None) -> str:
    """Loki's tail frame (the result written in Loki's JSON here, at the edge): one stream
    object per entry, oldest first, and the entries dropped since the last frame
    (`dropped_entries`, only when there are some)."""
    entries = [(t, s.labels, [str(t), line] if extra is None else [str(t), line, extra])
               for s in streams for t, line, extra in s.entries]
    entries.sort(key=lambda e: e[0])
    frame: dict[str, Any] = {"streams": [{"stream": labels, "values": [v]}
                                         for _, labels, v in entries]}
    if dropped:
        frame["dropped_entries"] = dropped
    return orjson.dumps(frame).decode()


async def _until_disconnect(ws: WebSocket) -> None:
    """Returns when the tail client closes; it sends nothing else we need."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
