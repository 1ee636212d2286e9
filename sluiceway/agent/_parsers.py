"""Stateless pipeline stages: parse fields, promote labels, filter, choose the line.

Each stage is a plain callable taking and returning a `Records` batch; the per-line work
happens inside C-backed calls (orjson, RE2, `str` methods) wherever a batch allows it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import re2

from sluiceway.agent._config import (
    DropStage,
    JsonStage,
    LabelsStage,
    LogfmtStage,
    OutputStage,
    RegexStage,
    TimestampStage,
)
from sluiceway.agent._records import Records
from sluiceway.model import make_parser, now_ns

_PATH_RE = re.compile(r"[^.\[\]]+|\[\d+\]")
_LOGFMT_RE = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


class Counter:
    """Lines removed on purpose (drop, match, sampling and limit stages), in all and by
    the stage's reason; the agent reads it into its metrics."""

    __slots__ = ("by_reason", "value")

    def __init__(self) -> None:
        self.value = 0
        self.by_reason: dict[str, int] = {}

    def add(self, n: int, reason: str) -> None:
        if n:
            self.value += n
            self.by_reason[reason] = self.by_reason.get(reason, 0) + n


def go_string(v: Any) -> str:
    """A field's value as Promtail writes it into a label: numbers as Go's
    `FormatFloat(v, 'f', -1, 64)`, booleans `true`/`false`, objects as JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "+Inf" if v > 0 else "-Inf"
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else format(Decimal(repr(v)), "f")
    if v is None:
        return ""
    return orjson.dumps(v).decode()


def _source(recs: Records, source: str | None) -> list[Any]:
    if source is None:
        return recs.lines
    return [recs.value(i, source) for i in range(len(recs.lines))]


_SIMPLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*$")


def _compile_path(path: str) -> list[str | int]:
    return [int(p[1:-1]) if p.startswith("[") else p for p in _PATH_RE.findall(path)]


def _walk(obj: Any, path: list[str | int]) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or step >= len(obj):
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[step] if isinstance(step, int) else obj.get(step)
    return obj


def _expression(path: str) -> Callable[[Any], Any]:
    """A JMESPath expression (Promtail's); plain `a.b[0]` paths skip the library."""
    if _SIMPLE.match(path):
        steps = _compile_path(path)
        return lambda obj: _walk(obj, steps)
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        compiled = jmespath.compile(path)
    except JMESPathError as exc:
        raise ValueError(f"json stage: invalid JMESPath expression {path!r}: {exc}") from exc
    search: Callable[[Any], Any] = compiled.search
    return search


def _json_value(v: Any) -> Any:
    # Promtail keeps strings and numbers, and writes anything else as JSON text.
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return orjson.dumps(v).decode()


def json_stage(cfg: JsonStage, dropped: Counter | None = None) -> Callable[[Records], Records]:
    exprs = [(name, _expression(path or name)) for name, path in cfg.expressions.items()]
    loads = orjson.loads
    drop_bad = cfg.drop_malformed

    def run(recs: Records) -> Records:
        if not recs.lines:
            return recs
        fields = recs.ensure_fields()
        bad: list[int] = []
        for i, (f, text) in enumerate(zip(fields, _source(recs, cfg.source), strict=True)):
            if not isinstance(text, str):
                continue
            try:
                obj = loads(text) if text[:1] in ("{", "[") else None
            except orjson.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                if drop_bad:
                    bad.append(i)
                continue
            if not exprs:
                f.update(obj)
                continue
            for name, search in exprs:
                v = search(obj)
                if v is not None:
                    f[name] = _json_value(v)
        if bad and dropped is not None:
            gone = set(bad)
            dropped.add(len(bad), "drop_malformed")
            return recs.take([i for i in range(len(recs.lines)) if i not in gone])
        return recs
    return run


def _unquote(v: str) -> str:
    if v.startswith('"'):
        try:
            return str(orjson.loads(v))
        except orjson.JSONDecodeError:
            return v[1:-1]
    return v


def logfmt_stage(cfg: LogfmtStage) -> Callable[[Records], Records]:
    mapping = dict(cfg.mapping)

    def run(recs: Records) -> Records:
        if not recs.lines:
            return recs
        fields = recs.ensure_fields()
        for f, text in zip(fields, _source(recs, cfg.source), strict=True):
            if not isinstance(text, str):
                continue
            pairs = {k: _unquote(v) for k, v in _LOGFMT_RE.findall(text)}
            if mapping:
                f.update({name: pairs[key or name] for name, key in mapping.items()
                          if (key or name) in pairs})
            else:
                f.update(pairs)
        return recs
    return run


def regex_stage(cfg: RegexStage) -> Callable[[Records], Records]:
    try:
        rx = re2.compile(cfg.expression)
    except Exception as exc:  # re2.error is not a ValueError subclass
        raise ValueError(f"regex stage: invalid RE2 expression {cfg.expression!r}: {exc}") \
            from exc

    def run(recs: Records) -> Records:
        if not recs.lines:
            return recs
        fields = recs.ensure_fields()
        search = rx.search
        for f, text in zip(fields, _source(recs, cfg.source), strict=True):
            if not isinstance(text, str):
                continue
            m = search(text)
            if m is not None:
                f.update({k: v for k, v in m.groupdict().items() if v is not None})
        return recs
    return run


def zone(name: str | None) -> tzinfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"timestamp stage: unknown location {name!r}") from exc


def timestamp_stage(cfg: TimestampStage) -> Callable[[Records], Records]:
    where = zone(cfg.location)
    parsers = [make_parser(cfg.format, where),
               *(make_parser(f, where) for f in cfg.fallback_formats)]
    fudge = cfg.action_on_failure == "fudge"

    def parse(value: Any) -> int | None:
        text = str(value)
        for p in parsers:
            try:
                return p(text)
            except (ValueError, OverflowError):
                continue
        return None

    def run(recs: Records) -> Records:
        if not recs.lines:
            return recs
        ts, last = recs.ts, None
        for i, value in enumerate(_source(recs, cfg.source)):
            t = parse(value) if value is not None else None
            if t is not None:
                ts[i] = last = t
            elif fudge and last is not None:
                # Promtail's "fudge": keep order by placing it 1ns after the last good stamp.
                last += 1
                ts[i] = last
        return recs
    return run


def labels_stage(cfg: LabelsStage) -> Callable[[Records], Records]:
    pairs = list(cfg.fields.items())

    def run(recs: Records) -> Records:
        if not recs.lines:
            return recs
        labels = recs.ensure_labels()
        for i in range(len(recs.lines)):
            found = {name: text for name, field in pairs
                     if (text := go_string(recs.value(i, field))) != ""}
            if found:
                cur = labels[i]
                labels[i] = found if cur is None else {**cur, **found}
        return recs
    return run


def drop_stage(cfg: DropStage, dropped: Counter) -> Callable[[Records], Records]:
    rx = re2.compile(cfg.expression) if cfg.expression is not None else None
    older_ns = int(cfg.older_than * 1e9) if cfg.older_than is not None else None
    longer = cfg.longer_than
    sources = [cfg.source] if isinstance(cfg.source, str) else cfg.source
    test_source = sources is not None or rx is not None or cfg.value is not None

    def hit(value: Any) -> bool:
        if value is None:
            return False
        text = go_string(value)
        if rx is not None and rx.search(text) is None:
            return False
        return cfg.value is None or text == cfg.value

    def values(recs: Records) -> list[Any]:
        if sources is None:
            return recs.lines
        if len(sources) == 1:
            return _source(recs, sources[0])
        cols = [_source(recs, src) for src in sources]
        # Several sources: all must be present, joined by the separator.
        rows = zip(*cols, strict=True)
        return [None if any(v is None for v in row)
                else cfg.separator.join(go_string(v) for v in row) for row in rows]

    def run(recs: Records) -> Records:
        if not recs.lines:
            return recs
        n = len(recs.lines)
        drop = [True] * n  # conditions are ANDed, as in Promtail
        if test_source:
            drop = [hit(v) for v in values(recs)]
        if older_ns is not None:
            cutoff = now_ns() - older_ns
            drop = [d and t < cutoff for d, t in zip(drop, recs.ts, strict=True)]
        if longer is not None:
            drop = [d and len(line) > longer for d, line in zip(drop, recs.lines, strict=True)]
        keep = [i for i, d in enumerate(drop) if not d]
        dropped.add(n - len(keep), cfg.drop_counter_reason)
        return recs.take(keep)
    return run


def output_stage(cfg: OutputStage) -> Callable[[Records], Records]:
    def run(recs: Records) -> Records:
        if not recs.lines or recs.fields is None:
            return recs
        lines = recs.lines
        for i, f in enumerate(recs.fields):
            v = f.get(cfg.source)
            if v is not None:
                lines[i] = v if isinstance(v, str) else orjson.dumps(v).decode()
        return recs
    return run
