"""Per-line pipeline stages (parsers, label filters, formatting) over a mutable `Row`.

These run only on lines that survived the block-level line filters. A stage returns
False to drop the line; parse and conversion failures keep the line and set
`__error__` / `__error_details__` as Loki does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import re2

from sluiceway.logql import _ast as A
from sluiceway.logql._filters import (
    compile_line_predicate,
    decolorize_text,
    ip_in_text,
    parse_ip_range,
)
from sluiceway.logql._json_scan import JsonScanError, scan_leaves
from sluiceway.logql._jsonpath import compile_path
from sluiceway.logql._lexer import CONVERTERS
from sluiceway.logql._limits import DEFAULT_MAX_LINE_SIZE
from sluiceway.logql._logfmt import scan_logfmt
from sluiceway.logql._pattern import compile_pattern
from sluiceway.logql._template import TemplateError, compile_template
from sluiceway.model import Matcher

ERROR = "__error__"
ERROR_DETAILS = "__error_details__"
PARSED, METADATA = "p", "m"


@dataclass(slots=True)
class Row:
    """One entry moving through the pipeline; `origin` marks non-stream labels."""

    ts: int
    line: str
    labels: dict[str, str]
    origin: dict[str, str]
    base: Mapping[str, str]

    def set_error(self, err: str, details: str = "") -> None:
        if ERROR in self.labels:
            return
        self.labels[ERROR] = err
        self.origin[ERROR] = PARSED
        if details:
            self.labels[ERROR_DETAILS] = details
            self.origin[ERROR_DETAILS] = PARSED

    def add_parsed(self, key: str, value: str) -> None:
        if key in self.base:
            key += "_extracted"
        self.labels[key] = value
        self.origin[key] = PARSED

    def delete(self, key: str) -> None:
        self.labels.pop(key, None)
        self.origin.pop(key, None)


RowStage = Callable[[Row], bool]


def sanitize_key(key: str, first: bool = True) -> str:
    key = key.strip()
    if not key:
        return key
    if first and key[0].isdigit():
        key = "_" + key
    return "".join(c if (c.isascii() and (c.isalnum() or c == "_")) else "_" for c in key)


# --- parsers -------------------------------------------------------------------------


def _json_text(v: Any) -> str | None:
    """A JSON leaf as Loki prints it; None for null and arrays (skipped when flattening)."""
    if isinstance(v, str):
        return str(v)  # a plain str, also for RawNumber
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    return None


@lru_cache(maxsize=4096)  # the same few keys repeat on every line
def _json_label_key(path: tuple[str, ...]) -> str:
    """Loki's name for a nested JSON key: sanitised parts joined with `_`, blank parts
    skipped, a leading digit prefixed with `_`."""
    parts = [p for p in (sanitize_key(k, False) for k in path) if p]
    key = "_".join(parts)
    return "_" + key if key[:1].isdigit() else key


def _flatten_json(row: Row) -> None:
    """`| json` without parameters: every leaf becomes a label; on malformed input the
    labels found before the error stay and the error is added (as Loki's parser does)."""
    try:
        for path, value in scan_leaves(row.line):
            key = _json_label_key(path)
            if key:
                row.add_parsed(key, value)
    except JsonScanError as exc:
        row.set_error("JSONParserErr", str(exc))


def _load_json(row: Row) -> Any:
    try:
        obj = orjson.loads(row.line)
    except orjson.JSONDecodeError as exc:
        row.set_error("JSONParserErr", str(exc))
        return None
    if _reprinted_floats(obj, row.line):
        # Loki copies numbers as written (`1.50`, `1e3`); re-read keeping float text.
        return json.loads(row.line, parse_float=RawNumber)
    return obj


class RawNumber(str):
    """A JSON number kept as the text it was written with."""


def _dump(v: Any) -> str:
    """Compact JSON of an extracted object or array, raw numbers written as they were."""
    if isinstance(v, RawNumber):
        return str(v)
    if isinstance(v, dict):
        return "{" + ",".join(f"{orjson.dumps(k).decode()}:{_dump(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_dump(x) for x in v) + "]"
    return orjson.dumps(v).decode()


def _reprinted_floats(v: Any, line: str) -> bool:
    """True when some float would print differently from its text in the line."""
    if isinstance(v, float):
        return re.search(rf"(?<![\d.]){re.escape(repr(v))}(?![\d.eE])", line) is None
    if isinstance(v, dict):
        return any(_reprinted_floats(x, line) for x in v.values())
    if isinstance(v, list):
        return any(_reprinted_floats(x, line) for x in v)
    return False


def _json_stage(st: A.JsonParser) -> RowStage:
    if not st.params:
        def run_all(row: Row) -> bool:
            _flatten_json(row)
            return True

        return run_all
    paths = [(name, compile_path(path)) for name, path in st.params]

    def run_params(row: Row) -> bool:
        obj = _load_json(row)
        if obj is None and ERROR in row.labels:
            return True
        for name, path in paths:
            v = path(obj)
            if isinstance(v, (dict, list)):
                text = _dump(v)
            else:
                text = "" if v is None else (_json_text(v) or "")
            row.add_parsed(name, text)
        return True

    return run_params


def _logfmt_stage(st: A.LogfmtParser) -> RowStage:
    wanted = {src: name for name, src in st.params} if st.params else None

    def run(row: Row) -> bool:
        pairs, err = scan_logfmt(row.line, st.strict)
        for k, v in pairs:
            if wanted is not None:
                if k not in wanted:
                    continue
                k = wanted[k]
            elif not (k := sanitize_key(k)):
                continue
            if v or st.keep_empty:
                row.add_parsed(k, v)
        if err:
            row.set_error("LogfmtParserErr", err)
        return True

    return run


def _regexp_stage(st: A.RegexpParser) -> RowStage:
    rx = re2.compile(st.pattern)
    names = [n for n in rx.groupindex]

    def run(row: Row) -> bool:
        m = rx.search(row.line)
        if m is not None:
            for n in names:
                row.add_parsed(sanitize_key(n), m.group(n) or "")
        return True

    return run


def _pattern_stage(st: A.PatternParser) -> RowStage:
    pat = compile_pattern(st.pattern)

    def run(row: Row) -> bool:
        got = pat.match(row.line)
        if got:
            for k, v in got.items():
                row.add_parsed(k, v)
        return True

    return run


def _unpack(row: Row) -> bool:
    """Reverse Promtail's `pack`: only a line with a string `_entry` is unpacked, and only
    string values become labels (as Loki; numbers are never read back as text here)."""
    if not row.line.startswith("{"):
        row.set_error("JSONParserErr", "expecting json object, but it is not")
        return True
    try:
        obj = orjson.loads(row.line)
    except orjson.JSONDecodeError as exc:
        row.set_error("JSONParserErr", str(exc))
        return True
    if not isinstance(obj, dict) or not isinstance(obj.get("_entry"), str):
        return True
    for k, v in obj.items():
        if isinstance(v, str) and k != "_entry":
            row.add_parsed(k, v)
    row.line = obj["_entry"]
    return True


def _decolorize(row: Row) -> bool:
    row.line = decolorize_text(row.line)
    return True


# --- label filters -------------------------------------------------------------------

_CMP: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


def _ip_label_filter(name: str, positive: bool, contains: Callable[[Any], bool]) -> RowStage:
    """Loki's ip label filter: an entry that already has an error passes (only string
    matchers may drop those), a missing label fails for `=` and `!=` alike, and the
    value is searched for an address like a line is."""

    def ip_test(row: Row) -> bool:
        if ERROR in row.labels:
            return True
        value = row.labels.get(name)
        if value is None:
            return False
        return ip_in_text(contains, value) == positive

    return ip_test


def compile_label_filter(e: A.LabelFilterExpr) -> RowStage:
    if isinstance(e, A.LabelBinary):
        parts = [compile_label_filter(x) for x in A.label_chain(e)]
        if len(parts) == 2:
            left, right = parts
            if e.op == "and":
                return lambda row: left(row) and right(row)
            return lambda row: left(row) or right(row)
        if e.op == "and":
            return lambda row: all(f(row) for f in parts)
        return lambda row: any(f(row) for f in parts)
    name = e.name
    if e.kind == "string":
        m = Matcher(name, e.op, e.raw)
        return lambda row: m.matches(row.labels.get(name, ""))
    if e.kind == "ip":
        return _ip_label_filter(name, e.op == "=", parse_ip_range(e.raw))
    convert, detail = CONVERTERS[e.kind]
    cmp, want = _CMP[e.op], e.value

    def typed(row: Row) -> bool:
        raw = row.labels.get(name)
        if raw is None:
            return False
        v = convert(raw)
        if v is None:  # NaN parses in Go, and compares false (true for `!=`)
            row.set_error("LabelFilterErr", detail(raw))  # keeps an earlier error
            return True
        return cmp(v, want)

    return typed


# --- formatting and label sets -------------------------------------------------------


def _line_format(st: A.LineFormat, max_size: int) -> RowStage:
    tmpl = compile_template(st.template)

    def run(row: Row) -> bool:
        try:
            row.line = tmpl.render(row.labels, row.line, row.ts, max_size)
        except TemplateError as exc:
            row.set_error("TemplateFormatErr", str(exc))
        return True

    return run


def _label_format(st: A.LabelFormat, max_size: int) -> RowStage:
    items = [(i.dst, i.value, compile_template(i.value) if i.template else None)
             for i in st.items]

    def run(row: Row) -> bool:
        # Renames apply in order; templates all see the labels as they were at the
        # first template of the stage (Loki takes that snapshot once).
        snapshot: dict[str, str] | None = None
        for dst, value, tmpl in items:
            if tmpl is None:
                if value in row.labels:
                    v = row.labels[value]
                    row.delete(value)
                    row.labels[dst] = v
                    row.origin[dst] = PARSED
                continue
            if snapshot is None:
                snapshot = dict(row.labels)
            try:
                row.labels[dst] = tmpl.render(snapshot, row.line, row.ts, max_size)
                row.origin[dst] = PARSED
            except TemplateError as exc:
                row.set_error("TemplateFormatErr", str(exc))
        return True

    return run


def _spec_hits(spec: A.LabelsSpec, labels: Mapping[str, str]) -> bool:
    if spec.name not in labels:
        return False
    return spec.matcher is None or spec.matcher.matches(labels[spec.name])


def _drop(st: A.Drop) -> RowStage:
    def run(row: Row) -> bool:
        for spec in st.items:
            if _spec_hits(spec, row.labels):
                row.delete(spec.name)
        return True

    return run


def _keep(st: A.Keep) -> RowStage:
    def run(row: Row) -> bool:
        kept = {s.name for s in st.items if _spec_hits(s, row.labels)}
        for k in list(row.labels):
            if k not in kept and k not in (ERROR, ERROR_DETAILS):
                row.delete(k)
        return True

    return run


def _line_filter(st: A.LineFilter) -> RowStage:
    pred = compile_line_predicate(st)
    return lambda row: pred(row.line)


_FIXED: dict[type, RowStage] = {A.UnpackParser: _unpack, A.Decolorize: _decolorize}
_MAKERS: dict[type, Callable[[Any], RowStage]] = {
    A.JsonParser: _json_stage, A.LogfmtParser: _logfmt_stage, A.RegexpParser: _regexp_stage,
    A.PatternParser: _pattern_stage, A.Drop: _drop, A.Keep: _keep, A.LineFilter: _line_filter,
}
# Templates write at most `max_size` bytes (a line or a label value).
_FORMATTERS: dict[type, Callable[[Any, int], RowStage]] = {
    A.LineFormat: _line_format, A.LabelFormat: _label_format}


def compile_stage(st: A.Stage, max_line_size: int = DEFAULT_MAX_LINE_SIZE) -> RowStage:
    if isinstance(st, A.LabelFilter):
        return compile_label_filter(st.expr)
    fixed = _FIXED.get(type(st))
    if fixed is not None:
        return fixed
    formatter = _FORMATTERS.get(type(st))
    if formatter is not None:
        return formatter(st, max_line_size)
    return _MAKERS[type(st)](st)


def compile_row_stages(stages: tuple[A.Stage, ...],
                       max_line_size: int = DEFAULT_MAX_LINE_SIZE) -> list[RowStage]:
    return [compile_stage(s, max_line_size) for s in stages]


