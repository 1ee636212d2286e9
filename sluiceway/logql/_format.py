"""`format_query`: the canonical one-line text of an expression (Loki's /format_query).

The output parses back to an equal AST: strings are Go-quoted, typed literals keep
their original text and durations are printed in Prometheus units.
"""

from __future__ import annotations

from sluiceway.logql import _ast as A
from sluiceway.logql._parser import binary_precedence

_UNITS = (("y", 31_536_000_000_000_000), ("w", 604_800_000_000_000),
          ("d", 86_400_000_000_000), ("h", 3_600_000_000_000), ("m", 60_000_000_000),
          ("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000), ("ns", 1))


def go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_duration(ns: int) -> str:
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    parts: list[str] = []
    for unit, size in _UNITS:
        q, ns = divmod(ns, size)
        if q:
            parts.append(f"{q}{unit}")
    return sign + "".join(parts)


def format_number(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _matchers(ms: tuple[object, ...]) -> str:
    return "{" + ", ".join(str(m) for m in ms) + "}"


def _spec(s: A.LabelsSpec) -> str:
    return s.name if s.matcher is None else str(s.matcher)


def _params(ps: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{k}={go_quote(v)}" for k, v in ps)


def format_label_filter(e: A.LabelFilterExpr, parent: str = "", right: bool = False) -> str:
    if isinstance(e, A.LabelBinary):
        first, *rest = A.label_chain(e)
        # Chains group to the left when parsed, so a same-op right child needs parens.
        text = f" {e.op} ".join([format_label_filter(first, e.op),
                                 *(format_label_filter(x, e.op, True) for x in rest)])
        return f"({text})" if parent and (parent != e.op or right) else text
    if e.kind == "string":
        return f"{e.name}{e.op}{go_quote(e.raw)}"
    if e.kind == "ip":
        return f"{e.name}{e.op}ip({go_quote(e.raw)})"
    return f"{e.name}{e.op}{e.raw}"


def format_stage(st: A.Stage) -> str:
    if isinstance(st, A.LineFilter):
        vals = [f"ip({go_quote(v)})" if st.ip else go_quote(v) for v in st.values]
        return f"{st.op} " + " or ".join(vals)
    if isinstance(st, A.JsonParser):
        return "| json" + (" " + _params(st.params) if st.params else "")
    if isinstance(st, A.LogfmtParser):
        flags = (" --strict" if st.strict else "") + (" --keep-empty" if st.keep_empty else "")
        return "| logfmt" + flags + (" " + _params(st.params) if st.params else "")
    if isinstance(st, A.RegexpParser):
        return f"| regexp {go_quote(st.pattern)}"
    if isinstance(st, A.PatternParser):
        return f"| pattern {go_quote(st.pattern)}"
    if isinstance(st, A.UnpackParser):
        return "| unpack"
    if isinstance(st, A.Decolorize):
        return "| decolorize"
    if isinstance(st, A.LabelFilter):
        return "| " + format_label_filter(st.expr)
    if isinstance(st, A.LineFormat):
        return f"| line_format {go_quote(st.template)}"
    if isinstance(st, A.LabelFormat):
        items = [f"{i.dst}={go_quote(i.value) if i.template else i.value}" for i in st.items]
        return "| label_format " + ", ".join(items)
    if isinstance(st, A.Drop):
        return "| drop " + ", ".join(_spec(s) for s in st.items)
    return "| keep " + ", ".join(_spec(s) for s in st.items)


def format_log(e: A.LogExpr) -> str:
    return " ".join([_matchers(e.matchers)] + [format_stage(s) for s in e.stages])


def _grouping(g: A.Grouping | None) -> str:
    if g is None:
        return ""
    return f"{'without' if g.without else 'by'} ({', '.join(g.labels)})"


def _range(r: A.LogRange) -> str:
    text = format_log(r.log)
    if r.unwrap is not None:
        u = r.unwrap
        target = f"{u.conv}({u.label})" if u.conv else u.label
        text += f" | unwrap {target}"
        for pf in u.post_filters:
            text += " " + format_stage(pf)
    sep = " " if r.log.stages or r.unwrap is not None else ""
    text += f"{sep}[{format_duration(r.range_ns)}]"
    if r.offset_ns:
        text += f" offset {format_duration(r.offset_ns)}"
    return text


def _needs_parens(child: A.Expr, parent_op: str, right: bool) -> bool:
    if not isinstance(child, A.BinaryOp):
        return isinstance(child, A.Literal) and child.value < 0 and not right
    cp, pp = binary_precedence(child.op), binary_precedence(parent_op)
    if cp != pp:
        return cp < pp
    return right != (parent_op == "^")


def format_query(expr: A.Expr, width: int = 100) -> str:
    """Canonical LogQL text for an AST, parsing back to an equal AST.

    An expression that fits in `width` characters stays on one line; a longer one is
    split like Loki's formatter does: pipeline stages one per line, function arguments
    and binary operands indented on their own lines. Only whitespace differs from the
    one-line form, so both parse to the same AST.
    """
    return _pretty(expr, 0, width)


def _ind(level: int) -> str:
    return "  " * level


def _pretty(e: A.Expr, level: int, width: int) -> str:
    flat = format_one_line(e)
    if len(flat) + 2 * level <= width:
        return _ind(level) + flat
    if isinstance(e, A.LogExpr):
        return _pretty_log(e, level)
    if isinstance(e, A.RangeAggregation):
        param = f"{_ind(level + 1)}{format_number(e.param)},\n" if e.param is not None else ""
        g = _grouping(e.grouping)
        return (f"{_ind(level)}{e.op}(\n{param}{_pretty_range(e.range, level + 1)}\n"
                f"{_ind(level)})" + (f" {g}" if g else ""))
    if isinstance(e, A.VectorAggregation):
        g = _grouping(e.grouping)
        param = f"{_ind(level + 1)}{e.param},\n" if e.param is not None else ""
        return (f"{_ind(level)}{e.op}{' ' + g + ' ' if g else ''}(\n{param}"
                f"{_pretty(e.expr, level + 1, width)}\n{_ind(level)})")
    if isinstance(e, A.LabelReplace):
        args = ",\n".join(_ind(level + 1) + go_quote(a)
                          for a in (e.dst, e.replacement, e.src, e.regex))
        return (f"{_ind(level)}label_replace(\n{_pretty(e.expr, level + 1, width)},\n"
                f"{args}\n{_ind(level)})")
    if isinstance(e, A.BinaryOp):
        nodes = _same_level_chain(e)
        first = nodes[0].left
        lines = [_pretty_operand(first, _needs_parens(first, nodes[0].op, False), level + 1,
                                 width)]
        for node in nodes:
            lines.append(f"{_ind(level)}{node.op}{_modifiers(node)}")
            lines.append(_pretty_operand(node.right, _needs_parens(node.right, node.op, True),
                                         level + 1, width))
        return "\n".join(lines)
    return _ind(level) + flat


def _same_level_chain(e: A.BinaryOp) -> list[A.BinaryOp]:
    """`a + b - c ...` as its operator nodes, innermost first: operators of one precedence
    that group to the left are printed at one level (Loki indents each one further in,
    which makes a long chain's text grow with its square)."""
    nodes, node = [e], e
    while (isinstance(node.left, A.BinaryOp)
           and binary_precedence(node.left.op) == binary_precedence(node.op)
           and not _needs_parens(node.left, node.op, False)):
        node = node.left
        nodes.append(node)
    return nodes[::-1]


def _pretty_operand(e: A.Expr, parens: bool, level: int, width: int) -> str:
    if not parens:
        return _pretty(e, level, width)
    return f"{_ind(level)}(\n{_pretty(e, level + 1, width)}\n{_ind(level)})"


def _pretty_log(e: A.LogExpr, level: int) -> str:
    lines = [_ind(level) + _matchers(e.matchers)]
    lines += [_ind(level + 1) + format_stage(s) for s in e.stages]
    return "\n".join(lines)


def _pretty_range(r: A.LogRange, level: int) -> str:
    text = _pretty_log(r.log, level)
    if r.unwrap is not None:
        u = r.unwrap
        target = f"{u.conv}({u.label})" if u.conv else u.label
        text += f"\n{_ind(level + 1)}| unwrap {target}"
        for pf in u.post_filters:
            text += f"\n{_ind(level + 1)}{format_stage(pf)}"
    text += f" [{format_duration(r.range_ns)}]"
    if r.offset_ns:
        text += f" offset {format_duration(r.offset_ns)}"
    return text


def format_one_line(expr: A.Expr) -> str:
    """The single-line canonical text of an expression."""
    if isinstance(expr, A.LogExpr):
        return format_log(expr)
    if isinstance(expr, A.Literal):
        return format_number(expr.value)
    if isinstance(expr, A.VectorExpr):
        return f"vector({format_number(expr.value)})"
    if isinstance(expr, A.RangeAggregation):
        param = f"{format_number(expr.param)}, " if expr.param is not None else ""
        g = _grouping(expr.grouping)
        return f"{expr.op}({param}{_range(expr.range)})" + (f" {g}" if g else "")
    if isinstance(expr, A.VectorAggregation):
        g = _grouping(expr.grouping)
        param = f"{expr.param}, " if expr.param is not None else ""
        return f"{expr.op}{' ' + g + ' ' if g else ''}({param}{format_one_line(expr.expr)})"
    if isinstance(expr, A.LabelReplace):
        args = ", ".join(go_quote(a) for a in (expr.dst, expr.replacement, expr.src, expr.regex))
        return f"label_replace({format_one_line(expr.expr)}, {args})"
    return _binary(expr)


def _binary(e: A.BinaryOp) -> str:
    # The left spine in a loop: a chain `a + b + ...` is as deep as it is long.
    spine, node = [e], e
    while isinstance(node.left, A.BinaryOp):
        node = node.left
        spine.append(node)
    text = format_one_line(node.left)
    for n in reversed(spine):
        left = f"({text})" if _needs_parens(n.left, n.op, False) else text
        right = format_one_line(n.right)
        if _needs_parens(n.right, n.op, True):
            right = f"({right})"
        text = f"{left} {n.op}{_modifiers(n)} {right}"
    return text


def _modifiers(e: A.BinaryOp) -> str:
    mods = " bool" if e.return_bool else ""
    m = e.matching
    if m is not None:
        mods += f" {'on' if m.on else 'ignoring'} ({', '.join(m.labels)})"
        if m.card:
            mods += f" {m.card} ({', '.join(m.include)})"
    return mods


# --- Loki's own String() form --------------------------------------------------------
# What Loki prints for a parsed expression where it shows one back (the `query` of
# /prometheus/api/v1/rules): binary operations always in parentheses, no space between a
# pipeline and its range, `by (a,b)` without spaces after commas.


def _go_duration(ns: int) -> str:
    """Go's time.Duration.String() (used for `offset`): 1h0m0s, 1m30s, 500ms."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + f"{ns / size:.9f}".rstrip("0").rstrip(".") + unit
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    secs = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{sign}{h}h{m}m{secs}"
    return f"{sign}{m}m{secs}" if m else sign + secs


def _loki_grouping(g: A.Grouping | None, singleton_hidden: bool) -> str:
    if g is None or (singleton_hidden and not g.labels and not g.without):
        return ""
    return f" {'without' if g.without else 'by'} ({','.join(g.labels)})"


def _loki_stage(st: A.Stage) -> str:
    if isinstance(st, A.LabelFormat):
        return "| label_format " + ",".join(
            f"{i.dst}={go_quote(i.value) if i.template else i.value}" for i in st.items)
    if isinstance(st, A.JsonParser) and st.params:
        return "| json " + ",".join(f"{k}={go_quote(v)}" for k, v in st.params)
    if isinstance(st, A.Drop | A.Keep):
        return f"| {'drop' if isinstance(st, A.Drop) else 'keep'} " + ",".join(
            _spec(s) for s in st.items)
    return format_stage(st)


def _loki_log(e: A.LogExpr) -> str:
    return " ".join([_matchers(e.matchers)] + [_loki_stage(s) for s in e.stages])


def _loki_range(r: A.LogRange) -> str:
    text = _loki_log(r.log)
    if r.unwrap is not None:
        u = r.unwrap
        text += f" | unwrap {u.conv}({u.label})" if u.conv else f" | unwrap {u.label}"
        text += "".join(" " + format_stage(pf) for pf in u.post_filters)
    text += f"[{format_duration(r.range_ns)}]"
    if r.offset_ns:
        text += f" offset {_go_duration(r.offset_ns)}"
    return text


def format_loki(expr: A.Expr) -> str:
    """The expression as Loki's AST prints it (`syntax.Expr.String()`)."""
    from sluiceway.logql._template_funcs import go_float

    if isinstance(expr, A.LogExpr):
        return _loki_log(expr)
    if isinstance(expr, A.Literal):
        return go_float(expr.value)
    if isinstance(expr, A.VectorExpr):
        return f"vector({expr.value:f})"
    if isinstance(expr, A.RangeAggregation):
        param = "" if expr.param is None else f"{format_number(expr.param)},"
        return (f"{expr.op}({param}{_loki_range(expr.range)})"
                + _loki_grouping(expr.grouping, False))
    if isinstance(expr, A.VectorAggregation):
        args = [format_loki(expr.expr)]
        if expr.param is not None and (expr.param or expr.op in ("topk", "bottomk")):
            args.insert(0, str(expr.param))
        return f"{expr.op}{_loki_grouping(expr.grouping, True)}({','.join(args)})"
    if isinstance(expr, A.LabelReplace):
        quoted = ",".join(go_quote(a) for a in (expr.dst, expr.replacement, expr.src,
                                                expr.regex))
        return f"label_replace({format_loki(expr.expr)},{quoted})"
    return _loki_binary(expr)


def _loki_binary(e: A.BinaryOp) -> str:
    # The left spine in a loop, as `_binary`: chains are as deep as they are long.
    spine, node = [e], e
    while isinstance(node.left, A.BinaryOp):
        node = node.left
        spine.append(node)
    text = format_loki(node.left)
    for n in reversed(spine):
        text = f"({text} {_loki_op(n)} {format_loki(n.right)})"
    return text


def _loki_op(e: A.BinaryOp) -> str:
    op = e.op + (" bool" if e.return_bool else "")
    m = e.matching
    if m is not None:
        group = f"{m.card} ({','.join(m.include)})" if (m.include or m.card) else ""
        op = f"{op} {'on' if m.on else 'ignoring'} ({','.join(m.labels)}) {group}"
    return op
