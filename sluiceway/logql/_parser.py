"""Recursive-descent LogQL parser producing the `_ast` nodes (metric half here, the log
half in `_parse_log`).

Precedence of binary operators follows Loki's grammar (lowest first): `or`; `and`
`unless`; comparisons; `+ -`; `* / %`; `^` (right-associative).
"""

from __future__ import annotations

import math

import re2

from sluiceway.logql import _ast as A
from sluiceway.logql._errors import ParseError
from sluiceway.logql._lexer import Token
from sluiceway.logql._parse_base import NESTED_TOO_DEEPLY
from sluiceway.logql._parse_log import LogParser
from sluiceway.logql._regex import compile_re, error_text
from sluiceway.model import Matcher

_BIN_PREC = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, ">=": 3, "<": 3,
             "<=": 3, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "^": 6}


def binary_precedence(op: str) -> int:
    return _BIN_PREC[op]


class _Parser(LogParser):
    # --- expressions -------------------------------------------------------------

    def parse_query(self) -> A.Expr:
        expr = self.expr(1)
        if self.tok.kind != "EOF":
            self.fail()
        return expr

    def expr(self, min_prec: int) -> A.Expr:
        self.nest()
        try:
            return self._expr(min_prec)
        finally:
            self.unnest()

    def _expr(self, min_prec: int) -> A.Expr:
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
            offset = sign * self.duration(self.expect_kind("DURATION", "DURATION"))
        return self.duration(d), offset


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
    except RecursionError:  # not expected within MAX_NESTING; a clear 400 all the same
        raise ParseError(NESTED_TOO_DEEPLY) from None


def parse_selector(text: str, *, allow_empty: bool = False) -> list[Matcher]:
    """The matchers of a bare stream selector `{a="b", c=~"d"}` (for /series, /labels)."""
    try:
        p = _Parser(text)
        matchers = p.selector(check_empty=not allow_empty)
        if p.tok.kind != "EOF":
            p.fail()
    except RecursionError:
        raise ParseError(NESTED_TOO_DEEPLY) from None
    return list(matchers)
