"""What the columnar engine can answer: a `Plan` of a range aggregation's stages.

`plan_lines` accepts the shapes the columnar engine answers exactly — one `json`, `logfmt`,
`regexp`, `pattern` or `unpack` parser without options, label filters, line filters (after
`unpack` they read the unpacked line), `drop` of
names, a `by` grouping (from the range aggregation or pushed down from an outer `sum`), or
no grouping at all without a parser — and returns None for the rest, which the per-line
engine answers.

`Plan.required_literals()` are the byte strings every selected line must contain: the
same literals as the log pipeline's `LinePrefilter`, which every block read hands to the
source (`LogSource.blocks`); a block whose token filter (chunk format v2) excludes one of
them can be skipped without being read.
"""

from __future__ import annotations

from dataclasses import dataclass

import re2

from sluiceway.logql import _ast as A
from sluiceway.logql._columnar_filter import ERROR, VecFilter, compile_vec_filter, filter_names
from sluiceway.logql._filters import BlockFilter, compile_line_filter, required_literals
from sluiceway.logql._pattern import compile_pattern
from sluiceway.logql._stages import sanitize_key

ERROR_DETAILS = "__error_details__"


@dataclass(frozen=True, slots=True)
class _Parse:
    fmt: str  # "json" | "logfmt" | "regexp" | "unpack"
    pattern: str = ""
    groups: tuple[tuple[str, str], ...] = ()  # regexp: (label name, group name)


@dataclass(frozen=True, slots=True)
class _Drop:
    names: tuple[str, ...]


Op = _Parse | VecFilter | BlockFilter | _Drop


@dataclass(slots=True)
class Plan:
    """A query shape the columnar engine answers: ops in stage order after the leading
    line filters, the parsed labels it needs, and the `by` labels of the series."""

    ops: list[Op]
    fields: tuple[str, ...]
    by: tuple[str, ...]
    preserve_error: bool
    literals: tuple[bytes, ...] = ()
    without: tuple[str, ...] | None = None  # no `by`: every label but these (no parser)
    keeps_error: bool = True  # can a line that passes every stage carry `__error__`?

    def required_literals(self) -> tuple[bytes, ...]:
        return self.literals

    def can_fail(self) -> bool:
        """Can a line keep `__error__` (a 400 pipeline error)? Not when grouped by it,
        nor when the stages drop every line with an error (`| __error__=""` after the
        last stage that can set one, or `| drop __error__`)."""
        return not self.preserve_error and self.keeps_error


def _names_ok(names: set[str]) -> bool:
    # `_extracted` names depend on which stream labels a series has and on key order;
    # error details are per-line texts: both are left to the per-line engine.
    return not any(n == ERROR_DETAILS or n.endswith("_extracted") for n in names)


def plan_lines(lr: A.LogRange, grouping: A.Grouping | None) -> Plan | None:
    """The columnar plan of a count/rate/bytes range, or None when it does not apply."""
    if lr.unwrap is not None:
        return None
    # Without `by`, a series keeps all its labels: only stream labels are known here, so
    # that needs a query without a parser.
    without = None if grouping is not None and not grouping.without else (
        grouping.labels if grouping is not None else ())
    by = set(grouping.labels) if grouping is not None and without is None else set()
    stages = lr.log.stages
    n = 0
    while n < len(stages) and isinstance(stages[n], A.LineFilter):
        n += 1
    ops: list[Op] = []
    names: set[str] = set(by)
    parser = False
    err = False  # may a line still alive carry an error here?
    for st in stages[n:]:
        if isinstance(st, (A.JsonParser, A.LogfmtParser, A.UnpackParser)):
            err = True
        elif isinstance(st, (A.RegexpParser, A.PatternParser)):
            err = err or ERROR in st.pattern  # sets no error, unless it captures one
        elif isinstance(st, A.LabelFilter):
            err = error_after(st.expr, err)
        elif isinstance(st, A.Drop) and any(s.name == ERROR and s.matcher is None
                                             for s in st.items):
            err = False
        if isinstance(st, A.JsonParser) and not st.params and not parser:
            ops.append(_Parse("json"))
            parser = True
        elif (isinstance(st, A.LogfmtParser) and not st.params and not st.strict
              and not st.keep_empty and not parser):
            ops.append(_Parse("logfmt"))
            parser = True
        elif isinstance(st, A.RegexpParser) and not parser:
            got = _regexp_parse(st.pattern)
            if got is None:
                return None
            ops.append(got)
            parser = True
        elif isinstance(st, A.PatternParser) and not parser:
            got = _pattern_parse(st.pattern)
            if _sets_error(got):
                return None
            ops.append(got)
            parser = True
        elif isinstance(st, A.UnpackParser) and not parser:
            ops.append(_Parse("unpack"))
            parser = True
        elif isinstance(st, A.LabelFilter):
            names |= filter_names(st.expr)
            ops.append(compile_vec_filter(st.expr))
        elif isinstance(st, A.LineFilter):
            ops.append(compile_line_filter(st))
        elif isinstance(st, A.Drop) and all(s.matcher is None for s in st.items):
            ops.append(_Drop(tuple(s.name for s in st.items)))
        else:
            return None
    if not _names_ok(names) or (without is not None and parser):
        return None
    fields = tuple(sorted(names - {ERROR})) if parser else ()
    ops = [_trim_groups(op, set(fields)) if isinstance(op, _Parse) and op.fmt == "regexp"
           else op for op in ops]
    return Plan(ops, fields, tuple(sorted(by)), ERROR in by, required_literals(stages),
                without, err)


def error_after(e: A.LabelFilterExpr, before: bool) -> bool:
    """May a line that passes label filter `e` carry an error (`before`: it may have
    one when it reaches `e`)? `__error__=""` lets none through; a typed comparison
    (number, duration, bytes) sets `LabelFilterErr` on a value it cannot convert, and
    the line passes. `or` tries its right side on the lines the left side let fall
    (with the errors the left side may have set)."""
    if isinstance(e, A.LabelBinary):
        left = error_after(e.left, before)
        if e.op == "and":
            return error_after(e.right, left)
        return left or error_after(e.right, before or left)
    if e.name == ERROR and e.kind == "string" and e.op == "=" and e.raw == "":
        return False
    return before or e.kind not in ("string", "ip")


def _regexp_parse(pattern: str) -> _Parse | None:
    """Only named groups (Arrow's extract_regex takes no others), and no two that sanitise
    to one label name (the last would win, line by line)."""
    rx = re2.compile(pattern)
    if rx.groups != len(rx.groupindex):
        return None
    labels = [(sanitize_key(g), g) for g in rx.groupindex]
    if len({lab for lab, _ in labels}) != len(labels) or any(not lab for lab, _ in labels):
        return None
    got = _Parse("regexp", pattern, tuple(labels))
    return None if _sets_error(got) else got


def _sets_error(op: _Parse) -> bool:
    """A capture named `__error__` (or its details) sets the line's error from the text:
    the per-line engine answers those."""
    return any(lab in (ERROR, ERROR_DETAILS) for lab, _ in op.groups)


def _trim_groups(op: _Parse, fields: set[str]) -> _Parse:
    """The regexp without the captures no later stage reads: they become non-capturing
    groups (the same matches; RE2 extracts fewer spans). A group whose `(?P<name>`
    appears more than once in the text (escaped, in a class...) keeps the pattern as is."""
    keep = fields | {ERROR, ERROR_DETAILS}
    pattern, kept = op.pattern, []
    for lab, g in op.groups:
        if lab in keep:
            kept.append((lab, g))
            continue
        tag = f"(?P<{g}>"
        if pattern.count(tag) != 1:
            return op
        pattern = pattern.replace(tag, "(?:")
    rx = re2.compile(pattern)
    if rx.groups != len(kept) or set(rx.groupindex) != {g for _, g in kept}:
        return op
    return _Parse("regexp", pattern, tuple(kept))


def _pattern_parse(text: str) -> _Parse:
    """`| pattern` as the equivalent RE2 regex: the first literal anchors at the start,
    each capture stops at the first occurrence of the next literal (lazy, leftmost-first
    matching finds exactly that), the last one takes the rest of the line."""
    pat = compile_pattern(text)
    out = ["^"]
    groups: list[tuple[str, str]] = []
    for i, (kind, val) in enumerate(pat.parts):
        if kind == "lit":
            out.append(re2.escape(val))
            continue
        last = i + 1 == len(pat.parts)
        body = "(?s:.*)" if last else "(?s:.*?)"
        if val == "_":
            out.append(body)
        else:
            group = f"g{len(groups)}"  # capture names need not be RE2 group names
            groups.append((val, group))
            out.append(f"(?P<{group}>{body})")
    return _Parse("regexp", "".join(out), tuple(groups))
