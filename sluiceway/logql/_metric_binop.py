"""Binary operators between scalars and vectors, with Prometheus/Loki matching rules."""

from __future__ import annotations

import numpy as np

from sluiceway.logql import _ast as A
from sluiceway.logql._errors import QueryError
from sluiceway.logql._metric_types import (
    F64,
    LabelKey,
    Mask,
    Scalar,
    Series,
    Value,
    Vec,
    check_unique,
)


def arith(op: str, a: F64, b: F64) -> F64:
    with np.errstate(all="ignore"):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return np.true_divide(a, b)
        if op == "%":
            return np.fmod(a, b)  # Go's math.Mod: the sign follows the dividend
        if op == "^":
            return np.power(a, b)
    raise QueryError(f"unsupported binary operator {op}")


_COMPARE = {"==": np.equal, "!=": np.not_equal, ">": np.greater, ">=": np.greater_equal,
            "<": np.less, "<=": np.less_equal}


def compare(op: str, a: F64, b: F64) -> Mask:
    out: Mask = _COMPARE[op](a, b)
    return out


def binary(node: A.BinaryOp, left: Value, right: Value) -> Value:
    op = node.op
    if isinstance(left, Scalar) and isinstance(right, Scalar):
        if op in A.COMPARISON_OPS:  # Loki folds scalar comparisons to 0/1
            return Scalar(compare(op, left.values, right.values).astype(np.float64))
        return Scalar(arith(op, left.values, right.values))
    if isinstance(left, Vec) and isinstance(right, Scalar):
        return _with_scalar(node, left, right.values, scalar_left=False)
    if isinstance(left, Scalar) and isinstance(right, Vec):
        return _with_scalar(node, right, left.values, scalar_left=True)
    assert isinstance(left, Vec) and isinstance(right, Vec)
    if op in A.SET_OPS:
        return _set_op(node, left, right)
    return _vector_op(node, left, right)


def _with_scalar(node: A.BinaryOp, vec: Vec, sc: F64, scalar_left: bool) -> Vec:
    out = []
    for s in vec.series:
        a, b = (sc, s.values) if scalar_left else (s.values, sc)
        if node.op in A.COMPARISON_OPS:
            ok = compare(node.op, a, b)
            if node.return_bool:
                out.append(Series(s.labels, ok.astype(np.float64), s.present))
            else:  # a filter keeps the vector's own value, whichever side it is on
                out.append(Series(s.labels, s.values, s.present & ok))
        else:
            out.append(Series(s.labels, arith(node.op, a, b), s.present))
    return Vec(out)


def signature(labels: LabelKey, m: A.VectorMatching | None) -> LabelKey:
    if m is None:
        return labels
    names = set(m.labels)
    if m.on:
        return tuple(kv for kv in labels if kv[0] in names)
    return tuple(kv for kv in labels if kv[0] not in names)


def _presence(vec: Vec, m: A.VectorMatching | None) -> dict[LabelKey, Mask]:
    out: dict[LabelKey, Mask] = {}
    for s in vec.series:
        sig = signature(s.labels, m)
        prev = out.get(sig)
        out[sig] = s.present.copy() if prev is None else prev | s.present
    return out


def _set_op(node: A.BinaryOp, left: Vec, right: Vec) -> Vec:
    m = node.matching
    if m is not None and m.card:
        raise QueryError(f"no grouping allowed for \"{node.op}\" operation")
    if node.op == "or":
        lp = _presence(left, m)
        extra = []
        for s in right.series:
            hit = lp.get(signature(s.labels, m))
            extra.append(Series(s.labels, s.values,
                                s.present if hit is None else s.present & ~hit))
        return Vec(list(left.series) + extra)
    rp = _presence(right, m)
    out = []
    for s in left.series:
        hit = rp.get(signature(s.labels, m))
        if hit is None:
            hit = np.zeros(len(s.present), dtype=np.bool_)
        keep = s.present & (hit if node.op == "and" else ~hit)
        out.append(Series(s.labels, s.values, keep))
    return Vec(out)


def _result_labels(many: LabelKey, one: LabelKey, m: A.VectorMatching | None) -> LabelKey:
    if m is None:
        return many
    labels = dict(many)
    if not m.card:
        if m.on:
            labels = {k: v for k, v in labels.items() if k in m.labels}
        else:
            for k in m.labels:
                labels.pop(k, None)
    else:
        ones = dict(one)
        for k in m.include:  # group_x(labels) copies these from the "one" side
            if ones.get(k):
                labels[k] = ones[k]
            else:
                labels.pop(k, None)
    return tuple(sorted(labels.items()))


def _one_side(vec: Vec, m: A.VectorMatching | None, side: str) -> dict[LabelKey, list[Series]]:
    out: dict[LabelKey, list[Series]] = {}
    for s in vec.series:
        out.setdefault(signature(s.labels, m), []).append(s)
    for sig, group in out.items():
        if len(group) > 1:
            total = np.sum([g.present for g in group], axis=0)
            if bool((total > 1).any()):
                raise QueryError(
                    f"found duplicate series for the match group {dict(sig)} on the {side} "
                    "hand-side of the operation; many-to-many matching not allowed: "
                    "matching labels must be unique on one side")
    return out


def _vector_op(node: A.BinaryOp, left: Vec, right: Vec) -> Vec:
    m = node.matching
    card = m.card if m is not None else ""
    swap = card == "group_right"
    many, one = (right, left) if swap else (left, right)
    ones = _one_side(one, m, "left" if swap else "right")
    out = []
    for s in many.series:
        for o in ones.get(signature(s.labels, m), ()):
            both = s.present & o.present
            if not bool(both.any()):
                continue
            lv, rv = (o.values, s.values) if swap else (s.values, o.values)
            labels = _result_labels(s.labels, o.labels, m)
            if node.op in A.COMPARISON_OPS:
                ok = compare(node.op, lv, rv)
                if node.return_bool:
                    out.append(Series(labels, ok.astype(np.float64), both))
                else:
                    out.append(Series(labels, lv, both & ok))
            else:
                out.append(Series(labels, arith(node.op, lv, rv), both))
    result = Vec(out)
    try:
        check_unique(result, "binary operation")
    except QueryError:
        raise QueryError(
            "multiple matches for labels: many-to-one matching must be explicit "
            "(group_left/group_right)" if not card else
            "multiple matches for labels: grouping labels must ensure unique matches") from None
    return _merge_same(result)


def _merge_same(vec: Vec) -> Vec:
    """Fold series that ended up with one label set (disjoint in time) into one."""
    merged: dict[LabelKey, Series] = {}
    for s in vec.series:
        prev = merged.get(s.labels)
        if prev is None:
            merged[s.labels] = Series(s.labels, s.values.copy(), s.present.copy())
        else:
            prev.values = np.where(s.present, s.values, prev.values)
            prev.present |= s.present
    return Vec(list(merged.values()))
