"""Recursive-descent LogQL parser producing the `_ast` nodes.

Precedence of binary operators follows Loki's grammar (lowest first): `or`; `and`
`unless`; comparisons; `+ -`; `* / %`; `^` (right-associative).
"""

from __future__ import annotations

import math
from typing import NoReturn

import re2

from sluiceway.logql import _ast as A
from sluiceway.logql._errors import ParseError
from sluiceway.logql._jsonpath import JsonPathError, parse_path
from sluiceway.logql._lexer import Lexer, Token, duration_ns, parse_bytes
from sluiceway.logql._pattern import PatternError, compile_pattern
from sluiceway.logql._regex import compile_re, error_text
from sluiceway.model import Matcher

_BIN_PREC = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, ">=": 3, "<": 3,
             "<=": 3, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "^": 6}
_LINE_OPS = ("|=", "!=", "|~", "!~", "|>", "!>")
_PARSERS = ("json", "logfmt", "regexp", "pattern", "unpack")
_STAGE_WORDS = frozenset(_PARSERS + ("decolorize", "line_format", "label_format", "drop",
                                     "keep", "unwrap"))
_LF_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "offset", "bool", "on",
                          "ignoring", "group_left", "group_right"})
_UNWRAP_CONV = ("duration", "duration_seconds", "bytes")
_EMPTY_SELECTOR = (
    "queries require at least one regexp or equality matcher that does not have an "
    "empty-compatible value. For instance, app=~\".*\" does not meet this requirement, "
    "but app=~\".+\" will"
)


def binary_precedence(op: str) -> int:
    return _BIN_PREC[op]


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = Lexer(text).tokens()
        self.i = 0

    # --- token helpers -----------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "OP" and self.tok.text in ops

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "IDENT" and self.tok.text in words

    def fail(self, expecting: str = "", tok: Token | None = None) -> NoReturn:
        t = tok or self.tok
        msg = f"syntax error: unexpected {t.describe()}"
        if expecting:
            msg += f", expecting {expecting}"
        raise ParseError(msg, t.line, t.col)

    def expect_op(self, op: str, expecting: str = "") -> Token:
        if not self.is_op(op):
            self.fail(expecting or op)
        return self.next()

    def expect_kind(self, kind: str, expecting: str) -> Token:
        if self.tok.kind != kind:
            self.fail(expecting)
        return self.next()

    def string(self) -> str:
        return self.expect_kind("STRING", "STRING").text

    def ident(self) -> str:
        return self.expect_kind("IDENT", "IDENTIFIER").text

    # --- expressions -------------------------------------------------------------

    def parse_query(self) -> A.Expr:
        expr = self.expr(1)
        if self.tok.kind != "EOF":
            self.fail()
        return expr

    def expr(self, min_prec: int) -> A.Expr:
        left = self.unary()
        while True:
            t = self.tok
            op = t.text if t.kind == "OP" or t.kind == "IDENT" else ""
            prec = _BIN_PREC.get(op)
            if t.kind == "IDENT" and op not in A.SET_OPS:
                prec = None
            if prec is None or prec < min_prec:
                return left
            if isinstance(left, A.LogExpr):
                self.fail()
            self.next()
            return_bool, matching = self.bin_modifiers(op, t)
            start = self.tok
            right = self.expr(prec if op == "^" else prec + 1)
            if isinstance(right, A.LogExpr):
                self.fail(tok=start)
            if op in A.SET_OPS and (isinstance(left, A.Literal) or isinstance(right, A.Literal)):
                side = "left" if isinstance(left, A.Literal) else "right"
                raise ParseError(f"unexpected literal for {side} leg of logical/set binary "
                                 f"operation ({op})")
            left = A.BinaryOp(op, left, right, return_bool, matching)

    def bin_modifiers(self, op: str, optok: Token) -> tuple[bool, A.VectorMatching | None]:
        return_bool = False
        if self.is_word("bool"):
            if op not in A.COMPARISON_OPS:
                raise ParseError("bool modifier can only be used on comparison operators",
                                 self.tok.line, self.tok.col)
            self.next()
            return_bool = True
        matching = None
        if self.is_word("on", "ignoring"):
            on = self.next().text == "on"
            labels = self.label_list()
            card = ""
            include: tuple[str, ...] = ()
            if self.is_word("group_left", "group_right"):
                card = self.next().text
                include = self.label_list() if self.is_op("(") else ()
            matching = A.VectorMatching(on, labels, card, include)
        return return_bool, matching

    def unary(self) -> A.Expr:
        t = self.tok
        if t.kind == "OP" and t.text in ("-", "+"):
            nxt = self.peek()
            if nxt.kind != "NUMBER":
                self.fail("NUMBER", nxt)
            self.next()
            v = float(self.next().text)
            return A.Literal(-v if t.text == "-" else v)
        if t.kind == "NUMBER":
            self.next()
            return A.Literal(float(t.text))
        if self.is_op("("):
            self.next()
            inner = self.expr(1)
            self.expect_op(")")
            return inner
        if self.is_op("{"):
            return self.log_expr()
        if t.kind == "IDENT" and self.peek().kind == "OP" and self.peek().text in ("(",):
            return self.function()
        if t.kind == "IDENT" and t.text in A.VECTOR_OPS and self.peek().text in ("by",
                                                                                  "without"):
            return self.vector_agg()
        self.fail()

    def function(self) -> A.Expr:
        name = self.tok.text
        if name in A.RANGE_OPS:
            return self.range_agg()
        if name in A.VECTOR_OPS:
            return self.vector_agg()
        if name == "vector":
            self.next()
            self.next()
            v = self.signed_number()
            self.expect_op(")")
            return A.VectorExpr(v)
        if name == "label_replace":
            return self.label_replace()
        self.fail()

    def signed_number(self) -> float:
        sign = 1.0
        if self.is_op("-", "+"):
            sign = -1.0 if self.next().text == "-" else 1.0
        return sign * float(self.expect_kind("NUMBER", "NUMBER").text)

    def label_replace(self) -> A.Expr:
        self.next()
        self.next()
        start = self.tok
        inner = self.expr(1)
        if isinstance(inner, A.LogExpr):
            self.fail(tok=start)
        args: list[str] = []
        for _ in range(4):
            self.expect_op(",")
            args.append(self.string())
        self.expect_op(")")
        try:
            compile_re(args[3])
        except re2.error as exc:
            raise ParseError(f"invalid regex in label_replace: {error_text(exc)}") from None
        return A.LabelReplace(inner, args[0], args[1], args[2], args[3])

    def grouping(self) -> A.Grouping | None:
        if not self.is_word("by", "without"):
            return None
        without = self.next().text == "without"
        return A.Grouping(self.label_list(), without)

    def label_list(self) -> tuple[str, ...]:
        self.expect_op("(")
        out: list[str] = []
        while not self.is_op(")"):
            out.append(self.ident())
            if not self.is_op(")"):
                self.expect_op(",", ", or )")
        self.next()
        return tuple(out)

    def vector_agg(self) -> A.Expr:
        op = self.next().text
        grouping = self.grouping()
        self.expect_op("(")
        param: int | None = None
        if op in A.PARAM_VECTOR_OPS:
            t = self.tok
            value = self.signed_number()
            if not math.isfinite(value) or value != int(value):
                raise ParseError(f"invalid parameter for {op}: {t.text}", t.line, t.col)
            param = int(value)
            self.expect_op(",")
        start = self.tok
        inner = self.expr(1)
        if isinstance(inner, A.LogExpr):
            self.fail(tok=start)
        self.expect_op(")")
        gtok = self.tok
        after = self.grouping()
        if grouping is not None and after is not None:
            self.fail(tok=gtok)
        return A.VectorAggregation(op, inner, grouping or after, param)

    def range_agg(self) -> A.Expr:
        optok = self.next()
        op = optok.text
        self.next()
        param = None
        if op == "quantile_over_time":
            param = self.signed_number()
            self.expect_op(",")
        rng = self.log_range()
        self.expect_op(")")
        grouping = self.grouping()
        agg = A.RangeAggregation(op, rng, param, grouping)
        _validate_range(agg)
        return agg

    def log_range(self) -> A.LogRange:
        paren = self.is_op("(")
        if paren:
            self.next()
        matchers = self.selector()
        range_ns: int | None = None
        offset = 0
        if self.is_op("["):
            range_ns, offset = self.range_and_offset()
        stages, unwrap = self.pipeline(allow_unwrap=True)
        if paren:
            self.expect_op(")")
        if range_ns is None:
            range_ns, offset = self.range_and_offset()
        elif self.is_op("["):
            self.fail()
        return A.LogRange(A.LogExpr(matchers, stages), range_ns, offset, unwrap)

    def range_and_offset(self) -> tuple[int, int]:
        self.expect_op("[", "[")
        d = self.expect_kind("DURATION", "DURATION")
        self.expect_op("]")
        offset = 0
        if self.is_word("offset"):
            self.next()
            sign = 1
            if self.is_op("-"):
                self.next()
                sign = -1
            offset = sign * duration_ns(self.expect_kind("DURATION", "DURATION").text)
        return duration_ns(d.text), offset

    # --- log expressions ---------------------------------------------------------

    def log_expr(self) -> A.LogExpr:
        matchers = self.selector()
        stages, _ = self.pipeline(allow_unwrap=False)
        return A.LogExpr(matchers, stages)

    def selector(self, check_empty: bool = True) -> tuple[Matcher, ...]:
        self.expect_op("{", "{")
        out: list[Matcher] = []
        while True:
            if self.is_op("}") and not out:
                break
            name = self.ident()
            optok = self.tok
            if not self.is_op("=", "!=", "=~", "!~"):
                self.fail("=, !=, =~ or !~")
            self.next()
            out.append(_matcher(name, optok.text, self.string(), optok))
            if self.is_op("}"):
                break
            self.expect_op(",", "} or ,")
        self.next()
        if check_empty and not any(_non_empty(m) for m in out):
            raise ParseError(_EMPTY_SELECTOR)
        return tuple(out)

    def pipeline(self, allow_unwrap: bool) -> tuple[tuple[A.Stage, ...], A.Unwrap | None]:
        stages: list[A.Stage] = []
        while True:
            if self.tok.kind == "OP" and self.tok.text in _LINE_OPS:
                stages.append(self.line_filter())
            elif self.is_op("|"):
                if allow_unwrap and self.peek().kind == "IDENT" and self.peek().text == "unwrap":
                    return tuple(stages), self.unwrap()
                self.next()
                stages.append(self.stage())
            else:
                return tuple(stages), None

    def line_filter(self) -> A.LineFilter:
        optok = self.next()
        op = optok.text
        values: list[str] = []
        is_ip = False
        while True:
            if self.is_word("ip") and self.peek().text == "(" and op in ("|=", "!="):
                self.next()
                self.next()
                values.append(_check_cidr(self.string(), optok))
                self.expect_op(")")
                is_ip = True
            else:
                values.append(self.string())
            if self.is_word("or") and self.peek().kind == "STRING" or (
                    self.is_word("or") and self.peek().text == "ip"):
                self.next()
                continue
            break
        if is_ip and len(values) > 1:
            raise ParseError("syntax error: ip() cannot be combined with or", optok.line,
                             optok.col)
        for v in values:
            _check_filter_value(op, v, optok)
        return A.LineFilter(op, tuple(values), is_ip)

    def stage(self) -> A.Stage:
        t = self.tok
        if t.kind == "IDENT" and t.text in _STAGE_WORDS:  # keywords, as in Loki's lexer
            return self.keyword_stage(self.next().text, t)
        if t.kind == "IDENT" or self.is_op("("):
            return A.LabelFilter(self.label_filter_or())
        self.fail()

    def keyword_stage(self, word: str, t: Token) -> A.Stage:
        if word == "json":
            s = self.tok
            params = self.extraction_params()
            for _, path in params:
                try:
                    parse_path(path)
                except JsonPathError as exc:
                    raise ParseError(str(exc), s.line, s.col) from None
            return A.JsonParser(params)
        if word == "logfmt":
            strict = keep_empty = False
            while self.tok.kind == "FLAG":
                flag = self.next()
                if flag.text == "--strict":
                    strict = True
                elif flag.text == "--keep-empty":
                    keep_empty = True
                else:
                    self.fail(tok=flag)
            return A.LogfmtParser(strict, keep_empty, self.extraction_params())
        if word == "regexp":
            s = self.tok
            return A.RegexpParser(_check_regexp_parser(self.string(), s))
        if word == "pattern":
            s = self.tok
            text = self.string()
            try:
                compile_pattern(text)
            except PatternError as exc:
                raise ParseError(str(exc), s.line, s.col) from None
            return A.PatternParser(text)
        if word == "unpack":
            return A.UnpackParser()
        if word == "decolorize":
            return A.Decolorize()
        if word == "line_format":
            s = self.tok
            return A.LineFormat(_check_template(self.string(), s))
        if word == "label_format":
            return A.LabelFormat(self.label_fmt_items())
        if word in ("drop", "keep"):
            items = self.labels_specs()
            return A.Drop(items) if word == "drop" else A.Keep(items)
        self.fail(tok=t)  # unwrap outside a range aggregation

    def extraction_params(self) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        while self.tok.kind == "IDENT" and self.tok.text not in _LF_KEYWORDS:
            name = self.next().text
            if self.is_op("="):
                self.next()
                out.append((name, self.string()))
            else:
                out.append((name, name))
            if not self.is_op(","):
                break
            self.next()
            if self.tok.kind != "IDENT":
                self.fail("IDENTIFIER")
        return tuple(out)

    def label_fmt_items(self) -> tuple[A.LabelFmt, ...]:
        out: list[A.LabelFmt] = []
        while True:
            dtok = self.tok
            dst = self.ident()
            if dst == "__error__":
                raise ParseError("__error__ cannot be formatted", dtok.line, dtok.col)
            if any(i.dst == dst for i in out):
                raise ParseError(f"multiple label name '{dst}' not allowed in a single format "
                                 "operation", dtok.line, dtok.col)
            self.expect_op("=", "=")
            if self.tok.kind == "STRING":
                s = self.tok
                out.append(A.LabelFmt(dst, _check_template(self.next().text, s), True))
            else:
                out.append(A.LabelFmt(dst, self.ident(), False))
            if not self.is_op(","):
                return tuple(out)
            self.next()

    def labels_specs(self) -> tuple[A.LabelsSpec, ...]:
        out: list[A.LabelsSpec] = []
        while True:
            name = self.ident()
            if self.is_op("=", "!=", "=~", "!~"):
                optok = self.next()
                out.append(A.LabelsSpec(name, _matcher(name, optok.text, self.string(), optok)))
            else:
                out.append(A.LabelsSpec(name))
            if not self.is_op(","):
                return tuple(out)
            self.next()

    def unwrap(self) -> A.Unwrap:
        self.next()
        self.next()
        conv = ""
        if self.is_word(*_UNWRAP_CONV) and self.peek().text == "(":
            conv = self.next().text
            self.next()
            label = self.ident()
            self.expect_op(")")
        else:
            label = self.ident()
        posts: list[A.LabelFilter] = []
        while self.is_op("|") and (self.peek().kind == "IDENT" or self.peek().text == "("):
            if self.peek().text in _STAGE_WORDS:
                self.fail(tok=self.peek())
            self.next()
            posts.append(A.LabelFilter(self.label_filter_or()))
        return A.Unwrap(label, conv, tuple(posts))

    # --- label filters -----------------------------------------------------------

    def label_filter_or(self) -> A.LabelFilterExpr:
        left = self.label_filter_and()
        while self.is_word("or"):
            self.next()
            left = A.LabelBinary("or", left, self.label_filter_and())
        return left

    def label_filter_and(self) -> A.LabelFilterExpr:
        left = self.label_filter_primary()
        while True:
            if self.is_word("and") or self.is_op(","):
                self.next()
            elif not (self.is_op("(") or (self.tok.kind == "IDENT"
                                          and self.tok.text not in _LF_KEYWORDS)):
                return left
            left = A.LabelBinary("and", left, self.label_filter_primary())

    def label_filter_primary(self) -> A.LabelFilterExpr:
        if self.is_op("("):
            self.next()
            inner = self.label_filter_or()
            self.expect_op(")")
            return inner
        name = self.ident()
        optok = self.tok
        ops = ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<=")
        if not (optok.kind == "OP" and optok.text in ops):
            self.fail("comparison operator")
        op = self.next().text
        vt = self.tok
        if vt.kind == "STRING":
            if op not in ("=", "!=", "=~", "!~"):
                self.fail()
            value = self.next().text
            _matcher(name, op, value, optok)
            return A.LabelCompare(name, op, "string", value)
        if op in ("=~", "!~"):
            self.fail("STRING")
        if self.is_word("ip") and self.peek().text == "(":
            if op not in ("=", "!="):
                self.fail()
            self.next()
            self.next()
            cidr = _check_cidr(self.string(), vt)
            self.expect_op(")")
            return A.LabelCompare(name, op, "ip", cidr)
        return self.typed_compare(name, "==" if op == "=" else op)

    def typed_compare(self, name: str, op: str) -> A.LabelCompare:
        sign = ""
        if self.is_op("-", "+"):
            sign = self.next().text
            sign = "-" if sign == "-" else ""
        vt = self.tok
        if vt.kind == "NUMBER":
            self.next()
            raw = sign + vt.text
            return A.LabelCompare(name, op, "number", raw, float(raw))
        if vt.kind == "DURATION":
            self.next()
            secs = duration_ns(vt.text) / 1e9
            return A.LabelCompare(name, op, "duration", sign + vt.text, -secs if sign else secs)
        if vt.kind == "BYTES":
            self.next()
            b = parse_bytes(vt.text) or 0.0
            return A.LabelCompare(name, op, "bytes", sign + vt.text, -b if sign else b)
        self.fail("STRING, NUMBER, DURATION or BYTES")


# --- checks ------------------------------------------------------------------------------


def _matcher(name: str, op: str, value: str, tok: Token) -> Matcher:
    try:
        if op in ("=~", "!~"):
            compile_re(f"^(?:{value})$")
        return Matcher(name, op, value)
    except re2.error as exc:
        raise ParseError(f"error parsing regexp: {error_text(exc)}", tok.line, tok.col) from None


def _non_empty(m: Matcher) -> bool:
    return m.op in ("=", "=~") and not m.matches("")


def _check_cidr(text: str, tok: Token) -> str:
    from sluiceway.logql._filters import parse_ip_range

    try:
        parse_ip_range(text)
    except ValueError as exc:
        raise ParseError(f"invalid ip filter: {exc}", tok.line, tok.col) from None
    return text


def _check_filter_value(op: str, value: str, tok: Token) -> None:
    try:
        if op in ("|~", "!~"):
            compile_re(value)
        elif op in ("|>", "!>"):
            compile_pattern(value, need_capture=False)
    except re2.error as exc:
        raise ParseError(f"error parsing regexp: {error_text(exc)}", tok.line, tok.col) from None
    except PatternError as exc:
        raise ParseError(str(exc), tok.line, tok.col) from None


def _check_regexp_parser(text: str, tok: Token) -> str:
    try:
        rx = compile_re(text)
    except re2.error as exc:
        raise ParseError(f"error parsing regexp: {error_text(exc)}", tok.line, tok.col) from None
    if not rx.groupindex:
        raise ParseError("at least one named capture must be supplied", tok.line, tok.col)
    return text


def _check_template(text: str, tok: Token) -> str:
    from sluiceway.logql._template import TemplateError, compile_template

    try:
        compile_template(text)
    except TemplateError as exc:
        raise ParseError(f"invalid template: {exc}", tok.line, tok.col) from None
    return text


def _validate_range(agg: A.RangeAggregation) -> None:
    op = agg.op
    if agg.grouping is not None and op not in A.GROUPABLE_RANGE_OPS:
        raise ParseError(f"grouping not allowed for {op} aggregation")
    if agg.range.unwrap is not None:
        if op not in A.UNWRAP_RANGE_OPS:
            raise ParseError(f"invalid aggregation {op} with unwrap")
    elif op not in A.LOG_RANGE_OPS:
        raise ParseError(f"invalid aggregation {op} without unwrap")


def parse(text: str) -> A.Expr:
    """Parse a LogQL query; raises `ParseError` (a `QueryError`) with Loki's message style."""
    try:
        return _Parser(text).parse_query()
    except RecursionError:
        raise ParseError("expression nested too deeply") from None


def parse_selector(text: str, *, allow_empty: bool = False) -> list[Matcher]:
    """The matchers of a bare stream selector `{a="b", c=~"d"}` (for /series, /labels)."""
    try:
        p = _Parser(text)
        matchers = p.selector(check_empty=not allow_empty)
        if p.tok.kind != "EOF":
            p.fail()
    except RecursionError:
        raise ParseError("expression nested too deeply") from None
    return list(matchers)
