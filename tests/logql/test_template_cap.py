"""A template writes at most `max_line_size` bytes: past it the line keeps its content and
gets `__error__="TemplateFormatErr"`, and the oversized text is never built."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from sluiceway.logql import MemorySource, QueryParams, evaluate
from sluiceway.logql._template import TemplateError, compile_template
from sluiceway.model import StreamBatch

LINE = "msg=hello n=3"
LOKI_MAX_LINE_SIZE = 256_000  # QueryParams' default, Loki's max_line_size (256KB)


def _source(line: str = LINE) -> MemorySource:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "x"}, [1_000], [line])])
    return src


def _entry(stages: str, max_line_size: int = LOKI_MAX_LINE_SIZE,
           line: str = LINE) -> tuple[dict[str, str], str]:
    params = QueryParams(["t"], 0, 10_000)
    if max_line_size != LOKI_MAX_LINE_SIZE:
        params.max_line_size = max_line_size
    res = evaluate(_source(line), '{app="x"} ' + stages, params).to_loki_json()
    [stream] = res["result"]
    [[_, text]] = stream["values"]
    return stream["stream"], text


def _peak(fn: Any) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# Each would build tens of MB without the cap (and did: `repeat` was cut at 10,000
# copies, the others not at all).
BLOWUPS = [
    '{{ repeat 100 (repeat 100000 "x") }}',
    '{{ repeat 30000000 "x" }}',
    '{{ indent 30000000 "x" }}',
    '{{ nindent 30000000 "x" }}',
    '{{ alignLeft 30000000 "x" }}',
    '{{ alignRight 30000000 "x" }}',
    '{{ printf "%30000000d" 5 }}',
    '{{ printf "%30000000s" "x" }}',
    '{{ printf "%.30000000f" 1.5 }}',
    '{{ replace "" (repeat 200000 "y") (repeat 100 "x") }}',
    '{{ Replace (repeat 100 "x") "x" (repeat 200000 "y") -1 }}',
    '{{ regexReplaceAll "x" (repeat 100 "x") (repeat 200000 "y") }}',
    '{{ regexReplaceAllLiteral "" (repeat 100 "x") (repeat 200000 "y") }}',
    '{{ b64enc (b64enc (b64enc (b64enc (repeat 200000 "x")))) }}',
]


@pytest.mark.parametrize("tmpl", BLOWUPS)
def test_oversized_line_format_keeps_the_line_and_builds_nothing_big(tmpl: str) -> None:
    stages = f"| line_format `{tmpl}`"
    labels, text = _entry(stages)  # warm up (parsers, regex caches) before measuring
    peak = _peak(lambda: _entry(stages))
    assert text == LINE
    assert labels["__error__"] == "TemplateFormatErr"
    assert "max_line_size (256000 bytes)" in labels["__error_details__"]
    # Nothing near the tens of MB the template asks for; a few copies of the cap at most.
    assert peak < 4 * LOKI_MAX_LINE_SIZE, peak


def test_label_format_is_capped_too() -> None:
    labels, text = _entry('| label_format big=`{{ repeat 300 "ab" }}`', max_line_size=500)
    assert labels["__error__"] == "TemplateFormatErr" and "big" not in labels
    assert text == LINE
    labels, _ = _entry('| label_format big=`{{ repeat 250 "ab" }}`', max_line_size=500)
    assert labels["big"] == "ab" * 250 and "__error__" not in labels


@pytest.mark.parametrize("tmpl,fits", [
    ('{{ repeat 1000 "x" }}', True),
    ('{{ repeat 1001 "x" }}', False),
    ('{{ repeat 500 "é" }}', True),  # 1000 bytes of UTF-8
    ('{{ repeat 501 "é" }}', False),  # 501 characters, 1002 bytes
    ('{{ repeat 600 "x" }}{{ repeat 400 "y" }}', True),
    ('{{ repeat 600 "x" }}{{ repeat 401 "y" }}', False),  # each fits, together they do not
    ("{{ __line__ }}{{ __line__ }}", False),  # the line itself is 600 bytes
])
def test_the_cap_counts_bytes_of_the_whole_output(tmpl: str, fits: bool) -> None:
    line = "z" * 600
    labels, text = _entry(f"| line_format `{tmpl}`", max_line_size=1000, line=line)
    if fits:
        assert "__error__" not in labels and len(text.encode()) <= 1000
    else:
        assert labels["__error__"] == "TemplateFormatErr" and text == line


def test_the_default_cap_is_lokis_max_line_size() -> None:
    assert QueryParams(["t"], 0, 1).max_line_size == LOKI_MAX_LINE_SIZE


def test_render_refuses_before_building() -> None:
    # One function's result past the cap fails even when a later one would cut it down.
    with pytest.raises(TemplateError, match="max_line_size"):
        compile_template('{{ repeat 2000 "x" | trunc 5 }}').render({}, "", 0, 1000)
    assert compile_template('{{ repeat 1000 "x" | trunc 5 }}').render({}, "", 0, 1000) == "xxxxx"
