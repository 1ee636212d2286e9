"""Byte sizes as Loki reads them: go-humanize's ParseBytes for label values (label filters,
`unwrap bytes()`), and Loki's lexer for literals (a number, then unit letters up to a
space). The Go rules come from go-humanize v1.0.1 (what Loki main-65e30f8 vendors) and
Loki's `pkg/logql/syntax/lex.go`."""

from __future__ import annotations

import pytest

from sluiceway.logql import MemorySource, ParseError, QueryParams, evaluate, parse
from sluiceway.logql._lexer import Lexer
from sluiceway.model import StreamBatch, parse_humanize_bytes

HUMANIZE = [
    ("10k", 10_000), ("10K", 10_000), ("1.5 MB", 1_500_000), ("1 KiB", 1024),
    ("1.0 kB", 1000), ("42", 42), ("1,000", 1000), ("1,5 kb", 15_000), ("5B", 5),
    ("1.5KiB", 1536), ("2gi", 2 * 1024**3), ("1.", 1), (".5k", 500), ("3 eb", 3 * 10**18),
    ("7 mb\t", 7_000_000), ("0.0001kb", 0),
]
HUMANIZE_ERRORS = [
    ("-5KB", 'strconv.ParseFloat: parsing "": invalid syntax'),
    (" 5KB", 'strconv.ParseFloat: parsing "": invalid syntax'),
    ("", 'strconv.ParseFloat: parsing "": invalid syntax'),
    ("1.2.3", 'strconv.ParseFloat: parsing "1.2.3": invalid syntax'),
    ("1e3", "unhandled size name: e3"),
    ("5 bytes", "unhandled size name: bytes"),
    ("20 EiB", "too large: 20 EiB"),
    ("\u0665KB", 'strconv.ParseFloat: parsing "\u0665": invalid syntax'),
]


@pytest.mark.parametrize(("text", "n"), HUMANIZE)
def test_parse_bytes_as_go_humanize(text: str, n: int) -> None:
    assert parse_humanize_bytes(text) == n


@pytest.mark.parametrize(("text", "error"), HUMANIZE_ERRORS)
def test_parse_bytes_errors_as_go_humanize(text: str, error: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_humanize_bytes(text)
    assert str(exc.value) == error


def _tokens(text: str) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in Lexer(text).tokens() if t.kind != "EOF"]


@pytest.mark.parametrize(("text", "token"), [
    ("10k", ("BYTES", "10k")), ("10KB", ("BYTES", "10KB")), ("1.5MB", ("BYTES", "1.5MB")),
    ("1KiB", ("BYTES", "1KiB")), ("1.0kB", ("BYTES", "1.0kB")), ("5B", ("BYTES", "5B")),
    ("1Ki", ("BYTES", "1Ki")), ("10", ("NUMBER", "10")), ("10ms", ("DURATION", "10ms")),
])
def test_literals_lex_as_loki(text: str, token: tuple[str, str]) -> None:
    assert _tokens(text) == [token]


def test_a_unit_loki_does_not_take_is_not_a_bytes_literal() -> None:
    # `b` is no unit letter in Loki's lexer: `10kb` is `10k` then `b`, and fails to parse
    assert _tokens("10kb") == [("BYTES", "10k"), ("IDENT", "b")]
    with pytest.raises(ParseError):
        parse('{app="x"} | logfmt | size > 10kb')


def test_no_sign_before_a_bytes_literal() -> None:
    with pytest.raises(ParseError) as exc:
        parse('{app="x"} | logfmt | size > -10KB')
    assert "unexpected BYTES, expecting NUMBER" in str(exc.value)
    parse('{app="x"} | logfmt | size > -10')  # numbers take one
    parse('{app="x"} | logfmt | size > -10s')  # durations too


def _kept(lines: list[str], pipeline: str) -> list[str]:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, list(range(1, len(lines) + 1)), lines)])
    data = evaluate(src, f'{{app="x"}} {pipeline}',
                    QueryParams(["t"], 0, 100, direction="forward")).to_loki_json()
    return [v[1] for s in sorted(data["result"], key=lambda s: s["values"][0][0])
            for v in s["values"]]


def test_label_values_compare_as_loki_reads_them() -> None:
    lines = ['size="1.5 MB"', 'size="1 KiB"', 'size="1.0 kB"', "size=10k", "size=999"]
    assert _kept(lines, "| logfmt | size >= 1KB") == lines[:4]
    assert _kept(lines, "| logfmt | size == 1000B") == ['size="1.0 kB"']
    assert _kept(lines, "| logfmt | size > 1.2MB") == ['size="1.5 MB"']


def test_a_negative_value_is_a_label_filter_error() -> None:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, [1], ["size=-5KB"])])
    data = evaluate(src, '{app="x"} | logfmt | size > 1KB',
                    QueryParams(["t"], 0, 10)).to_loki_json()
    [stream] = [s["stream"] for s in data["result"]]
    assert stream["__error__"] == "LabelFilterErr"
    assert stream["__error_details__"] == 'strconv.ParseFloat: parsing "": invalid syntax'


@pytest.mark.parametrize(("value", "want"), [
    ('"1.5 MB"', 1_500_000.0), ("10k", 10_000.0), ('"1 KiB"', 1024.0), ("1,000", 1000.0)])
def test_unwrap_bytes_reads_as_go_humanize(value: str, want: float) -> None:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, [1], [f"b={value}"])])
    q = 'sum(max_over_time({app="x"} | logfmt | unwrap bytes(b) [1m]))'
    data = evaluate(src, q, QueryParams(["t"], 10**9, 10**9, instant=True)).to_loki_json()
    [sample] = data["result"]
    assert float(sample["value"][1]) == want
