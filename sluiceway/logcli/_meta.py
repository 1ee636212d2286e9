"""`sluiceway labels`, `series`, `volume` and `volume_range`, as logcli names them.

    sluiceway labels                      # label names
    sluiceway labels job                  # values of `job`
    sluiceway series '{job="api"}' --analyze-labels
    sluiceway volume '{job=~".+"}' --targetLabels job
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from typing import Annotated, Any

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
    client,
    get_data,
    label_text,
    parse_span,
    run_command,
    table,
    time_range,
)
from sluiceway.logcli._query import print_metric

Opt = typer.Option
Quiet = Annotated[bool, Opt("--quiet", "-q", help="Print nothing but the answer.")]


def labels(
    label: Annotated[str | None, typer.Argument(
        metavar="LABEL", help="Print the values of this label instead of label names.",
        show_default=False)] = None,
    addr: Addr = DEFAULT_ADDR,
    org_id: OrgId = None,
    from_: From = None,
    to: To = None,
    since: Since = "1h",
    query: Annotated[str | None, Opt(
        "--query", help="Only streams of this selector, e.g. '{job=\"api\"}'.")] = None,
    quiet: Quiet = False,
) -> None:
    """List label names, or the values of one label, like `logcli labels`."""
    def body() -> None:
        start, end = time_range(from_, to, since)
        path = "/loki/api/v1/labels" if label is None else f"/loki/api/v1/label/{label}/values"
        params: dict[str, Any] = {"start": start, "end": end}
        if query:
            params["query"] = query
        with client(addr, org_id) as c:
            if not quiet:
                print(f"{c.base_url}{path}", file=sys.stderr)
            data = get_data(c, path, params)
        for name in data or []:
            print(name)
    run_command(body)


def analyze(series: list[dict[str, str]]) -> str:
    """logcli's `--analyze-labels`: per label, distinct values and streams that have it."""
    values: dict[str, set[str]] = defaultdict(set)
    found: dict[str, int] = defaultdict(int)
    for s in series:
        for k, v in s.items():
            values[k].add(v)
            found[k] += 1
    rows = sorted(values, key=lambda k: (-len(values[k]), k))
    out = [f"Total Streams:  {len(series)}", f"Unique Labels:  {len(values)}", ""]
    out.append(table([("Label Name", "Unique Values", "Found In Streams"),
                      *((k, str(len(values[k])), str(found[k])) for k in rows)]))
    return "\n".join(out)


def series(
    matcher: Annotated[str, typer.Argument(metavar="MATCHER",
                                           help="Stream selector, e.g. '{job=\"api\"}'.")],
    addr: Addr = DEFAULT_ADDR,
    org_id: OrgId = None,
    from_: From = None,
    to: To = None,
    since: Since = "1h",
    analyze_labels: Annotated[bool, Opt(
        "--analyze-labels", help="Summarise the labels: distinct values and streams per "
        "label (to find the one that makes too many streams).")] = False,
    quiet: Quiet = False,
) -> None:
    """List the streams of a selector, like `logcli series`."""
    def body() -> None:
        start, end = time_range(from_, to, since)
        with client(addr, org_id) as c:
            if not quiet:
                print(f"{c.base_url}/loki/api/v1/series", file=sys.stderr)
            data = get_data(c, "/loki/api/v1/series",
                            [("match[]", matcher), ("start", start), ("end", end)])
        found = [dict(s) for s in data or []]
        if analyze_labels:
            print(analyze(found))
            return
        for s in found:
            print(label_text(s))
    run_command(body)


def _volume(path: str, query: str, addr: str, org_id: str | None, from_: str | None,
            to: str | None, since: str, limit: int, target_labels: str | None,
            aggregate_by: str, step: str | None, output: Output, quiet: bool) -> None:
    if aggregate_by not in ("series", "labels"):
        raise CliError(f"invalid --aggregateBy {aggregate_by!r}: series or labels", 2)
    start, end = time_range(from_, to, since)
    params: dict[str, Any] = {"query": query, "start": start, "end": end, "limit": limit,
                              "aggregateBy": aggregate_by}
    if target_labels:
        params["targetLabels"] = target_labels
    if step is not None:
        params["step"] = f"{parse_span(step, '--step'):g}"
    with client(addr, org_id) as c:
        if not quiet:
            print(f"{c.base_url}{path}", file=sys.stderr)
        data = get_data(c, path, params)
    if not isinstance(data, dict) or "result" not in data:
        raise CliError(f"unexpected answer: {orjson.dumps(data).decode()[:200]}")
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    print_metric(data, output, color)


Limit = Annotated[int, Opt("--limit", min=1, help="Series to return at most.")]
TargetLabels = Annotated[str | None, Opt(
    "--targetLabels", help="Comma-separated labels to aggregate the volume by.")]
AggregateBy = Annotated[str, Opt("--aggregateBy", help="series or labels.")]
OutputOpt = Annotated[Output, Opt("--output", "-o", help="default, raw or jsonl.")]


def volume(
    query: Annotated[str, typer.Argument(metavar="QUERY",
                                         help="Stream selector, e.g. '{job=~\".+\"}'.")],
    addr: Addr = DEFAULT_ADDR,
    org_id: OrgId = None,
    from_: From = None,
    to: To = None,
    since: Since = "1h",
    limit: Limit = 100,
    target_labels: TargetLabels = None,
    aggregate_by: AggregateBy = "series",
    output: OutputOpt = Output.default,
    quiet: Quiet = False,
) -> None:
    """Bytes stored per stream (or per label) in a time range, like `logcli volume`."""
    run_command(lambda: _volume("/loki/api/v1/index/volume", query, addr, org_id, from_, to,
                                since, limit, target_labels, aggregate_by, None, output, quiet))


def volume_range(
    query: Annotated[str, typer.Argument(metavar="QUERY",
                                         help="Stream selector, e.g. '{job=~\".+\"}'.")],
    addr: Addr = DEFAULT_ADDR,
    org_id: OrgId = None,
    from_: From = None,
    to: To = None,
    since: Since = "1h",
    limit: Limit = 100,
    target_labels: TargetLabels = None,
    aggregate_by: AggregateBy = "series",
    step: Annotated[str | None, Opt("--step", help="Resolution, e.g. 5m.")] = None,
    output: OutputOpt = Output.default,
    quiet: Quiet = False,
) -> None:
    """Bytes stored per stream over time, like `logcli volume_range`."""
    run_command(lambda: _volume("/loki/api/v1/index/volume_range", query, addr, org_id,
                                from_, to, since, limit, target_labels, aggregate_by, step,
                                output, quiet))
