"""Label filters as masks over dictionary-encoded columns.

Each leaf is evaluated once per distinct value (cached across blocks) and spread to the
lines through their codes. `and`/`or` keep the per-line reference's short-circuit order,
which matters because a typed comparison that cannot convert its value sets
`__error__="LabelFilterErr"` (unless an error is already set) and later leaves see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sluiceway.logql import _ast as A
from sluiceway.logql._columnar_scan import Col, Mask
from sluiceway.logql._filters import ip_in_text, parse_ip_range
from sluiceway.logql._lexer import CONVERTERS
from sluiceway.model import Matcher

ERROR = "__error__"
# Error codes of a line (0 = none); index = code.
ERROR_NAMES = ("", "JSONParserErr", "LogfmtParserErr", "LabelFilterErr", "SampleExtractionErr")
JSON_ERR, LOGFMT_ERR, LABEL_FILTER_ERR, SAMPLE_ERR = 1, 2, 3, 4
ErrCodes = npt.NDArray[np.int8]
_CACHE_MAX = 100_000

_CMP: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


def error_col(err: ErrCodes) -> Col:
    return Col(err.astype(np.int64) - 1, list(ERROR_NAMES[1:]))


@dataclass(slots=True)
class _Leaf:
    """One comparison; `test(value) -> (passes, sets an error)`."""

    name: str
    test: Callable[[str], tuple[bool, bool]]
    missing: bool  # result for a line without the label
    ip: bool = False  # ip(): a line that already has an error passes
    cache: dict[str, tuple[bool, bool]] = field(default_factory=dict)

    def per_value(self, values: list[str]) -> tuple[Mask, Mask]:
        """(passes, error) per value, plus a last slot for an absent label."""
        res = np.empty(len(values) + 1, dtype=np.bool_)
        err = np.zeros(len(values) + 1, dtype=np.bool_)
        cache = self.cache
        if len(cache) > _CACHE_MAX:
            cache.clear()
        for k, v in enumerate(values):
            got = cache.get(v)
            if got is None:
                got = cache[v] = self.test(v)
            res[k], err[k] = got
        res[-1] = self.missing
        return res, err


def _leaf(e: A.LabelCompare) -> _Leaf:
    name = e.name
    if e.kind == "string":
        m = Matcher(name, e.op, e.raw)
        return _Leaf(name, lambda v: (m.matches(v), False), m.matches(""))
    if e.kind == "ip":
        contains, positive = parse_ip_range(e.raw), e.op == "="
        return _Leaf(name, lambda v: (ip_in_text(contains, v) == positive, False), False,
                     ip=True)
    convert, _ = CONVERTERS[e.kind]
    cmp, want = _CMP[e.op], e.value

    def typed(v: str) -> tuple[bool, bool]:
        x = convert(v)
        return (True, True) if x is None else (cmp(x, want), False)

    return _Leaf(name, typed, False)


@dataclass(slots=True)
class VecFilter:
    """A compiled label filter expression (a tree of `_Leaf` and and/or nodes)."""

    node: Any  # _Leaf | tuple[str, VecFilter, VecFilter]

    def __call__(self, env: dict[str, Col], err: ErrCodes, active: Mask) -> Mask:
        """Lines of `active` that pass; sets LabelFilterErr in `err` like the reference."""
        node = self.node
        if isinstance(node, tuple):
            op, left, right = node
            got: Mask = left(env, err, active)
            if op == "and":
                out: Mask = right(env, err, got)
                return out
            rest: Mask = right(env, err, active & ~got)
            return got | rest
        leaf: _Leaf = node
        col = error_col(err) if leaf.name == ERROR else env.get(leaf.name)
        n = len(active)
        if col is None:
            res = np.full(n, leaf.missing, dtype=np.bool_)
            return res & active
        res_v, err_v = leaf.per_value(col.values)
        res = res_v[col.codes]
        if leaf.ip:  # an entry that already has an error passes
            res |= err != 0
        sets = err_v[col.codes] & active & (err == 0)
        if sets.any():
            err[sets] = LABEL_FILTER_ERR
        return res & active


def compile_vec_filter(e: A.LabelFilterExpr) -> VecFilter:
    if isinstance(e, A.LabelBinary):
        return VecFilter((e.op, compile_vec_filter(e.left), compile_vec_filter(e.right)))
    return VecFilter(_leaf(e))


def filter_names(e: A.LabelFilterExpr) -> set[str]:
    if isinstance(e, A.LabelBinary):
        return filter_names(e.left) | filter_names(e.right)
    return {e.name}
