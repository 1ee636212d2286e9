"""`sluiceway query`: run LogQL against a server over HTTP, like Loki's `logcli query`.

Log queries print one entry per line (`default`: time, labels, line; `raw`: the line;
`jsonl`: one JSON object each), fetched in batches so `--limit` may exceed what the
server returns at once. Metric queries print a table. `--tail` follows the websocket
`/loki/api/v1/tail`. Exit codes: 0 ok, 1 server or connection error, 2 bad input.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections import deque
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import orjson
import typer

from sluiceway.logcli._common import (
    DEFAULT_ADDR,
    Addr,
    CliError,
    From,
    OrgId,
    Output,
    Since,
    To,
    check_addr,
    client,
    get_data,
    label_text,
    paint,
    parse_span,
    rfc3339,
    run_command,
    time_range,
)
from sluiceway.logql import LogExpr, QueryError, parse

BATCH = 1000
_PALETTE = ("31", "32", "33", "34", "35", "36", "91", "92", "93", "94", "95", "96")
Entry = tuple[int, dict[str, str], str]


def is_metric(query: str) -> bool:
    """Parsed locally only to pick the endpoint; a query that does not parse goes to the
    server anyway, so the user sees the server's own error message."""
    try:
        return not isinstance(parse(query), LogExpr)
    except QueryError:
        return not query.lstrip().startswith("{")


def _human_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def print_stats(answers: list[dict[str, Any]]) -> None:
    """`--stats`: the summed stats of every request, on stderr (as logcli prints them)."""
    def total(group: str, *path: str) -> float:
        out = 0.0
        for a in answers:
            v: Any = a.get(group, {})
            for k in path:
                v = v.get(k, 0) if isinstance(v, dict) else 0
            out += float(v or 0)
        return out

    secs = total("summary", "execTime")
    nbytes, lines = total("summary", "totalBytesProcessed"), total("summary",
                                                                    "totalLinesProcessed")
    read = total("querier", "store", "totalChunksDownloaded")
    # Our servers say how many blocks their filters ruled out and how many were counted
    # from block metadata; for Loki, every chunk referenced and not downloaded.
    has_ours = any("totalBlocksSkippedByFilter" in a.get("summary", {}) for a in answers)
    skipped = total("summary", "totalBlocksSkippedByFilter") if has_ours else (
        total("querier", "store", "totalChunksRef") - read)
    rows = [
        ("Summary.BytesProcessedPerSecond", _human_bytes(nbytes / secs if secs else 0) + "/s"),
        ("Summary.LinesProcessedPerSecond", f"{lines / secs if secs else 0:.0f}"),
        ("Summary.TotalBytesProcessed", _human_bytes(nbytes)),
        ("Summary.TotalLinesProcessed", f"{lines:.0f}"),
        ("Summary.TotalPostFilterLines", f"{total('summary', 'totalPostFilterLines'):.0f}"),
        ("Summary.TotalEntriesReturned", f"{total('summary', 'totalEntriesReturned'):.0f}"),
        ("Summary.Splits", f"{total('summary', 'splits'):.0f}"),
        ("Summary.ExecTime", f"{secs:.3f}s"),
        ("Querier.Store.BlocksRead", f"{read:.0f}"),
        ("Querier.Store.BlocksSkipped", f"{skipped:.0f}"),
        ("Querier.Store.BlocksFromMetadata",
         f"{total('summary', 'totalBlocksFromMetadata'):.0f}"),
        ("Index.TotalStreams", f"{total('index', 'totalStreams'):.0f}"),
        ("Requests", str(len(answers))),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=sys.stderr)


def entries_of(data: dict[str, Any]) -> list[Entry]:
    return [(int(v[0]), stream["stream"], v[1]) for stream in data["result"]
            for v in stream["values"]]


def fetch_logs(client: httpx.Client, query: str, start: int, end: int, limit: int,
               forward: bool, batch_size: int = BATCH,
               stats: list[dict[str, Any]] | None = None) -> Iterator[Entry]:
    """Up to `limit` entries in direction order, in batches; entries sharing the
    timestamp where one batch ends are de-duplicated when the next batch repeats them."""
    sent = 0
    edge: set[tuple[int, str, str]] = set()
    while sent < limit:
        # The batch repeats the entries at the previous edge timestamp: ask for that many more.
        want = min(batch_size, limit - sent) + len(edge)
        data = get_data(client, "/loki/api/v1/query_range", {
            "query": query, "start": start, "end": end, "limit": want,
            "direction": "forward" if forward else "backward"}, stats)
        batch = sorted(entries_of(data), key=lambda e: e[0], reverse=not forward)
        fresh = [e for e in batch if _entry_id(e) not in edge]
        for e in fresh[: limit - sent]:
            yield e
            sent += 1
        if len(batch) < want or not fresh:
            return
        last = batch[-1][0]
        edge = {_entry_id(e) for e in batch if e[0] == last}
        if forward:
            start = last
        else:
            end = last + 1


def _entry_id(e: Entry) -> tuple[int, str, str]:
    return e[0], repr(sorted(e[1].items())), e[2]


# --- output --------------------------------------------------------------------------


def format_entry(e: Entry, output: Output, color: bool) -> str:
    ts, labels, line = e
    if output is Output.raw:
        return line
    if output is Output.jsonl:
        return orjson.dumps({"labels": labels, "line": line,
                             "timestamp": rfc3339(ts)}).decode()
    lab = label_text(labels)
    code = _PALETTE[zlib.crc32(lab.encode()) % len(_PALETTE)]
    return f"{paint(rfc3339(ts), '2', color)} {paint(lab, code, color)} {line}"


def metric_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(time, labels, value) rows of a matrix, vector or scalar result."""
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":  # Loki writes milliseconds here, the docs say seconds: take both
        t = float(result[0])
        return [(rfc3339(int(round(t * (1 if t > 1e11 else 1000))) * 10**6), "", result[1])]
    rows = []
    for s in result:
        points = s["values"] if kind == "matrix" else [s["value"]]
        for t, v in points:
            rows.append((rfc3339(int(round(float(t) * 1000)) * 10**6),
                         label_text(s["metric"]), v))
    return rows


def print_metric(data: dict[str, Any], output: Output, color: bool) -> None:
    if output is Output.raw:
        print(orjson.dumps({"resultType": data["resultType"],
                            "result": data["result"]}).decode())
        return
    rows = metric_rows(data)
    if output is Output.jsonl:
        for t, lab, v in rows:
            print(orjson.dumps({"timestamp": t, "labels": lab, "value": v}).decode())
        return
    head = ("TIME", "LABELS", "VALUE")
    widths = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(2)]
    print(paint(f"{head[0]:<{widths[0]}}  {head[1]:<{widths[1]}}  {head[2]}", "1", color))
    for t, lab, v in rows:
        print(f"{t:<{widths[0]}}  {lab:<{widths[1]}}  {v}")


# --- tail ----------------------------------------------------------------------------


def tail_url(addr: str, params: dict[str, Any]) -> str:
    parts = urlsplit(check_addr(addr).rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path + "/loki/api/v1/tail",
                       urlencode(params), ""))


class _Recent:
    """Ids of the last entries printed by a tail. A line pushed while the server runs the
    history query can come in both the history frame and the live feed; exact
    duplicates (same time, labels and line) are one entry in Loki, so print it once."""

    def __init__(self, size: int = 10_000) -> None:
        self.order: deque[tuple[int, str, str]] = deque()
        self.ids: set[tuple[int, str, str]] = set()
        self.size = size

    def add(self, key: tuple[int, str, str]) -> bool:
        if key in self.ids:
            return False
        self.ids.add(key)
        self.order.append(key)
        if len(self.order) > self.size:
            self.ids.discard(self.order.popleft())
        return True


def tail(addr: str, org_id: str | None, params: dict[str, Any], output: Output,
         color: bool) -> None:
    from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
    from websockets.sync.client import connect

    headers = {"X-Scope-OrgID": org_id} if org_id else {}
    seen = _Recent()
    try:
        with connect(tail_url(addr, params), additional_headers=headers,
                     open_timeout=10) as ws:
            for raw in ws:
                msg = orjson.loads(raw)
                for e in sorted(entries_of({"result": msg.get("streams") or []}),
                                key=lambda e: e[0]):
                    if seen.add(_entry_id(e)):
                        print(format_entry(e, output, color), flush=True)
                for d in msg.get("dropped_entries") or []:
                    print(f"dropped entry: {label_text(d['labels'])} {d['timestamp']}",
                          file=sys.stderr)
    except ConnectionClosedOK as exc:
        if exc.rcvd is not None and exc.rcvd.code != 1000:
            raise CliError(f"server closed the tail: {exc.rcvd.reason}") from None
    except ConnectionClosed as exc:
        reason = exc.rcvd.reason if exc.rcvd is not None else str(exc)
        raise CliError(f"server closed the tail: {reason}") from None
    except InvalidStatus as exc:
        raise CliError(f"server answered {exc.response.status_code}: "
                       f"{exc.response.body.decode(errors='replace').strip()}") from None
    except OSError as exc:
        raise CliError(f"cannot connect to {addr}: {exc}") from None


# --- the command ---------------------------------------------------------------------


Opt = typer.Option


def query(
    logql: Annotated[str, typer.Argument(metavar="QUERY",
                                         help="LogQL, e.g. '{app=\"api\"} |= \"error\"'")],
    addr: Addr = DEFAULT_ADDR,
    org_id: OrgId = None,
    from_: From = None,
    to: To = None,
    since: Since = "1h",
    limit: Annotated[int, Opt("--limit", min=0, help="Log entries to print at most.")] = 30,
    forward: Annotated[bool, Opt("--forward", help="Oldest entries first.")] = False,
    output: Annotated[Output, Opt("--output", "-o",
                                  help="default, raw or jsonl.")] = Output.default,
    no_color: Annotated[bool, Opt("--no-color", help="Never colour the output.")] = False,
    do_tail: Annotated[bool, Opt("--tail", "-t", help="Follow new lines (websocket).")] = False,
    delay_for: Annotated[int, Opt("--delay-for", min=0, max=5,
                                  help="Tail delay, seconds.")] = 0,
    step: Annotated[str | None, Opt("--step", help="Metric query step, e.g. 30s.")] = None,
    instant: Annotated[bool, Opt("--instant", help="Metric query evaluated at --to "
                                 "only.")] = False,
    batch: Annotated[int, Opt("--batch", min=1, help="Entries per request when "
                              "paging through --limit.")] = BATCH,
    stats: Annotated[bool, Opt("--stats", help="Print the query's statistics (bytes and "
                               "lines processed, blocks read and skipped) on stderr.")] = False,
) -> None:
    """Run a LogQL query against a Sluiceway (or Loki) server, like `logcli query`."""
    color = not no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    run_command(lambda: _query(logql, addr, org_id, from_, to, since, limit, forward, output,
                               color, do_tail, delay_for, step, instant, batch, stats))


def _query(logql: str, addr: str, org_id: str | None, from_: str | None, to: str | None,
           since: str, limit: int, forward: bool, output: Output, color: bool,
           do_tail: bool, delay_for: int, step: str | None, instant: bool,
           batch: int = BATCH, want_stats: bool = False) -> None:
    start, end = time_range(from_, to, since)
    answers: list[dict[str, Any]] | None = [] if want_stats else None
    try:
        _run_query(logql, addr, org_id, start, end, limit, forward, output, color, do_tail,
                   delay_for, step, instant, batch, answers)
    finally:
        if answers:
            print_stats(answers)


def _run_query(logql: str, addr: str, org_id: str | None, start: int, end: int, limit: int,
               forward: bool, output: Output, color: bool, do_tail: bool, delay_for: int,
               step: str | None, instant: bool, batch: int,
               answers: list[dict[str, Any]] | None) -> None:
    if do_tail:
        tail(addr, org_id, {"query": logql, "limit": limit, "delay_for": delay_for,
                            "start": start}, output, color)
        return
    with client(addr, org_id) as c:
        if instant:
            print_metric(get_data(c, "/loki/api/v1/query", {"query": logql, "time": end},
                                  answers), output, color)
            return
        if is_metric(logql):
            params: dict[str, Any] = {"query": logql, "start": start, "end": end}
            if step:
                params["step"] = f"{parse_span(step, '--step'):g}"
            print_metric(get_data(c, "/loki/api/v1/query_range", params, answers), output,
                         color)
            return
        for e in fetch_logs(c, logql, start, end, limit, forward, batch, answers):
            print(format_entry(e, output, color))
