"""Loki's detected fields: what the newest lines of a query hold besides their stream
labels — structured metadata, and the fields of the line as JSON or else logfmt — with
a type guessed from the values, the number of distinct values, the parser that found
each field, and for JSON its path. Input is a categorized log result (the engine's).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sluiceway.logql._json_scan import JsonScanError, scan_leaves
from sluiceway.logql._lexer import parse_go_duration, parse_go_float
from sluiceway.logql._logfmt import scan_logfmt
from sluiceway.logql._result import StreamsResult
from sluiceway.logql._stages import ERROR, ERROR_DETAILS, sanitize_key
from sluiceway.logql._stages import _json_label_key as json_label_key

_SKIP = {ERROR, ERROR_DETAILS, "__preserve_error__"}
_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_BOOL = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
# go-humanize's ParseBytes: digits, dots and commas, then one of these (any case).
_HUMAN_BYTES = re.compile(r"([0-9.,]*)(.*)", re.DOTALL)
_BYTE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024}
for _i, _p in enumerate("mgtpe", start=2):
    _BYTE_UNITS |= {_p: 1000**_i, _p + "b": 1000**_i, _p + "i": 1024**_i, _p + "ib": 1024**_i}
_UNIT_SUFFIXES = tuple(u for u in _BYTE_UNITS if u)


def parse_human_bytes(value: str) -> int | None:
    """go-humanize's ParseBytes (`10k`, `1.5 MiB`, `42`), or None."""
    m = _HUMAN_BYTES.fullmatch(value)
    assert m is not None
    num, unit = m.group(1).replace(",", ""), m.group(2).strip().lower()
    mult = _BYTE_UNITS.get(unit)
    if mult is None or not num:
        return None
    f = parse_go_float(num)
    if f is None or not math.isfinite(f * mult) or f * mult >= 2.0**64:
        return None
    return int(f * mult)


def human_bytes(n: int) -> str:
    """go-humanize's Bytes without the space (`1.6MB`): how Loki lists byte values."""
    if n < 10:
        return f"{n}B"
    e = min(int(math.floor(math.log(n, 1000))), 6)
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    unit = ("B", "kB", "MB", "GB", "TB", "PB", "EB")[e]
    return f"{val:.1f}{unit}" if val < 10 else f"{val:.0f}{unit}"


def field_type(value: str) -> str:
    """int, float, boolean, duration, bytes or string: the first that parses, as Loki."""
    if _GO_INT.fullmatch(value) and -(2**63) <= int(value) < 2**63:
        return "int"
    if parse_go_float(value) is not None:
        return "float"
    if value in _GO_BOOL:
        return "boolean"
    if parse_go_duration(value) is not None:
        return "duration"
    if parse_human_bytes(value) is not None:
        return "bytes"
    return "string"


@dataclass(slots=True)
class LineFields:
    """The fields one line holds (besides stream labels); values as Loki lists them."""

    parsed: dict[str, set[str]] = field(default_factory=dict)
    parser: str | None = None  # "json" or "logfmt" (None: neither worked)
    json_paths: dict[str, list[str]] = field(default_factory=dict)


def line_fields(line: str, stream: Mapping[str, str],
                parsed: Mapping[str, str] | None = None) -> LineFields:
    """Parse `line` as JSON, else as logfmt (a name clashing with a stream label gets
    `_extracted`), together with what the query's own parsers found (`parsed`)."""
    out = LineFields({k: {v} for k, v in (parsed or {}).items() if k not in _SKIP})
    found: list[tuple[str, str, tuple[str, ...] | None]] = []
    try:
        for leaf, value in scan_leaves(line):
            key = json_label_key(leaf)
            if key:
                found.append((key, value, leaf))
        out.parser = "json"
    except JsonScanError:
        found = []
        pairs, _ = scan_logfmt(line)
        for k, v in pairs:
            key = sanitize_key(k)
            if key and v:
                found.append((key, v, None))
        out.parser = "logfmt"
    for key, value, path in found:
        if key in stream:
            key += "_extracted"
        out.parsed.setdefault(key, set()).add(value)
        if path is not None:
            out.json_paths[key] = list(path)
    return out


@dataclass(slots=True)
class _Field:
    type: str = "string"
    values: set[str] = field(default_factory=set)
    parsers: list[str] = field(default_factory=list)
    json_path: list[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        first = True
        for v in values:
            if first:  # one guess per line: a stream's lines are alike
                self.type = field_type(v)
                first = False
            self.values.add(v)


def _entries(result: StreamsResult) -> Iterator[tuple[dict[str, str], str, dict[str, Any]]]:
    for s in result.streams:
        for _, line, extra in s.entries:
            yield s.labels, line, extra or {}


def detected_fields(result: StreamsResult, limit: int) -> list[dict[str, Any]]:
    """Loki's `fields` of a categorized streams result: at most `limit` fields, in the
    order they were met."""
    fields: dict[str, _Field] = {}

    def get(name: str) -> _Field | None:
        f = fields.get(name)
        if f is None and len(fields) < limit:
            f = fields[name] = _Field()
        return f

    for stream, line, extra in _entries(result):
        for k, v in (extra.get("structuredMetadata") or {}).items():
            if (f := get(k)) is not None:
                f.add([v])
        lf = line_fields(line, stream, extra.get("parsed"))
        for k, vals in lf.parsed.items():
            if (f := get(k)) is None:
                continue
            if lf.parser and lf.parser not in f.parsers:
                f.parsers.append(lf.parser)
            if lf.parser == "json":
                f.json_path = lf.json_paths.get(k)
            f.add(sorted(vals))
    out = []
    for name, f in fields.items():
        item: dict[str, Any] = {"label": name, "type": f.type, "cardinality": len(f.values),
                                "parsers": f.parsers or None}
        if f.json_path:
            item["jsonPath"] = f.json_path
        out.append(item)
    return out


def detected_field_values(result: StreamsResult, name: str, limit: int) -> list[str]:
    """The distinct values of field `name` (byte sizes written as Loki writes them)."""
    values: dict[str, None] = {}
    for stream, line, extra in _entries(result):
        if len(values) >= limit:
            break
        md = extra.get("structuredMetadata") or {}
        if name in md:
            values[md[name]] = None
        for v in sorted(line_fields(line, stream, extra.get("parsed")).parsed.get(name, ())):
            n = parse_human_bytes(v)
            if n is not None and v.lower().endswith(_UNIT_SUFFIXES):
                v = human_bytes(n)
            values[v] = None
    return list(values)
