"""The log half of the LogQL grammar: selectors, line filters, parsers, label filters,
formatting stages and `unwrap`; values are validated here so errors carry positions."""

from __future__ import annotations

from collections.abc import Sequence

import re2

from sluiceway.logql import _ast as A
from sluiceway.logql._errors import ParseError
from sluiceway.logql._jsonpath import JsonPathError, parse_path
from sluiceway.logql._lexer import Token, parse_bytes
from sluiceway.logql._parse_base import TokenCursor
from sluiceway.logql._pattern import PatternError, compile_pattern
from sluiceway.logql._regex import compile_re, error_text
from sluiceway.model import Matcher

LINE_OPS = ("|=", "!=", "|~", "!~", "|>", "!>")
_PARSERS = ("json", "logfmt", "regexp", "pattern", "unpack")
STAGE_WORDS = frozenset(_PARSERS + ("decolorize", "line_format", "label_format", "drop",
                                    "keep", "unwrap"))
# Words that end a label filter expression instead of starting another (implicit `and`).
_LF_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "offset", "bool", "on",
                          "ignoring", "group_left", "group_right"})
_UNWRAP_CONV = ("duration", "duration_seconds", "bytes")
EMPTY_SELECTOR = (
    "queries require at least one regexp or equality matcher that does not have an "
    "empty-compatible value. For instance, app=~\".*\" does not meet this requirement, "
    "but app=~\".+\" will"
)


class LogParser(TokenCursor):
    """Parses `{selector} stages...`; the metric parser extends it with ranges and operators."""

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
        if check_empty:
            check_selector(out)
        return tuple(out)

    def pipeline(self, allow_unwrap: bool) -> tuple[tuple[A.Stage, ...], A.Unwrap | None]:
        stages: list[A.Stage] = []
        while True:
            if self.tok.kind == "OP" and self.tok.text in LINE_OPS:
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
        if t.kind == "IDENT" and t.text in STAGE_WORDS:  # keywords, as in Loki's lexer
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
            if self.peek().text in STAGE_WORDS:
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
            self.nest()
            try:
                inner = self.label_filter_or()
            finally:
                self.unnest()
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
            secs = self.duration(vt) / 1e9
            return A.LabelCompare(name, op, "duration", sign + vt.text, -secs if sign else secs)
        if vt.kind == "BYTES":
            if sign:  # Loki's grammar takes no sign before a bytes literal
                self.fail("NUMBER")
            self.next()
            return A.LabelCompare(name, op, "bytes", vt.text, parse_bytes(vt.text) or 0.0)
        self.fail("STRING, NUMBER, DURATION or BYTES")


def _matcher(name: str, op: str, value: str, tok: Token) -> Matcher:
    try:
        if op in ("=~", "!~"):
            compile_re(f"^(?:{value})$")
        return Matcher(name, op, value)
    except re2.error as exc:
        raise ParseError(f"error parsing regexp: {error_text(exc)}", tok.line, tok.col) from None


def _non_empty(m: Matcher) -> bool:
    return m.op in ("=", "=~") and not m.matches("")


def check_selector(matchers: Sequence[Matcher]) -> None:
    """Loki's rule: at least one `=` or `=~` matcher that the empty value fails."""
    if not any(_non_empty(m) for m in matchers):
        raise ParseError(EMPTY_SELECTOR)


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
