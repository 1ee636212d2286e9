"""Per-line behaviours checked against Loki's source: `| json` on malformed lines and
`ip()` label filters, alone and inside `and` / `or` expressions."""

from __future__ import annotations

import pytest

from sluiceway.logql import MemorySource, QueryParams, evaluate
from sluiceway.model import StreamBatch

_OBJ = "Value looks like object, but can't find closing '}' symbol"
_ARR = "Value is array, but can't find closing ']' symbol"


def _labels_of(line: str, pipeline: str, stream: dict[str, str] | None = None) -> dict[str, str]:
    """The final labels of one line pushed through `{app="x"} <pipeline>` (minus `app`)."""
    src = MemorySource()
    src.push("t", [StreamBatch(stream or {"app": "x"}, [1], [line])])
    data = evaluate(src, f'{{app="x"}} {pipeline}', QueryParams(["t"], 0, 10)).to_loki_json()
    [stream_out] = [s["stream"] for s in data["result"]]
    return {k: v for k, v in stream_out.items() if k != "app"}


def _kept(lines: list[str], pipeline: str) -> list[str]:
    """The lines of `{app="x"} <pipeline>` in time order."""
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, list(range(1, len(lines) + 1)), lines)])
    data = evaluate(src, f'{{app="x"}} {pipeline}',
                    QueryParams(["t"], 0, 100, direction="forward")).to_loki_json()
    got = sorted((int(v[0]), v[1]) for s in data["result"] for v in s["values"])
    return [line for _, line in got]


def _err(details: str, **labels: str) -> dict[str, str]:
    return {**labels, "__error__": "JSONParserErr", "__error_details__": details}


# Loki's `| json` walks the object and stops at the first bad token: labels found
# before it stay, and `__error_details__` is the scanner's (grafana/jsonparser) message.
JSON_CASES = [
    ('{"a":"b","c":1', _err(_ARR, a="b", c="1")),
    ('{"a":"b" "c":1}', _err(_OBJ, a="b")),
    ('{"a":1,"b":tru,"c":2}', _err("Unknown value type", a="1")),
    ('{"a":1,"n":{"x":"y","z":}}', _err("Unknown value type", a="1", n_x="y")),
    ('{"a":1,"s":"open', _err("Value is string, but can't find closing '\"' symbol", a="1")),
    ('{"a":1,"l":[1,2}', _err(_ARR, a="1")),
    ('{"a":1,"k\\q":2}', _err("Encountered an invalid escape sequence in a string", a="1")),
    ("{", _err("Malformed JSON error")),
    ('{"a":1,', _err(_ARR, a="1")),
    ("not json", _err(_OBJ)),
    ("[1, 2]", _err(_OBJ)),
    ('"just a string"', _err(_OBJ)),
    ("", _err(_OBJ)),
    # Lenient like Loki: text after the object, a trailing comma, unvalidated numbers.
    ('{"a":1} trailing text', {"a": "1"}),
    ('{"a":1,}', {"a": "1"}),
    ('{"a":12abc,"b":-}', {"a": "12abc", "b": "-"}),
    # A string with a bad escape becomes "", and the walk goes on.
    ('{"a":"x\\qy","b":"\\ud83d\\ude00","c":"\\ud800"}', {"a": "", "b": "\U0001F600", "c": ""}),
    # Blank nested keys are skipped in the name; leading digits get `_`.
    ('{"a":{" ":{"b":1}},"1x":{"2y":"z"}}', {"a_b": "1", "_1x_2y": "z"}),
    ('{ "a" : 1 , "n" : { "m" : null , "k" : [ 1 ] , "v" : true } }', {"a": "1", "n_v": "true"}),
    ('{"app":"inner","o":{"app":"deep"}}', {"app_extracted": "inner", "o_app": "deep"}),
]


@pytest.mark.parametrize(("line", "want"), JSON_CASES)
def test_json_keeps_labels_found_before_an_error(line: str, want: dict[str, str]) -> None:
    assert _labels_of(line, "| json") == want


def test_json_error_lines_filter_like_loki() -> None:
    lines = ['{"level":"error","x":', '{"level":"error"}', '{"level":"info"}']
    assert _kept(lines, '| json | level="error"') == lines[:2]
    assert _kept(lines, '| json | level="error" | __error__=""') == lines[1:2]


IP_LINES = ["addr=10.1.2.3 status=200", "addr=192.168.1.1 status=503",
            "addr=192.168.1.1 status=200", "status=500", "addr=nope status=200",
            "addr=client-10.9.9.9:8080 status=200", "addr=::ffff:10.0.0.1 status=404"]

# Loki's ip label filter looks for an address anywhere in the value, fails on a missing
# label for both `=` and `!=`, and passes entries that already carry an error.
IP_CASES = [
    ('| logfmt | addr = ip("10.0.0.0/8")', [0, 5]),
    ('| logfmt | addr != ip("10.0.0.0/8")', [1, 2, 4, 6]),
    ('| logfmt | addr = ip("10.0.0.0/8") or status >= 500', [0, 1, 3, 5]),
    ('| logfmt | status >= 500 or addr = ip("192.168.1.1")', [1, 2, 3]),
    ('| logfmt | addr = ip("192.168.1.0-192.168.1.9") and status = 200', [2]),
    ('| logfmt | (addr = ip("10.0.0.0/8") or addr = ip("192.168.0.0/16")) , status < 500',
     [0, 2, 5]),
    ('| logfmt | addr != ip("10.0.0.0/8") and addr != ip("192.168.0.0/16")', [4, 6]),
    ('| logfmt | status = 404 or addr = ip("::ffff:10.0.0.1")', [6]),
    # `or` stops at a true left side, so only lines that reach `status > 1s` get its error.
    ('| logfmt | addr = ip("10.0.0.0/8") or status > 1s | __error__=""', [0, 5]),
]


@pytest.mark.parametrize(("pipeline", "want"), IP_CASES)
def test_ip_label_filters_in_compound_expressions(pipeline: str, want: list[int]) -> None:
    assert _kept(IP_LINES, pipeline) == [IP_LINES[i] for i in want]


def test_ip_label_filter_passes_entries_with_errors() -> None:
    # `status > 1s` sets LabelFilterErr on every line; the ip filter then lets them all
    # through, as Loki's does, so only the error label tells them apart.
    got = _kept(IP_LINES, '| logfmt | status > 1s | addr = ip("10.0.0.0/8")')
    assert got == [line for line in IP_LINES if "status=" in line]


# The line filter shares the scanner: addresses are found inside longer tokens.
IP_LINE_CASES = [
    ('|= ip("10.0.0.0/8")', [0, 5]),
    ('!= ip("10.0.0.0/8")', [1, 2, 3, 4, 6]),
    ('|= ip("192.168.1.1")', [1, 2]),
    ('|= ip("::ffff:10.0.0.1")', [6]),
]


@pytest.mark.parametrize(("line_filter", "want"), IP_LINE_CASES)
def test_ip_line_filter_finds_addresses_like_loki(line_filter: str, want: list[int]) -> None:
    assert _kept(IP_LINES, line_filter) == [IP_LINES[i] for i in want]


# Typed label filters and `unwrap` share one conversion table (Go's ParseFloat,
# ParseDuration, humanize.ParseBytes); these values used to convert differently.
LABEL_FILTER_CASES = [
    ('x=NaN', "| logfmt | x != 1", {"x": "NaN"}),
    ('x=NaN', "| logfmt | x == 1", None),
    ('x=" 5"', "| logfmt | x > 1",
     {"x": " 5", "__error__": "LabelFilterErr",
      "__error_details__": 'strconv.ParseFloat: parsing " 5": invalid syntax'}),
    ("d=5\u03bcs", "| logfmt | d > 1us", {"d": "5\u03bcs"}),
    ("d=5\u03bcs", "| logfmt | d > 1ms", None),
]


@pytest.mark.parametrize(("line", "pipeline", "want"), LABEL_FILTER_CASES)
def test_typed_label_filters_convert_like_go(line: str, pipeline: str,
                                             want: dict[str, str] | None) -> None:
    if want is None:
        assert _kept([line], pipeline) == []
    else:
        assert _labels_of(line, pipeline) == want


UNWRAP_CASES = [
    ("d=5\u03bcs", "duration(d)", 5e-6),
    ("d=1h30m", "duration_seconds(d)", 5400.0),
    ("b=1.5KiB", "bytes(b)", 1536.0),
    ("n=1e3", "n", 1000.0),
]


@pytest.mark.parametrize(("line", "unwrap", "want"), UNWRAP_CASES)
def test_unwrap_uses_the_label_filter_conversions(line: str, unwrap: str, want: float) -> None:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, [1], [line])])
    q = f'sum(max_over_time({{app="x"}} | logfmt | unwrap {unwrap} [1m]))'
    data = evaluate(src, q, QueryParams(["t"], 10**9, 10**9, instant=True)).to_loki_json()
    [sample] = data["result"]
    assert float(sample["value"][1]) == pytest.approx(want)


def test_template_conversion_error_sets_template_format_err() -> None:
    got = _labels_of("d=abc", '| logfmt | label_format s="{{ duration .d }}"')
    assert got["__error__"] == "TemplateFormatErr"
    assert _labels_of("d=2m", '| logfmt | label_format s="{{ duration .d }}"') == {
        "d": "2m", "s": "120"}
