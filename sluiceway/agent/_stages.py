"""The stages that rewrite lines, labels and metadata, route, sample or rate-limit:
`replace`, `template`, `labelallow`, `labeldrop`, `structured_metadata`, `tenant`,
`match`, `limit`, `sampling`, `pack`, `decolorize` (Promtail's meanings).

Templates, LogQL selectors and decolorizing are the query engine's own (`sluiceway.logql`),
loaded only when a pipeline uses them.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import re2

from sluiceway.agent._config import (
    LabelAllowStage,
    LabelDropStage,
    LimitStage,
    MatchStage,
    PackStage,
    ReplaceStage,
    SamplingStage,
    StaticLabelsStage,
    StructuredMetadataStage,
    TemplateStage,
    TenantStage,
)
from sluiceway.agent._parsers import Counter, go_string
from sluiceway.agent._records import Records
from sluiceway.model import EntryBlock

Stateless = Callable[[Records], Records]
TENANT_LABEL = "__tenant_id__"


def _hash(algo: Callable[[bytes], Any]) -> Callable[[Any, Any], str]:
    # Promtail's template `Hash` (SHA3-256) and `Sha2Hash`: hex of the salt + the value.
    return lambda salt, value: str(algo(f"{salt}{value}".encode()).hexdigest())


TEMPLATE_FUNCS: dict[str, Callable[..., Any]] = {
    "Hash": _hash(hashlib.sha3_256), "Sha2Hash": _hash(hashlib.sha256),
}


def _template(text: str) -> Any:
    from sluiceway.logql import TemplateError, compile_template

    try:
        return compile_template(text, TEMPLATE_FUNCS)
    except TemplateError as exc:
        raise ValueError(f"template {text!r}: {exc}") from exc


def _data(recs: Records, i: int) -> dict[str, Any]:
    """What a template sees: the record's labels and extracted fields."""
    data: dict[str, Any] = recs.labels_of(i)
    if recs.fields is not None:
        data.update(recs.fields[i])
    return data


def template_stage(cfg: TemplateStage) -> Stateless:
    from sluiceway.logql import TemplateError

    tpl = _template(cfg.template)

    def run(recs: Records) -> Records:
        fields = recs.ensure_fields()
        for i, line in enumerate(recs.lines):
            data = _data(recs, i)
            data["Value"] = recs.value(i, cfg.source)
            data["Entry"] = line
            try:
                fields[i][cfg.source] = tpl.render({}, line, recs.ts[i], data=data)
            except TemplateError:
                continue  # Promtail logs and leaves the entry as it was
        return recs
    return run


def replace_stage(cfg: ReplaceStage) -> Stateless:
    from sluiceway.logql import TemplateError

    try:
        rx = re2.compile(cfg.expression)
    except re2.error as exc:
        raise ValueError(f"replace stage: invalid RE2 expression {cfg.expression!r}: "
                         f"{exc}") from exc
    tpl = _template(cfg.replace) if "{{" in cfg.replace else None
    names = {i: n for n, i in rx.groupindex.items()}
    groups = rx.groups

    def rewrite(text: str, recs: Records, i: int, found: dict[str, str]) -> str:
        out, pos = [], 0
        for m in rx.finditer(text):
            spans = [(g, m.start(g), m.end(g)) for g in range(1, groups + 1)
                     if m.start(g) >= 0] if groups else [(0, m.start(), m.end())]
            for g, a, b in spans:
                if a < pos:
                    continue
                value = text[a:b]
                new = cfg.replace
                if tpl is not None:
                    data = {**_data(recs, i), **found, "Value": value}
                    try:
                        new = tpl.render({}, text, recs.ts[i], data=data)
                    except TemplateError:
                        new = value
                out += [text[pos:a], new]
                pos = b
                if g in names:
                    found[names[g]] = new
        out.append(text[pos:])
        return "".join(out)

    def run(recs: Records) -> Records:
        for i in range(len(recs.lines)):
            src = recs.lines[i] if cfg.source is None else recs.value(i, cfg.source)
            if src is None:
                continue
            found: dict[str, str] = {}
            new = rewrite(go_string(src), recs, i, found)
            if found:
                recs.ensure_fields()[i].update(found)
            if cfg.source is None:
                recs.lines[i] = new
            else:
                recs.ensure_fields()[i][cfg.source] = new
        return recs
    return run


def _set_labels(recs: Records, i: int, change: dict[str, str]) -> None:
    labels = recs.ensure_labels()
    cur = labels[i]
    labels[i] = change if cur is None else {**cur, **change}


def labelallow_stage(cfg: LabelAllowStage) -> Stateless:
    allow = set(cfg.names)

    def run(recs: Records) -> Records:
        for i in range(len(recs.lines)):
            gone = {k: "" for k in recs.labels_of(i) if k not in allow}
            if gone:
                _set_labels(recs, i, gone)
        return recs
    return run


def labeldrop_stage(cfg: LabelDropStage) -> Stateless:
    names = list(cfg.names)

    def run(recs: Records) -> Records:
        for i in range(len(recs.lines)):
            here = recs.labels_of(i)
            gone = {k: "" for k in names if k in here}
            if gone:
                _set_labels(recs, i, gone)
        return recs
    return run


def static_labels_stage(cfg: StaticLabelsStage) -> Stateless:
    labels = dict(cfg.labels)

    def run(recs: Records) -> Records:
        for i in range(len(recs.lines)):
            _set_labels(recs, i, labels)
        return recs
    return run


def structured_metadata_stage(cfg: StructuredMetadataStage) -> Stateless:
    pairs = list(cfg.fields.items())

    def run(recs: Records) -> Records:
        md = recs.ensure_metadata()
        for i in range(len(recs.lines)):
            found = {name: text for name, field in pairs
                     if (text := go_string(recs.value(i, field))) != ""}
            if found:
                cur = md[i]
                md[i] = found if cur is None else {**cur, **found}
        return recs
    return run


def tenant_stage(cfg: TenantStage) -> Stateless:
    def tenant_of(recs: Records, i: int) -> str:
        if cfg.value is not None:
            return cfg.value
        if cfg.label is not None:
            return recs.labels_of(i).get(cfg.label, "")
        assert cfg.source is not None
        v = recs.fields[i].get(cfg.source) if recs.fields is not None else None
        return go_string(v)

    def run(recs: Records) -> Records:
        for i in range(len(recs.lines)):
            tenant = tenant_of(recs, i)
            if tenant:
                _set_labels(recs, i, {TENANT_LABEL: tenant})
        return recs
    return run


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, burst: int) -> None:
        self.tokens, self.at = float(burst), time.monotonic()


def limit_stage(cfg: LimitStage, dropped: Counter) -> Stateless:
    """A token bucket of `rate` lines per second and `burst`: lines past it wait (the
    input slows down) or, with `drop`, are dropped and counted."""
    buckets: dict[str, _Bucket] = {}
    lock = threading.Lock()

    def take(key: str) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        with lock:
            b = buckets.get(key)
            if b is None:
                if len(buckets) >= cfg.max_distinct_labels:
                    buckets.clear()
                b = buckets[key] = _Bucket(cfg.burst)
            now = time.monotonic()
            b.tokens = min(float(cfg.burst), b.tokens + (now - b.at) * cfg.rate)
            b.at = now
            if b.tokens >= 1:
                b.tokens -= 1
                return 0.0
            return (1 - b.tokens) / cfg.rate

    def run(recs: Records) -> Records:
        keep = []
        for i in range(len(recs.lines)):
            key = ""
            if cfg.by_label_name is not None:
                key = recs.labels_of(i).get(cfg.by_label_name, "")
                if not key:
                    keep.append(i)  # not rate limited without the label
                    continue
            wait = take(key)
            while wait and not cfg.drop:
                time.sleep(min(wait, 1.0))
                wait = take(key)
            if not wait:
                keep.append(i)
        dropped.add(len(recs.lines) - len(keep), "limit_stage")
        return recs.take(keep)
    return run


def sampling_stage(cfg: SamplingStage, dropped: Counter) -> Stateless:
    rnd = random.Random()

    def run(recs: Records) -> Records:
        keep = [i for i in range(len(recs.lines)) if rnd.random() < cfg.rate]
        dropped.add(len(recs.lines) - len(keep), cfg.drop_counter_reason)
        return recs.take(keep)
    return run


def pack_stage(cfg: PackStage) -> Stateless:
    names = list(cfg.labels)

    def run(recs: Records) -> Records:
        now = time.time_ns()
        for i, line in enumerate(recs.lines):
            labels = recs.labels_of(i)
            packed: dict[str, Any] = {}
            gone: dict[str, str] = {}
            for name in names:
                if name in labels:
                    packed[name] = labels[name]
                    gone[name] = ""
                elif (v := recs.value(i, name)) is not None:
                    packed[name] = go_string(v)
            packed["_entry"] = line
            recs.lines[i] = orjson.dumps(packed).decode()
            if gone:
                _set_labels(recs, i, gone)
            if cfg.ingest_timestamp:
                recs.ts[i] = now + i
        return recs
    return run


def decolorize_stage() -> Stateless:
    from sluiceway.logql import decolorize_text

    def run(recs: Records) -> Records:
        recs.lines[:] = [decolorize_text(line) for line in recs.lines]
        return recs
    return run


def _line_filter(stages: tuple[Any, ...]) -> Callable[[list[str]], list[bool]]:
    """The selector's line filters over a batch of lines (the query engine's own)."""
    from sluiceway.logql import LogPipeline

    pipe = LogPipeline(stages)

    def run(lines: list[str]) -> list[bool]:
        if not stages:
            return [True] * len(lines)
        data = [line.encode() for line in lines]
        offsets = np.zeros(len(data) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in data], out=offsets[1:])
        block = EntryBlock({}, np.zeros(len(data), dtype=np.int64), b"".join(data), offsets)
        hit = [False] * len(lines)
        for i in pipe.select(block).tolist():
            hit[i] = True
        return hit
    return run


def match_stage(cfg: MatchStage, dropped: Counter,
                build: Callable[[list[Any]], list[Stateless]]) -> Stateless:
    """Runs `stages` on the lines whose labels match the selector and which pass its
    line filters (or drops them, with `action: drop`); the others go on unchanged."""
    from sluiceway.logql import LineFilter, LogExpr, QueryError, parse

    try:
        expr = parse(cfg.selector)
    except QueryError as exc:
        raise ValueError(f"match stage: invalid selector {cfg.selector!r}: {exc}") from exc
    if not isinstance(expr, LogExpr) or not all(isinstance(s, LineFilter)
                                                for s in expr.stages):
        raise ValueError(f"match stage: {cfg.selector!r} must be a stream selector with "
                         "line filters only")
    matchers = expr.matchers
    lines_pass = _line_filter(expr.stages)
    nested = build(list(cfg.stages))

    def run(recs: Records) -> Records:
        n = len(recs.lines)
        ok = [all(m.matches(recs.labels_of(i).get(m.name, "")) for m in matchers)
              for i in range(n)]
        cand = [i for i in range(n) if ok[i]]
        if cand:
            passed = lines_pass([recs.lines[i] for i in cand])
            cand = [i for i, p in zip(cand, passed, strict=True) if p]
        if not cand:
            return recs
        if cfg.action == "drop":
            gone = set(cand)
            dropped.add(len(cand), cfg.drop_counter_reason)
            return recs.take([i for i in range(n) if i not in gone])
        chosen = set(cand)
        sub = recs.take(cand)
        sub.tags = cand
        for stage in nested:
            if sub.lines:
                sub = stage(sub)
        # Merge back in the original order; nested stages may have dropped some.
        assert sub.tags is not None
        done = dict(zip(sub.tags, range(len(sub.lines)), strict=True))
        order: list[tuple[Records, int]] = []
        for i in range(n):
            if i not in chosen:
                order.append((recs, i))
            elif i in done:
                order.append((sub, done[i]))
        return Records.pick(order, recs.base)
    return run
