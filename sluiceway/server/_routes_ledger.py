"""`GET /sluiceway/api/v1/ledger`: every numbered line stored, lost, in flight, or
unexplained, per source and epoch and in total (`server/_ledger.py`)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from sluiceway.server._context import JSONResponse, bad, ctx_of
from sluiceway.server._params import ParamError, parse_duration_ns, parse_time

router = APIRouter()


def window(since: str | None, until: str | None, now_ns: int) -> tuple[float | None, float]:
    """`until`: a time (default now); `since`: a time, or a duration back from `until`
    (`24h`). Seconds; ParamError (400) for anything else."""
    end = parse_time(until, now_ns, "until")
    start: int | None = None
    if since:
        try:
            start = parse_time(since, 0, "since")
        except ParamError:
            try:
                start = end - parse_duration_ns(since, "since")
            except ParamError:
                raise ParamError(f"invalid since parameter {since!r}: use a time (Unix "
                                 "seconds, nanoseconds or RFC3339) or a duration such as "
                                 "24h") from None
        if start >= end:
            raise ParamError("since must be before until")
    return (None if start is None else start / 1e9), end / 1e9


@router.get("/sluiceway/api/v1/ledger")
async def ledger(request: Request) -> Response:
    ctx = ctx_of(request)
    tenants = ctx.tenants(request.headers, allow_many=True)
    q = request.query_params
    unknown = sorted(set(q) - {"since", "until"})
    if unknown:
        return bad(f"unknown parameter {unknown[0]!r}: the ledger takes since and until")
    since, until = window(q.get("since"), q.get("until"), time.time_ns())
    return JSONResponse({"status": "success",
                         "data": ctx.ledger.answer(tenants, since, until)})
