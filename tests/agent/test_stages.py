from __future__ import annotations

import time
from typing import Any

import pytest

from sluiceway.agent._config import load_config
from sluiceway.agent._joiners import PARTIAL_WAIT_S
from sluiceway.agent._pipeline import Pipeline, PipelineSpec
from sluiceway.agent._records import Records
from sluiceway.model._timefmt import make_parser


def pipeline(stages: str, labels: dict[str, str] | None = None) -> tuple[PipelineSpec, Pipeline]:
    cfg = load_config(text=f"url: http://x\ninputs: [{{type: stdin, pipeline: {stages}}}]",
                      environ={})
    spec = PipelineSpec(list(cfg.inputs[0].pipeline), labels or {"job": "t"})
    return spec, spec.new()


def recs(lines: list[str], start: int = 0) -> Records:
    r = Records(list(range(1000, 1000 + len(lines))), list(lines))
    offs, pos = [], start
    for line in lines:
        offs.append(pos)
        pos += len(line.encode()) + 1
    r.starts = offs
    return r


def streams(p: Pipeline, r: Records) -> dict[str, list[str]]:
    out = {}
    for piece in p.to_pieces(r):
        out[",".join(f"{k}={v}" for k, v in sorted(piece.labels.items()))] = [
            line.decode() for line in piece.lines]
    return out


def test_json_labels_output_static_labels() -> None:
    _, p = pipeline('[{json: {expressions: {level: level, msg: "msg", user: "ctx.user"}}},'
                    ' {labels: [level]}, {static_labels: {env: prod}}, {output: {source: msg}}]')
    r = p.run(recs(['{"level":"info","msg":"a","ctx":{"user":"u1"}}',
                    '{"level":"error","msg":"b"}', 'not json', '{"msg":"c"}']))
    assert r.fields is not None and r.fields[0]["user"] == "u1"
    assert streams(p, r) == {"env=prod,job=t,level=info": ["a"],
                             "env=prod,job=t,level=error": ["b"],
                             "env=prod,job=t": ["not json", "c"]}


def test_json_all_top_level_fields() -> None:
    _, p = pipeline("[{json: {}}, {labels: [level, code]}]")
    r = p.run(recs(['{"level":"warn","code":503,"nested":{"a":1}}']))
    assert streams(p, r) == {"code=503,job=t,level=warn": ['{"level":"warn","code":503,'
                                                           '"nested":{"a":1}}']}


def test_logfmt_and_regex_and_drop() -> None:
    _, p = pipeline('[{logfmt: {}}, {regex: {expression: "took (?P<ms>\\\\d+)ms"}},'
                    ' {drop: {source: level, expression: "^debug$"}},'
                    ' {labels: {lvl: level}}]')
    r = p.run(recs(['level=info msg="hello world" took 12ms', 'level=debug msg=x',
                    'level=error msg="quoted \\"q\\""']))
    assert r.lines == ['level=info msg="hello world" took 12ms', 'level=error msg="quoted \\"q\\""']
    assert r.fields is not None
    assert r.fields[0] == {"level": "info", "msg": "hello world", "ms": "12"}
    assert r.fields[1]["msg"] == 'quoted "q"'


def test_drop_by_age_and_length_counts() -> None:
    spec, p = pipeline("[{drop: {older_than: 1h}}, {drop: {longer_than: 10}}]")
    now = time.time_ns()
    r = Records([now - 2 * 3600 * 10**9, now, now], ["old", "fresh", "much too long line"])
    out = p.run(r)
    assert out.lines == ["fresh"]
    assert spec.filtered.value == 2


@pytest.mark.parametrize(("fmt", "text", "expected"), [
    ("RFC3339", "2024-01-02T03:04:05.123456789Z", 1704164645123456789),
    ("RFC3339Nano", "2024-01-02T04:04:05+01:00", 1704164645000000000),
    ("Unix", "1704164645", 1704164645000000000),
    ("Unix", "1704164645.5", 1704164645500000000),
    ("UnixMs", "1704164645123", 1704164645123000000),
    ("UnixNs", "1704164645123456789", 1704164645123456789),
    ("2006-01-02 15:04:05.000 -0700", "2024-01-02 04:04:05.250 +0100", 1704164645250000000),
    ("02/Jan/2006:15:04:05 -0700", "02/Jan/2024:03:04:05 +0000", 1704164645000000000),
    ("RFC1123Z", "Tue, 02 Jan 2024 03:04:05 +0000", 1704164645000000000),
])
def test_timestamp_formats(fmt: str, text: str, expected: int) -> None:
    assert make_parser(fmt)(text) == expected


def test_timestamp_stage_fudge_and_skip() -> None:
    _, p = pipeline('[{json: {}}, {timestamp: {source: t, format: Unix}}]')
    r = p.run(recs(['{"t":"100"}', '{"t":"garbage"}', '{"x":1}']))
    assert r.ts == [100 * 10**9, 100 * 10**9 + 1, 100 * 10**9 + 2]
    _, p = pipeline('[{json: {}}, {timestamp: {source: t, format: Unix,'
                    ' action_on_failure: skip}}]')
    r = p.run(recs(['{"t":"100"}', '{"t":"garbage"}']))
    assert r.ts == [100 * 10**9, 1001]


def test_multiline_joins_and_holds_position() -> None:
    spec, p = pipeline("[{multiline: {firstline: '^\\d{4}-', max_wait_time: 100ms}}]")
    lines = ["2024-01-01 boom", "  at a()", "  at b()", "2024-01-01 next", "  at c()"]
    r = recs(lines, start=500)
    out = p.run(r)
    assert out.lines == ["2024-01-01 boom\n  at a()\n  at b()"]
    assert out.starts == [500]
    # the second record is held: the position must not pass its first byte
    assert p.held_from() == r.starts[3]  # type: ignore[index]
    time.sleep(0.15)
    out = p.run(Records.empty())
    assert out.lines == ["2024-01-01 next\n  at c()"]
    assert p.held_from() is None


def test_multiline_max_lines() -> None:
    _, p = pipeline("[{multiline: {firstline: '^START', max_lines: 2}}]")
    out = p.run(recs(["START", "a", "b", "c"]), final=True)
    assert out.lines == ["START\na", "b\nc"]


def test_cri_joins_partials_and_labels_stream() -> None:
    _, p = pipeline("[{cri: {}}]")
    lines = ["2024-01-02T03:04:05.000000001Z stdout P part one ",
             "2024-01-02T03:04:05.000000002Z stdout F and two",
             "2024-01-02T03:04:06Z stderr F oops",
             "2024-01-02T03:04:07Z stdout P dangling"]
    out = p.run(recs(lines))
    assert out.lines == ["part one and two", "oops"]
    assert out.ts[0] == 1704164645000000001
    assert streams(p, out) == {"job=t,stream=stdout": ["part one and two"],
                               "job=t,stream=stderr": ["oops"]}
    assert p.held_from() is not None
    assert p.run(Records.empty(), final=True).lines == ["dangling"]


def test_docker_joins_partials() -> None:
    _, p = pipeline("[{docker: {}}]")
    lines = ['{"log":"hello ","stream":"stdout","time":"2024-01-02T03:04:05Z"}',
             '{"log":"world\\n","stream":"stdout","time":"2024-01-02T03:04:05.1Z"}',
             '{"log":"err\\n","stream":"stderr","time":"2024-01-02T03:04:06Z"}']
    out = p.run(recs(lines))
    assert out.lines == ["hello world", "err"]
    assert out.ts[0] == 1704164645000000000
    assert streams(p, out) == {"job=t,stream=stdout": ["hello world"],
                               "job=t,stream=stderr": ["err"]}


def test_partial_released_after_wait(monkeypatch: Any) -> None:
    _, p = pipeline("[{cri: {}}]")
    p.run(recs(["2024-01-02T03:04:07Z stdout P waiting"]))
    monkeypatch.setattr(time, "monotonic", lambda: 10**9 + PARTIAL_WAIT_S)
    assert p.run(Records.empty()).lines == ["waiting"]


def test_stages_work_on_a_large_batch_quickly() -> None:
    _, p = pipeline("[{json: {}}, {labels: [level]}]")
    lines = [f'{{"level":"{"info" if i % 2 else "warn"}","msg":"m{i}"}}'
             for i in range(50_000)]
    t0 = time.perf_counter()
    out = streams(p, p.run(recs(lines)))
    assert time.perf_counter() - t0 < 2.0
    assert len(out["job=t,level=info"]) == 25_000
