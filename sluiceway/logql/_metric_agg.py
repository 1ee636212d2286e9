"""Vector aggregations (`sum by (x) (...)` and friends) and `label_replace`.

Each group is reduced across its member series for all steps at once; members are
visited in label order so float sums come out the same on every run.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import re2

from sluiceway.logql import _ast as A
from sluiceway.logql._errors import QueryError
from sluiceway.logql._metric_types import F64, LabelKey, Mask, Series, Vec, check_unique

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def group_key(labels: LabelKey, g: A.Grouping | None) -> LabelKey:
    if g is None:
        return ()
    names = set(g.labels)
    if g.without:
        return tuple(kv for kv in labels if kv[0] not in names)
    return tuple(kv for kv in labels if kv[0] in names)


def _groups(vec: Vec, g: A.Grouping | None) -> dict[LabelKey, list[Series]]:
    out: dict[LabelKey, list[Series]] = {}
    for s in sorted(vec.series, key=lambda s: s.labels):
        out.setdefault(group_key(s.labels, g), []).append(s)
    return out


def _reduce(op: str, members: list[Series], n: int) -> tuple[F64, Mask]:
    count = np.zeros(n)
    acc = np.zeros(n)
    mean = np.zeros(n)
    have = np.zeros(n, dtype=np.bool_)
    with np.errstate(all="ignore"):
        for s in members:
            p, v = s.present, s.values
            if op in ("sum", "avg"):
                acc = np.where(p, acc + v, acc)
            elif op in ("min", "max"):
                better = (acc > v) if op == "min" else (acc < v)
                take = p & (~have | better | np.isnan(acc))
                acc = np.where(take, v, acc)
            elif op in ("stddev", "stdvar"):
                c = count + 1
                delta = v - mean
                new_mean = mean + delta / c
                acc = np.where(p, acc + delta * (v - new_mean), acc)
                mean = np.where(p, new_mean, mean)
            count += p
            have |= p
        if op == "avg":
            acc = acc / count
        elif op == "count":
            acc = count.copy()
        elif op == "stdvar":
            acc = acc / count
        elif op == "stddev":
            acc = np.sqrt(acc / count)
    return acc, have


def _select_k(op: str, k: int, members: list[Series], n: int) -> list[Series]:
    """topk/bottomk: per step keep the k largest/smallest present values (NaN last)."""
    vals = np.vstack([s.values for s in members])
    pres = np.vstack([s.present for s in members])
    keep = np.zeros_like(pres)
    sign = -1.0 if op == "topk" else 1.0
    for j in range(n):
        rows = np.flatnonzero(pres[:, j])
        if not len(rows):
            continue
        col = vals[rows, j]
        nan = np.isnan(col)
        order = np.lexsort((np.where(nan, 0.0, sign * col), nan))
        keep[rows[order[:k]], j] = True
    return [Series(s.labels, s.values, keep[i]) for i, s in enumerate(members)]


def aggregate(node: A.VectorAggregation, vec: Vec, n: int) -> Vec:
    op = node.op
    if op in ("sort", "sort_desc"):
        return vec  # ordering is applied when an instant result is written
    if op in ("topk", "bottomk", "approx_topk"):
        k = node.param or 0
        if k < 1:
            raise QueryError(f"parse error : invalid parameter {op}({k}): must be > 0")
        out: list[Series] = []
        for members in _groups(vec, node.grouping).values():
            out += _select_k("bottomk" if op == "bottomk" else "topk", k, members, n)
        return Vec(out)
    result = []
    for key, members in _groups(vec, node.grouping).items():
        values, present = _reduce(op, members, n)
        result.append(Series(key, values, present))
    return Vec(result)


def _go_expand(template: str, m: Any) -> str:
    """Go's Regexp.Expand: `$1`, `${1}`, `$name`, `${name}`, `$$`; unknown names → ""."""
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c != "$" or i + 1 == len(template):
            out.append(c)
            i += 1
            continue
        if template[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if template[i + 1] == "{":
            close = template.find("}", i + 2)
            name = template[i + 2 : close] if close > 0 else ""
            if close < 0 or not re.fullmatch(r"\w+", name):
                out.append(c)
                i += 1
                continue
            i = close + 1
        else:
            mm = re.match(r"\w+", template[i + 1 :])
            if mm is None:
                out.append(c)
                i += 1
                continue
            name = mm.group(0)
            i += 1 + len(name)
        out.append(_group(m, name))
    return "".join(out)


def _group(m: Any, name: str) -> str:
    try:
        g = m.group(int(name) if name.isdigit() else name)
    except (IndexError, KeyError, re2.error, ValueError):
        return ""
    return g or ""


def label_replace(node: A.LabelReplace, vec: Vec) -> Vec:
    if not _LABEL_NAME.fullmatch(node.dst):
        # Loki accepts this (a bug, REFERENCE §9); Prometheus rejects it, so do we.
        raise QueryError(f"invalid destination label name in label_replace(): {node.dst}")
    rx = re2.compile(f"^(?:{node.regex})$")
    out = []
    for s in vec.series:
        labels = dict(s.labels)
        m = rx.search(labels.get(node.src, ""))
        if m is not None:
            value = _go_expand(node.replacement, m)
            if value:
                labels[node.dst] = value
            else:
                labels.pop(node.dst, None)
        out.append(Series(tuple(sorted(labels.items())), s.values, s.present))
    result = Vec(out)
    check_unique(result, "label_replace")
    return result
