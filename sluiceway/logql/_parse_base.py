"""Token cursor shared by the LogQL parsers: lookahead, expectations, Loki-style errors."""

from __future__ import annotations

from typing import NoReturn

from sluiceway.logql._errors import ParseError
from sluiceway.logql._lexer import Lexer, Token, duration_ns

# How deep parentheses, function calls, right-associative `^` and label filter groups may
# nest. Loki's parser has no such limit; this one recurses, and so do the evaluator and the
# formatter, so nesting is refused here, well inside Python's recursion limit, rather than
# anywhere later. Chains (`a + b + ...`, `x=1 and y=2 and ...`) do not nest: any length.
MAX_NESTING = 100
NESTED_TOO_DEEPLY = f"expression nested too deeply (more than {MAX_NESTING} levels)"


class TokenCursor:
    """A position in the token list; `fail` raises goyacc-style `unexpected X` errors."""

    def __init__(self, text: str) -> None:
        self.toks = Lexer(text).tokens()
        self.i = 0
        self.depth = 0

    def nest(self) -> None:
        """Enter one level of nesting (`unnest` leaves it)."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ParseError(NESTED_TOO_DEEPLY, self.tok.line, self.tok.col)

    def unnest(self) -> None:
        self.depth -= 1

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

    def duration(self, tok: Token) -> int:
        """The nanoseconds of a DURATION token; a parse error at it when they overflow."""
        try:
            return duration_ns(tok.text)
        except ValueError as exc:
            raise ParseError(f"{exc}: {tok.text}", tok.line, tok.col) from None

    def string(self) -> str:
        return self.expect_kind("STRING", "STRING").text

    def ident(self) -> str:
        return self.expect_kind("IDENT", "IDENTIFIER").text
