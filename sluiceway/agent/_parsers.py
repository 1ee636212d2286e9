"""Stateless pipeline stages: parse fields, promote labels, filter, choose the line.

Each stage is a plain callable taking and returning a `Records` batch; the per-line work
happens inside C-backed calls (orjson, RE2, `str` methods) wherever a batch allows it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

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
    """A plain counter the agent reads into its metrics (one per stage kind that drops)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def _source(recs: Records, source: str | None) -> list[Any]:
    if source is None:
        return recs.lines
    fields = recs.ensure_fields()
    return [f.get(source) for f in fields]


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


def json_stage(cfg: JsonStage) -> Callable[[Records], Records]:
    exprs = [(name, _compile_path(path or name)) for name, path in cfg.expressions.items()]
    loads = orjson.loads

    def run(recs: Records) -> Records:
        if not recs.lines:
            return recs
        fields = recs.ensure_fields()
        for f, text in zip(fields, _source(recs, cfg.source), strict=True):
            if not isinstance(text, str) or not text.startswith("{"):
                continue
            try:
                obj = loads(text)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            if not exprs:
                f.update(obj)
                continue
            for name, path in exprs:
                v = _walk(obj, path)
                if v is not None:
                    f[name] = v
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


def timestamp_stage(cfg: TimestampStage) -> Callable[[Records], Records]:
    parsers = [make_parser(cfg.format), *(make_parser(f) for f in cfg.fallback_formats)]
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
        if not recs.lines or recs.fields is None:
            return recs
        labels = recs.ensure_labels()
        for i, f in enumerate(recs.fields):
            found = {name: str(f[field]) for name, field in pairs
                     if f.get(field) not in (None, "")}
            if found:
                cur = labels[i]
                labels[i] = found if cur is None else {**cur, **found}
        return recs
    return run


def drop_stage(cfg: DropStage, dropped: Counter) -> Callable[[Records], Records]:
    rx = re2.compile(cfg.expression) if cfg.expression is not None else None
    older_ns = int(cfg.older_than * 1e9) if cfg.older_than is not None else None
    longer = cfg.longer_than
    test_source = cfg.source is not None or rx is not None or cfg.value is not None

    def hit(value: Any) -> bool:
        if value is None:
            return False
        text = value if isinstance(value, str) else str(value)
        if rx is not None and rx.search(text) is None:
            return False
        return cfg.value is None or text == cfg.value

    def run(recs: Records) -> Records:
        if not recs.lines:
            return recs
        n = len(recs.lines)
        drop = [True] * n  # conditions are ANDed, as in Promtail
        if test_source:
            drop = [hit(v) for v in _source(recs, cfg.source)]
        if older_ns is not None:
            cutoff = now_ns() - older_ns
            drop = [d and t < cutoff for d, t in zip(drop, recs.ts, strict=True)]
        if longer is not None:
            drop = [d and len(line) > longer for d, line in zip(drop, recs.lines, strict=True)]
        keep = [i for i, d in enumerate(drop) if not d]
        dropped.value += n - len(keep)
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
