"""Table-driven log queries over the shared data set, checked against plain-Python oracles.

Each case pairs a query with an oracle: a small independent function from one entry
(stream labels, line, structured metadata) to its expected (labels, line), or None when
the entry must not appear. The expected response is then built the way Loki builds
it (order by direction, cut at limit, group by final label set) and compared exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from sluiceway.logql import QueryParams, evaluate
from sluiceway.model import format_labels
from tests.logql.conftest import HOUR, TENANT, Dataset

Labels = dict[str, str]
Oracle = Callable[[Labels, str, Labels | None], tuple[Labels, str] | None]

_LOGFMT = re.compile(r'(\w+)=(?:"([^"]*)"|(\S*))')


def base(stream: Labels, md: Labels | None) -> Labels:
    return {**stream, **(md or {})}


def js(stream: Labels, line: str) -> Labels:
    """| json on the api lines: flat objects, `level` collides with the stream label."""
    out = {}
    for k, v in json.loads(line).items():
        out[k + "_extracted" if k in stream else k] = str(v)
    return out


def lf(line: str) -> Labels:
    return {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
            for m in _LOGFMT.finditer(line)}


def dur(text: str) -> float:
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    return float(text[:-1])


def keep_if(cond: Callable[[Labels, str, Labels | None], bool]) -> Oracle:
    return lambda s, ln, md: (base(s, md), ln) if cond(s, ln, md) else None


def json_then(cond: Callable[[Labels], bool], fmt: Callable[[Labels, str], str] | None = None,
              only: Callable[[Labels], Labels] | None = None) -> Oracle:
    def run(s: Labels, ln: str, md: Labels | None) -> tuple[Labels, str] | None:
        if s["app"] != "api":
            return None
        labels = {**base(s, md), **js(s, ln)}
        if not cond(labels):
            return None
        out = fmt(labels, ln) if fmt else ln
        return (only(labels) if only else labels), out

    return run


def logfmt_then(cond: Callable[[Labels], bool], fmt: Callable[[Labels, str], str] | None = None,
                only: Callable[[Labels], Labels] | None = None) -> Oracle:
    def run(s: Labels, ln: str, md: Labels | None) -> tuple[Labels, str] | None:
        if s["app"] != "worker":
            return None
        labels = {**base(s, md), **lf(ln)}
        if not cond(labels):
            return None
        out = fmt(labels, ln) if fmt else ln
        return (only(labels) if only else labels), out

    return run


def app(name: str) -> Callable[[Labels, str, Labels | None], bool]:
    return lambda s, ln, md: s["app"] == name


def wk(cond: Callable[[str], bool]) -> Oracle:
    return keep_if(lambda s, ln, md: s["app"] == "worker" and cond(ln))


def api(cond: Callable[[str], bool]) -> Oracle:
    return keep_if(lambda s, ln, md: s["app"] == "api" and cond(ln))


def _no_err_json_labels(s: Labels, md: Labels | None) -> Labels:
    return base(s, md)


CASES: list[tuple[str, Oracle]] = [
    # stream selectors
    ('{app="api"}', keep_if(app("api"))),
    ('{app="api", level="error"}', keep_if(lambda s, ln, md: s.get("level") == "error")),
    ('{app=~"api|worker"}', keep_if(lambda s, ln, md: True)),
    ('{env="prod", app!="api"}', keep_if(lambda s, ln, md: s == {"app": "worker", "env": "prod"})),
    ('{app="worker", env!~"pr.*"}', keep_if(lambda s, ln, md: s.get("env") == "staging")),
    ('{app=~"w.*", env=~"staging|nope"}', keep_if(lambda s, ln, md: s.get("env") == "staging")),
    ('{app="api", level!="info"}', keep_if(lambda s, ln, md: s.get("level") == "error")),
    ('{level=~".+"}', keep_if(app("api"))),
    # line filters
    ('{app="api"} |= "login"', api(lambda ln: "login" in ln)),
    ('{app="api"} != "login"', api(lambda ln: "login" not in ln)),
    ('{app="api"} |= "login" or "cart"', api(lambda ln: "login" in ln or "cart" in ln)),
    ('{app="api"} != "login" or "cart"', api(lambda ln: "login" not in ln and "cart" not in ln)),
    ('{app="api"} |= "login" |= "GET"', api(lambda ln: "login" in ln and "GET" in ln)),
    ('{app="api"} |= "login" != "GET"', api(lambda ln: "login" in ln and "GET" not in ln)),
    ('{app="api"} |~ "status\\":50[23]"', api(lambda ln: re.search(r'status":50[23]', ln)
                                             is not None)),
    ('{app="api"} !~ "GET|POST"', api(lambda ln: False)),
    ('{app="api"} |~ "(?i)get"', api(lambda ln: "GET" in ln)),
    ('{app="api"} |~ "(?i)DB: CONNECTION"', api(lambda ln: "db: connection" in ln)),
    ('{app="api"} |~ "duration_ms\\":[0-9]{4}"',
     api(lambda ln: re.search(r'duration_ms":[0-9]{4}', ln) is not None)),
    ('{app="api"} |~ "/api/(cart|users)"', api(lambda ln: "/api/cart" in ln
                                               or "/api/users" in ln)),
    ('{app="api"} !~ "status\\":2.."', api(lambda ln: re.search(r'status":2..', ln) is None)),
    ('{app="worker"} |= "queue=emails" |= "retry"',
     wk(lambda ln: "queue=emails" in ln and "retry" in ln)),
    ('{app="worker"} |= "" ', wk(lambda ln: True)),
    ('{app="worker"} |= "nothing-like-this"', wk(lambda ln: False)),
    ('{app="worker"} |> "<_> queue=emails <_>"', wk(lambda ln: " queue=emails " in ln)),
    ('{app="worker"} !> "level=info <_>"', wk(lambda ln: not ln.startswith("level=info "))),
    ('{app="worker"} |> "level=warn <_>" or "level=debug <_>"',
     wk(lambda ln: ln.startswith(("level=warn ", "level=debug ")))),
    ('{app="worker", env="staging"} |= "ünïcödé"', wk(lambda ln: "ünïcödé" in ln)),
    ('{app="worker", env="staging"} |~ "seq=1[0-9] "', wk(lambda ln: re.search(r"seq=1[0-9] ", ln)
                                                         is not None)),
    ('{app="worker"} |~ "job_id=10[0-2]\\\\d"', wk(lambda ln: re.search(r"job_id=10[0-2]\d", ln)
                                                   is not None)),
    ('{app="worker"} |= `msg="job done"`', wk(lambda ln: 'msg="job done"' in ln)),
    ('{app="api"} |= ip("10.0.0.0/8")', api(lambda ln: False)),
    ('{app="api"} != ip("10.0.0.0/8")', api(lambda ln: True)),
    # stream and metadata label filters without a parser
    ('{app="api"} | level="error"', keep_if(lambda s, ln, md: s.get("level") == "error")),
    ('{app="api"} | trace_id=~".+"', keep_if(lambda s, ln, md: md is not None)),
    ('{app="api"} | trace_id=""', keep_if(lambda s, ln, md: s["app"] == "api" and not md)),
    ('{app="api"} | decolorize', keep_if(app("api"))),
    # json
    ('{app="api"} | json', json_then(lambda lb: True)),
    ('{app="api"} | json | status >= 500', json_then(lambda lb: int(lb["status"]) >= 500)),
    ('{app="api"} | json | status == 200', json_then(lambda lb: lb["status"] == "200")),
    ('{app="api"} | json | status = 304', json_then(lambda lb: lb["status"] == "304")),
    ('{app="api"} | json | status != 200 and method="GET"',
     json_then(lambda lb: lb["status"] != "200" and lb["method"] == "GET")),
    ('{app="api"} | json | duration_ms > 1000 or status = 304',
     json_then(lambda lb: int(lb["duration_ms"]) > 1000 or lb["status"] == "304")),
    ('{app="api"} | json | duration_ms > 1.5e3',
     json_then(lambda lb: int(lb["duration_ms"]) > 1500)),
    ('{app="api"} | json | status > 250 and status < 400',
     json_then(lambda lb: 250 < int(lb["status"]) < 400)),
    ('{app="api"} | json | status > 250, status < 400',
     json_then(lambda lb: 250 < int(lb["status"]) < 400)),
    ('{app="api"} | json | status > 250 status < 400',
     json_then(lambda lb: 250 < int(lb["status"]) < 400)),
    ('{app="api"} | json | (status = 500 or status = 502) and path="/api/login"',
     json_then(lambda lb: lb["status"] in ("500", "502") and lb["path"] == "/api/login")),
    ('{app="api"} | json | path=~"/api/(cart|orders)"',
     json_then(lambda lb: lb["path"] in ("/api/cart", "/api/orders"))),
    ('{app="api"} | json | path!~"/api/.*s"', json_then(lambda lb: not lb["path"].endswith("s"))),
    ('{app="api"} | json | error="upstream timeout"',
     json_then(lambda lb: lb.get("error") == "upstream timeout")),
    ('{app="api"} | json | error!=""', json_then(lambda lb: bool(lb.get("error")))),
    ('{app="api"} | json | __error__=""', json_then(lambda lb: True)),
    ('{app="api"} | json | level_extracted="error"', json_then(lambda lb: lb["level"] == "error")),
    ('{app="api"} | json method, code="status"',
     json_then(lambda lb: True, only=lambda lb: {**{k: lb[k] for k in ("app", "env", "level")},
                                                 **({"trace_id": lb["trace_id"]}
                                                    if "trace_id" in lb else {}),
                                                 "method": lb["method"], "code": lb["status"]})),
    ('{app="api"} | json m="method" | m="GET"', json_then(
        lambda lb: lb["method"] == "GET",
        only=lambda lb: {**{k: v for k, v in lb.items() if k in ("app", "env", "level",
                                                                 "trace_id")}, "m": "GET"})),
    ('{app="api"} | json | keep level_extracted, status', json_then(
        lambda lb: True, only=lambda lb: {"level_extracted": lb["level_extracted"],
                                          "status": lb["status"]})),
    ('{app="api"} | json | keep app, status=~"5.."', json_then(
        lambda lb: True, only=lambda lb: {"app": "api", **({"status": lb["status"]}
                                                           if lb["status"][0] == "5" else {})})),
    ('{app="api"} | json | drop method, path, duration_ms, error, level_extracted', json_then(
        lambda lb: True, only=lambda lb: {k: v for k, v in lb.items() if k not in (
            "method", "path", "duration_ms", "error", "level_extracted")})),
    ('{app="api"} | json | drop status="200"', json_then(
        lambda lb: True, only=lambda lb: {k: v for k, v in lb.items()
                                          if not (k == "status" and v == "200")})),
    ('{app="api"} | json | line_format "{{.method}} {{.path}}"',
     json_then(lambda lb: True, fmt=lambda lb, ln: f"{lb['method']} {lb['path']}")),
    ('{app="api"} | json | line_format "{{ .method | lower }} {{ .status }}" |= "get 304"',
     json_then(lambda lb: lb["method"] == "GET" and lb["status"] == "304",
               fmt=lambda lb, ln: "get 304")),
    ('{app="api"} | json | status >= 500 | line_format "{{.status}}: {{.error}}"',
     json_then(lambda lb: int(lb["status"]) >= 500,
               fmt=lambda lb, ln: f"{lb['status']}: {lb['error']}")),
    ('{app="api"} | json | line_format "{{ __line__ | trunc 9 }}"',
     json_then(lambda lb: True, fmt=lambda lb, ln: ln[:9])),
    ('{app="api"} | json | line_format "{{ .path | replace \\"/api/\\" \\"\\" }}"',
     json_then(lambda lb: True, fmt=lambda lb, ln: lb["path"][5:])),
    ('{app="api"} | json | line_format `{{ regexReplaceAll "/api/(.*)" .path "${1}!" }}`',
     json_then(lambda lb: True, fmt=lambda lb, ln: lb["path"][5:] + "!")),
    ('{app="api"} | json | line_format `{{ .error | default "none" }}`',
     json_then(lambda lb: True, fmt=lambda lb, ln: lb.get("error", "none"))),
    ('{app="api"} | json | line_format `{{ printf "%s-%d" .method 7 }}`',
     json_then(lambda lb: True, fmt=lambda lb, ln: f"{lb['method']}-7")),
    ('{app="api"} | json | line_format `{{ printf "%5s|%-6s|" .status .method }}`',
     json_then(lambda lb: True, fmt=lambda lb, ln: f"{lb['status']:>5}|{lb['method']:<6}|")),
    ('{app="api"} | json | line_format `{{ if ge .status "500" }}E{{ else }}ok{{ end }}`',
     json_then(lambda lb: True, fmt=lambda lb, ln: "E" if int(lb["status"]) >= 500 else "ok")),
    ('{app="api"} | json | line_format `{{ .path | ToUpper | trunc -5 }}`',
     json_then(lambda lb: True, fmt=lambda lb, ln: lb["path"].upper()[-5:])),
    ('{app="api"} | json | label_format route=path | keep route',
     json_then(lambda lb: True, only=lambda lb: {"route": lb["path"]})),
    ('{app="api"} | json | label_format s="{{.status}}-{{.method}}" | keep s, status',
     json_then(lambda lb: True, only=lambda lb: {"s": f"{lb['status']}-{lb['method']}",
                                                 "status": lb["status"]})),
    # not packed by Promtail (no `_entry` key): unpack leaves the entry alone, as Loki does
    ('{app="api"} | unpack', keep_if(app("api"))),
    # logfmt
    ('{app="worker"} | logfmt', logfmt_then(lambda lb: True)),
    ('{app="worker"} | logfmt | level="warn"', logfmt_then(lambda lb: lb["level"] == "warn")),
    ('{app="worker"} | logfmt | duration > 4s',
     logfmt_then(lambda lb: "duration" in lb and dur(lb["duration"]) > 4)),
    ('{app="worker"} | logfmt | duration <= 500ms',
     logfmt_then(lambda lb: "duration" in lb and dur(lb["duration"]) <= 0.5)),
    ('{app="worker"} | logfmt | duration >= 1s and duration < 2s',
     logfmt_then(lambda lb: "duration" in lb and 1 <= dur(lb["duration"]) < 2)),
    ('{app="worker"} | logfmt | job_id >= 1050', logfmt_then(
        lambda lb: "job_id" in lb and int(lb["job_id"]) >= 1050)),
    ('{app="worker"} | logfmt | seq < 3', logfmt_then(
        lambda lb: "seq" in lb and int(lb["seq"]) < 3)),
    ('{app="worker"} | logfmt q="queue"', logfmt_then(
        lambda lb: True, only=lambda lb: {"app": "worker", "env": lb["env"],
                                          **({"q": lb["queue"]} if "queue" in lb else {})})),
    ('{app="worker"} | logfmt level, n="node"', logfmt_then(
        lambda lb: True, only=lambda lb: {"app": "worker", "env": lb["env"],
                                          "level": lb["level"],
                                          **({"n": lb["node"]} if "node" in lb else {})})),
    ('{app="worker"} | logfmt --strict | msg="job done"',
     logfmt_then(lambda lb: lb["msg"] == "job done")),
    ('{app="worker"} | logfmt --keep-empty | level="debug"',
     logfmt_then(lambda lb: lb["level"] == "debug")),
    ('{app="worker"} | logfmt | keep queue', logfmt_then(
        lambda lb: True, only=lambda lb: {"queue": lb["queue"]} if "queue" in lb else {})),
    ('{app="worker"} | logfmt | drop msg, duration, note', logfmt_then(
        lambda lb: True, only=lambda lb: {k: v for k, v in lb.items()
                                          if k not in ("msg", "duration", "note")})),
    ('{app="worker"} | logfmt | drop level="info"', logfmt_then(
        lambda lb: True, only=lambda lb: {k: v for k, v in lb.items()
                                          if not (k == "level" and v == "info")})),
    ('{app="worker"} | logfmt | drop level=~"info|debug", env!="prod"', logfmt_then(
        lambda lb: True, only=lambda lb: {k: v for k, v in lb.items() if not (
            (k == "level" and v in ("info", "debug")) or (k == "env" and v != "prod"))})),
    ('{app="worker"} | logfmt | label_format lvl=level', logfmt_then(
        lambda lb: True, only=lambda lb: {**{k: v for k, v in lb.items() if k != "level"},
                                          "lvl": lb["level"]})),
    ('{app="worker"} | logfmt | label_format lvl="{{ .level | ToUpper }}"', logfmt_then(
        lambda lb: True, only=lambda lb: {**lb, "lvl": lb["level"].upper()})),
    ('{app="worker"} | logfmt | msg="job done", queue="emails"',
     logfmt_then(lambda lb: lb["msg"] == "job done" and lb.get("queue") == "emails")),
    ('{app="worker"} | logfmt | msg="job done" queue="emails"',
     logfmt_then(lambda lb: lb["msg"] == "job done" and lb.get("queue") == "emails")),
    ('{app="worker"} | logfmt | (queue="emails" or queue="reports") and level="warn"',
     logfmt_then(lambda lb: lb.get("queue") in ("emails", "reports") and lb["level"] == "warn")),
    ('{app="worker"} | logfmt | queue="emails" or level="debug" and seq > 30',
     logfmt_then(lambda lb: lb.get("queue") == "emails"
                 or (lb["level"] == "debug" and int(lb.get("seq", "0")) > 30))),
    ('{app="worker"} | logfmt | line_format "{{.level}}/{{.node}}"',
     logfmt_then(lambda lb: True, fmt=lambda lb, ln: f"{lb['level']}/{lb.get('node', '')}")),
    ('{app="worker", env="staging"} | logfmt | line_format "{{.note}}"',
     logfmt_then(lambda lb: lb["env"] == "staging", fmt=lambda lb, ln: lb["note"])),
    ('{app="worker"} | logfmt | line_format `{{ if eq .level "warn" }}W{{ else if eq .level '
     '"debug" }}D{{ else }}-{{ end }}{{.seq}}`',
     logfmt_then(lambda lb: True, fmt=lambda lb, ln: {"warn": "W", "debug": "D"}.get(
         lb["level"], "-") + lb.get("seq", ""))),
    ('{app="worker"} | logfmt | line_format "{{.msg}}" |= "retry"',
     logfmt_then(lambda lb: "retry" in lb["msg"], fmt=lambda lb, ln: lb["msg"])),
    ('{app="worker"} | logfmt | line_format "{{.msg}}" |~ "^job"',
     logfmt_then(lambda lb: lb["msg"].startswith("job"), fmt=lambda lb, ln: lb["msg"])),
    # regexp and pattern
    ('{app="worker", env="prod"} | regexp "job_id=(?P<job>\\\\d+) queue=(?P<queue>\\\\w+)"',
     logfmt_then(lambda lb: lb["env"] == "prod", only=lambda lb: {
         "app": "worker", "env": "prod", "job": lb["job_id"], "queue": lb["queue"]})),
    ('{app="worker"} | regexp "seq=(?P<seq>\\\\d+)" | seq > 35', logfmt_then(
        lambda lb: int(lb.get("seq", "0")) > 35,
        only=lambda lb: {"app": "worker", "env": lb["env"], "seq": lb["seq"]})),
    ('{app="worker"} | pattern "level=<level> msg=\\"<msg>\\" <_>"', logfmt_then(
        lambda lb: True, only=lambda lb: {"app": "worker", "env": lb["env"],
                                          "level": lb["level"], "msg": lb["msg"]})),
    ('{app="worker"} | pattern "<_> queue=<q> duration=<d>" | d > 4.5s', logfmt_then(
        lambda lb: "duration" in lb and dur(lb["duration"]) > 4.5,
        only=lambda lb: {"app": "worker", "env": "prod", "q": lb["queue"],
                         "d": lb["duration"]})),
    # errors
    ('{app="worker"} | json | __error__!=""', logfmt_then(
        lambda lb: True, only=lambda lb: {"app": "worker", "env": lb["env"],
                                          "__error__": "JSONParserErr"})),
    ('{app="worker"} | json | drop __error_details__', logfmt_then(
        lambda lb: True, only=lambda lb: {"app": "worker", "env": lb["env"],
                                          "__error__": "JSONParserErr"})),
    ('{app="worker"} | json | __error__="JSONParserErr" | drop __error__, __error_details__',
     logfmt_then(lambda lb: True, only=lambda lb: {"app": "worker", "env": lb["env"]})),
    ('{app="worker"} | json | __error__=""', logfmt_then(lambda lb: False)),
    ('{app="worker"} | logfmt | msg > 5 | drop __error_details__', logfmt_then(
        lambda lb: True, only=lambda lb: {**lb, "__error__": "LabelFilterErr"})),
    ('{app="worker"} | logfmt | msg > 5 | __error__="" ', logfmt_then(lambda lb: False)),
    ('{app="worker"} | json | seq > 5', logfmt_then(lambda lb: False)),  # label missing
    ('{app="worker"} | logfmt | duration > 1d', logfmt_then(lambda lb: False)),
    ('{app="worker", env="staging"} | logfmt | note > 1s | drop __error_details__',
     logfmt_then(lambda lb: lb["env"] == "staging",
                 only=lambda lb: {**lb, "__error__": "LabelFilterErr"})),
    ('{app="worker"} | logfmt | nope > 5', logfmt_then(lambda lb: False)),
]

# Cases whose details labels are compared too loosely by the oracles above are stripped of
# `__error_details__` (its text is implementation specific); all others compare exactly.
VARIANTS = [("backward", 1000), ("forward", 1000), ("backward", 7), ("forward", 3)]


def expected(ds: Dataset, oracle: Oracle, direction: str, limit: int) -> list[dict[str, Any]]:
    rows = []
    for stream, ts, line, md in ds.entries:
        got = oracle(stream, line, md)
        if got is not None:
            rows.append((ts, got[0], got[1]))
    rows.sort(key=lambda r: r[0], reverse=direction == "backward")
    groups: dict[str, tuple[Labels, list[list[str]]]] = {}
    for ts, labels, line in rows[:limit]:
        key = format_labels(labels)
        groups.setdefault(key, (labels, []))[1].append([str(ts), line])
    return [{"stream": dict(sorted(lb.items())), "values": v}
            for _, (lb, v) in sorted(groups.items())]


def _strip_details(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for s in result:
        labels = {k: v for k, v in s["stream"].items() if k != "__error_details__"}
        key = format_labels(labels)
        merged.setdefault(key, {"stream": labels, "values": []})["values"].extend(s["values"])
    return [merged[k] for k in sorted(merged)]


@pytest.mark.parametrize("direction,limit", VARIANTS)
@pytest.mark.parametrize("query,oracle", CASES, ids=[c[0] for c in CASES])
def test_log_query(dataset: Dataset, query: str, oracle: Oracle, direction: str,
                   limit: int) -> None:
    params = QueryParams([TENANT], dataset.base, dataset.base + HOUR, limit, direction)
    got = evaluate(dataset.source, query, params).to_loki_json()
    assert got["resultType"] == "streams"
    result = got["result"]
    if any("__error_details__" in s["stream"] for s in result):
        result = _strip_details(result)
    want = expected(dataset, oracle, direction, limit)
    assert result == want
    assert got["stats"]["summary"]["totalEntriesReturned"] == sum(len(s["values"]) for s in want)
