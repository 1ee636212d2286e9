"""LogQL abstract syntax tree: immutable, comparable nodes (log side and metric side).

The log side is a selector plus a tuple of pipeline stages; the metric side wraps log
ranges in range/vector aggregations and binary operations. Nodes keep the literal text
of typed values (durations, bytes) so that formatting reproduces what was parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from sluiceway.model import Matcher

# --- log pipeline stages -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineFilter:
    """`|= "a" or "b"`: op in `|= != |~ !~ |> !>`; values are OR-ed (negated ops: none match).

    `ip` marks `|= ip("cidr")` (only with `|=` and `!=`).
    """

    op: str
    values: tuple[str, ...]
    ip: bool = False


@dataclass(frozen=True, slots=True)
class JsonParser:
    """`| json` or `| json a="path", b`: params are (label, path)."""

    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LogfmtParser:
    strict: bool = False
    keep_empty: bool = False
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RegexpParser:
    pattern: str


@dataclass(frozen=True, slots=True)
class PatternParser:
    pattern: str


@dataclass(frozen=True, slots=True)
class UnpackParser:
    pass


@dataclass(frozen=True, slots=True)
class Decolorize:
    pass


@dataclass(frozen=True, slots=True)
class LabelCompare:
    """One label comparison. kind: string (op `= != =~ !~`), number, duration, bytes
    (op `== != > >= < <=`; `=` is normalised to `==`), ip (op `= !=`)."""

    name: str
    op: str
    kind: str
    raw: str  # literal text: the string value, number, duration or bytes as written
    value: float = 0.0  # number, seconds (duration) or bytes; 0 for string/ip


@dataclass(frozen=True, slots=True)
class LabelBinary:
    """`and` / `or` of two label filter expressions (`,` and a space mean `and`)."""

    op: str
    left: LabelFilterExpr
    right: LabelFilterExpr


LabelFilterExpr: TypeAlias = LabelCompare | LabelBinary


def label_chain(e: LabelBinary) -> list[LabelFilterExpr]:
    """The operands of `a and b and c ...` (a left-deep tree as long as the filter) in
    order, found by a loop: walkers that recurse per operand would not survive a long
    chain, while genuine nesting is bounded by the parser."""
    rights: list[LabelFilterExpr] = []
    node: LabelFilterExpr = e
    while isinstance(node, LabelBinary) and node.op == e.op:
        rights.append(node.right)
        node = node.left
    return [node, *reversed(rights)]


@dataclass(frozen=True, slots=True)
class LabelFilter:
    expr: LabelFilterExpr


@dataclass(frozen=True, slots=True)
class LineFormat:
    template: str


@dataclass(frozen=True, slots=True)
class LabelFmt:
    """`dst=src` (rename) when `template` is False, `dst="{{..}}"` when True."""

    dst: str
    value: str
    template: bool


@dataclass(frozen=True, slots=True)
class LabelFormat:
    items: tuple[LabelFmt, ...]


@dataclass(frozen=True, slots=True)
class LabelsSpec:
    """A `drop`/`keep` item: a bare name, or a name with a matcher on its value."""

    name: str
    matcher: Matcher | None = None


@dataclass(frozen=True, slots=True)
class Drop:
    items: tuple[LabelsSpec, ...]


@dataclass(frozen=True, slots=True)
class Keep:
    items: tuple[LabelsSpec, ...]


Stage: TypeAlias = (
    LineFilter | JsonParser | LogfmtParser | RegexpParser | PatternParser | UnpackParser
    | Decolorize | LabelFilter | LineFormat | LabelFormat | Drop | Keep
)


@dataclass(frozen=True, slots=True)
class LogExpr:
    """A log query: `{matchers} stages...`."""

    matchers: tuple[Matcher, ...]
    stages: tuple[Stage, ...] = ()


# --- metric side ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unwrap:
    """`| unwrap [conv(]label[)] | post filters`; conv in '', duration, duration_seconds, bytes."""

    label: str
    conv: str = ""
    post_filters: tuple[LabelFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class LogRange:
    log: LogExpr
    range_ns: int
    offset_ns: int = 0
    unwrap: Unwrap | None = None


@dataclass(frozen=True, slots=True)
class Grouping:
    """`by (a, b)` or `without (a)`; an empty tuple is `by ()`."""

    labels: tuple[str, ...]
    without: bool = False


@dataclass(frozen=True, slots=True)
class RangeAggregation:
    op: str
    range: LogRange
    param: float | None = None  # quantile_over_time's φ
    grouping: Grouping | None = None


@dataclass(frozen=True, slots=True)
class VectorAggregation:
    op: str
    expr: Expr
    grouping: Grouping | None = None
    param: int | None = None  # topk/bottomk k


@dataclass(frozen=True, slots=True)
class VectorMatching:
    """`on(..)`/`ignoring(..)` and `group_left(..)`/`group_right(..)` of a binary op."""

    on: bool
    labels: tuple[str, ...]
    card: str = ""  # "", group_left, group_right
    include: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BinaryOp:
    op: str
    left: Expr
    right: Expr
    return_bool: bool = False
    matching: VectorMatching | None = None


@dataclass(frozen=True, slots=True)
class Literal:
    value: float


@dataclass(frozen=True, slots=True)
class VectorExpr:
    """`vector(1)`."""

    value: float


@dataclass(frozen=True, slots=True)
class LabelReplace:
    expr: Expr
    dst: str
    replacement: str
    src: str
    regex: str


MetricExpr: TypeAlias = (
    RangeAggregation | VectorAggregation | BinaryOp | Literal | VectorExpr | LabelReplace
)
Expr: TypeAlias = LogExpr | MetricExpr

RANGE_OPS = (
    "rate", "rate_counter", "count_over_time", "bytes_rate", "bytes_over_time",
    "absent_over_time", "sum_over_time", "avg_over_time", "max_over_time", "min_over_time",
    "stdvar_over_time", "stddev_over_time", "quantile_over_time", "first_over_time",
    "last_over_time",
)
# Range aggregations over log lines (no unwrap) versus over unwrapped values.
LOG_RANGE_OPS = frozenset({"rate", "count_over_time", "bytes_rate", "bytes_over_time",
                           "absent_over_time"})
UNWRAP_RANGE_OPS = frozenset({"rate", "rate_counter", "sum_over_time", "avg_over_time",
                              "max_over_time", "min_over_time", "stdvar_over_time",
                              "stddev_over_time", "quantile_over_time", "first_over_time",
                              "last_over_time", "absent_over_time"})
GROUPABLE_RANGE_OPS = frozenset({"avg_over_time", "max_over_time", "min_over_time",
                                 "stdvar_over_time", "stddev_over_time", "quantile_over_time",
                                 "first_over_time", "last_over_time"})
VECTOR_OPS = ("sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk",
              "sort", "sort_desc", "approx_topk")
PARAM_VECTOR_OPS = frozenset({"topk", "bottomk", "approx_topk"})
COMPARISON_OPS = frozenset({"==", "!=", ">", ">=", "<", "<="})
SET_OPS = frozenset({"and", "or", "unless"})


def is_log(expr: Expr) -> bool:
    return isinstance(expr, LogExpr)
