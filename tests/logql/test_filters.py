"""Block-level line filters agree with a plain per-line Python check on arbitrary data."""

from __future__ import annotations

import numpy as np
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.logql import LineFilter
from sluiceway.logql._filters import compile_line_filter, required_literal
from sluiceway.model import EntryBlock

LINES = st.lists(st.text(alphabet="abAB-\n é", max_size=12), min_size=0, max_size=40)
NEEDLES = st.text(alphabet="abAB-\n é", min_size=0, max_size=4)


def _block(lines: list[str]) -> EntryBlock:
    ts = np.arange(len(lines), dtype=np.int64)
    return EntryBlock.from_lines({"a": "b"}, ts, [ln.encode() for ln in lines])


def _run(f: LineFilter, lines: list[str], cand: list[bool] | None = None) -> list[bool]:
    b = _block(lines)
    mask = np.ones(len(b), dtype=np.bool_) if cand is None else np.array(cand, dtype=np.bool_)
    return [bool(x) for x in compile_line_filter(f)(b, mask)]


@settings(max_examples=300, deadline=None)
@given(LINES, NEEDLES, st.sampled_from(["|=", "!="]))
def test_literal_filters_match_python(lines: list[str], needle: str, op: str) -> None:
    want = [(needle in ln) == (op == "|=") for ln in lines]
    assert _run(LineFilter(op, (needle,)), lines) == want


@settings(max_examples=200, deadline=None)
@given(LINES, st.lists(NEEDLES, min_size=1, max_size=3), st.data())
def test_or_filters_and_sparse_candidates(lines: list[str], needles: list[str],
                                          data: st.DataObject) -> None:
    cand = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
    want = [c and any(n in ln for n in needles) for c, ln in zip(cand, lines, strict=True)]
    assert _run(LineFilter("|=", tuple(needles)), lines, cand) == want
    want_not = [c and not any(n in ln for n in needles) for c, ln in zip(cand, lines,
                                                                          strict=True)]
    assert _run(LineFilter("!=", tuple(needles)), lines, cand) == want_not


REGEXES = ["a+b", "(?i)ab", "(?i)a.b", "ab|ba", "a-b|é", "^a", "b$", "(?i)é", "a(b|-)a",
           "[ab]{2}", "a?b-", "(?s)a.b", "\\-a"]


@settings(max_examples=300, deadline=None)
@given(LINES, st.sampled_from(REGEXES), st.sampled_from(["|~", "!~"]))
def test_regex_filters_match_python(lines: list[str], rx: str, op: str) -> None:
    compiled = re2.compile(rx)  # RE2 semantics (`$` = end of text), as Loki's Go regexp
    want = [(compiled.search(ln) is not None) == (op == "|~") for ln in lines]
    assert _run(LineFilter(op, (rx,)), lines) == want


def test_required_literal() -> None:
    assert required_literal("error: .* timeout") == " timeout"
    assert required_literal("ab*c") is None
    assert required_literal("x(abc)?yz") == "yz"
    assert required_literal("a|b") is None
    assert required_literal("foo\\.bar+") == "foo.bar"
