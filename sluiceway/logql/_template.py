"""A small, safe subset of Go text/template for `line_format` and `label_format`.

Supported: text, `{{ pipeline }}` with `-` trim markers, `{{/* comments */}}`,
`if` / `else if` / `else` / `end`, fields `.name`, literals (strings, numbers, booleans),
parenthesised pipelines, `|` chaining (the piped value is the last argument) and the
functions in `_template_funcs.FUNCS`. Nothing reaches Python objects beyond the label map.

For other users of the same language (the ruler's alert labels and annotations), a
template may be given extra functions, a `data` map its fields walk (`.Labels.job`) and
variables (`$value`, `$labels.job`); a missing map key is Go's `<no value>` there.

A render writes at most `limit` bytes (the query's `max_line_size`): functions that can
grow text (`repeat`, `indent`, `printf` widths, `replace`, ...) check the size of what they
would make before they make it, and every value and the output so far are checked as
they grow, so an oversized template fails (`TemplateFormatErr`) without building it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Union

import re2

from sluiceway.logql._limits import DEFAULT_MAX_LINE_SIZE
from sluiceway.logql._template_funcs import (
    FUNCS,
    SIZED,
    TemplateError,
    Timestamp,
    go_printf,
    over_limit,
    to_text,
    truthy,
)

__all__ = ["Template", "TemplateError", "compile_template", "go_printf"]


# --- parsing -------------------------------------------------------------------------

Node = Union["Text", "Action", "If"]


@dataclass(slots=True)
class Cmd:
    args: list[Any]  # ("field", name) | ("lit", value) | ("func", name) | ("pipe", Pipe)


@dataclass(slots=True)
class Pipe:
    cmds: list[Cmd]


@dataclass(slots=True)
class Text:
    text: str


@dataclass(slots=True)
class Action:
    pipe: Pipe


@dataclass(slots=True)
class If:
    branches: list[tuple[Pipe, list[Node]]]
    otherwise: list[Node]


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r"""\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(\.[A-Za-z_0-9.]*)|"""
                    r"""(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(\|)|(\()|(\))|"""
                    r"""(\$[A-Za-z_0-9]*(?:\.[A-Za-z_0-9.]+)?))""")


def _tokens(src: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pos = 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        m = _TOKEN.match(src, pos)
        if m is None:
            raise TemplateError(f"unexpected {src[pos:].strip()[:10]!r} in action")
        out.append((m.lastindex or 0, m.group(m.lastindex or 0)))
        pos = m.end()
    return out


class _PipeParser:
    def __init__(self, src: str, extra: frozenset[str] = frozenset()) -> None:
        self.toks = _tokens(src)
        self.i = 0
        self.extra = extra

    def pipe(self) -> Pipe:
        cmds = [self.cmd()]
        while self.i < len(self.toks) and self.toks[self.i][0] == 6:
            self.i += 1
            cmds.append(self.cmd())
        return Pipe(cmds)

    def cmd(self) -> Cmd:
        args: list[Any] = []
        while self.i < len(self.toks):
            kind, text = self.toks[self.i]
            if kind in (6, 8):
                break
            self.i += 1
            if kind == 1:
                from sluiceway.logql._lexer import _unquote

                args.append(("lit", _unquote(text[1:-1], 0, 0)))
            elif kind == 2:
                args.append(("lit", text[1:-1]))
            elif kind == 3:
                args.append(("field", text[1:]))
            elif kind == 4:
                args.append(("lit", float(text) if "." in text or "e" in text.lower()
                             else int(text)))
            elif kind == 5:
                args.append(self.ident(text))
            elif kind == 9:
                args.append(("var", text[1:]))
            elif kind == 7:
                inner = self.pipe()
                if self.i >= len(self.toks) or self.toks[self.i][0] != 8:
                    raise TemplateError("unclosed left paren")
                self.i += 1
                args.append(("pipe", inner))
        if not args:
            raise TemplateError("missing value for command")
        return Cmd(args)

    def ident(self, text: str) -> tuple[str, Any]:
        if text in ("true", "false"):
            return ("lit", text == "true")
        if text == "nil":
            return ("lit", None)
        if (text not in FUNCS and text not in self.extra
                and text not in ("__line__", "__timestamp__", "now")):
            raise TemplateError(f'function "{text}" not defined')
        return ("func", text)


def _parse_pipe(src: str, extra: frozenset[str] = frozenset()) -> Pipe:
    p = _PipeParser(src, extra)
    pipe = p.pipe()
    if p.i != len(p.toks):
        raise TemplateError(f"unexpected {p.toks[p.i][1]!r} in action")
    return pipe


def _parse_nodes(text: str, extra: frozenset[str] = frozenset()) -> list[Node]:
    root: list[Node] = []
    stack: list[tuple[If, list[Node]]] = []
    cur = root
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        chunk = text[pos : m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        if chunk:
            cur.append(Text(chunk))
        trim_next = bool(m.group(3))
        pos = m.end()
        body = m.group(2).strip()
        word = body.split(None, 1)[0] if body else ""
        if body.startswith("/*"):
            continue
        if word == "if":
            node = If([(_parse_pipe(body[2:], extra), [])], [])
            cur.append(node)
            stack.append((node, cur))
            cur = node.branches[0][1]
        elif word == "else" and stack:
            node = stack[-1][0]
            rest = body[4:].strip()
            if rest.startswith("if "):
                node.branches.append((_parse_pipe(rest[3:], extra), []))
                cur = node.branches[-1][1]
            else:
                cur = node.otherwise
        elif word == "end" and stack:
            _, cur = stack.pop()
        elif word in ("else", "end", "range", "with", "define", "template", "block"):
            raise TemplateError(f"unexpected {{{{{word}}}}}")
        else:
            cur.append(Action(_parse_pipe(body, extra)))
    if stack:
        raise TemplateError("unexpected EOF")
    tail = text[pos:]
    if "{{" in tail:
        raise TemplateError("unclosed action")
    if trim_next:
        tail = tail.lstrip()
    if tail:
        cur.append(Text(tail))
    return root


# --- execution -----------------------------------------------------------------------


class Template:
    """A compiled template; `render(labels, line, ts, limit)` returns the text (at most
    `limit` bytes of UTF-8) or raises TemplateError."""

    def __init__(self, text: str, funcs: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self.text = text
        self.funcs = dict(funcs or {})
        self.nodes = _parse_nodes(text, frozenset(self.funcs))
        self.static = text if "{{" not in text else None

    def render(self, labels: Mapping[str, str], line: str, ts: int,
               limit: int = DEFAULT_MAX_LINE_SIZE, data: Mapping[str, Any] | None = None,
               variables: Mapping[str, Any] | None = None) -> str:
        """`data`: what fields walk instead of the labels; `variables`: `$name`s."""
        if self.static is not None:
            text = self.static
        else:
            ctx = _Ctx(labels, line, ts, limit, self.funcs, data, variables or {})
            out: list[str] = []
            _run(self.nodes, ctx, out)
            text = "".join(out)
        # Characters were counted so far; a character is 1 to 4 bytes of UTF-8.
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            raise over_limit(limit)
        return text


@dataclass(slots=True)
class _Ctx:
    labels: Mapping[str, str]
    line: str
    ts: int
    limit: int  # characters the output may still take
    funcs: Mapping[str, Callable[..., Any]]
    data: Mapping[str, Any] | None
    variables: Mapping[str, Any]
    written: int = 0


def _walk(value: Any, path: str) -> Any:
    """`.a.b` over nested maps, as Go's text/template walks a map: `<no value>` when a
    key is missing."""
    for part in path.split("."):
        if not isinstance(value, Mapping):
            raise TemplateError(f"can't evaluate field {part} in type {type(value).__name__}")
        if part not in value:
            return "<no value>"
        value = value[part]
    return value


def _emit(text: str, ctx: _Ctx, out: list[str]) -> None:
    ctx.written += len(text)
    if ctx.written > ctx.limit:
        raise over_limit(ctx.limit)
    out.append(text)


def _run(nodes: list[Node], ctx: _Ctx, out: list[str]) -> None:
    for n in nodes:
        if isinstance(n, Text):
            _emit(n.text, ctx, out)
        elif isinstance(n, Action):
            _emit(to_text(_pipe(n.pipe, ctx)), ctx, out)
        else:
            for cond, body in n.branches:
                if truthy(_pipe(cond, ctx)):
                    _run(body, ctx, out)
                    break
            else:
                _run(n.otherwise, ctx, out)


def _pipe(p: Pipe, ctx: _Ctx) -> Any:
    value: Any = _NO_VALUE
    for cmd in p.cmds:
        value = _cmd(cmd, ctx, value)
    return value


_NO_VALUE = object()


def _arg(a: tuple[str, Any], ctx: _Ctx) -> Any:
    kind, v = a
    if kind == "lit":
        return v
    if kind == "field":
        if ctx.data is not None:
            return ctx.data if v == "" else _walk(ctx.data, v)
        if v == "":
            return dict(ctx.labels)
        return ctx.labels.get(v, "")
    if kind == "var":
        name, _, path = v.partition(".")
        if name not in ctx.variables:
            raise TemplateError(f'undefined variable "${name}"')
        return _walk(ctx.variables[name], path) if path else ctx.variables[name]
    if kind == "pipe":
        return _pipe(v, ctx)
    return _call(v, [], ctx)


def _call(name: str, args: list[Any], ctx: _Ctx) -> Any:
    if name == "__line__":
        return ctx.line
    if name == "__timestamp__":
        return Timestamp(ctx.ts)
    if name == "now":
        return Timestamp(int(datetime.now(UTC).timestamp() * 1e9))
    try:
        if name in ctx.funcs:
            out = ctx.funcs[name](*args)
        else:
            out = FUNCS[name](*args, limit=ctx.limit) if name in SIZED else FUNCS[name](*args)
    except TemplateError:
        raise
    except (TypeError, ValueError, ArithmeticError, re2.error) as exc:
        raise TemplateError(f"error calling {name}: {exc}") from None
    if isinstance(out, str) and len(out) > ctx.limit:  # no value grows past the cap
        raise over_limit(ctx.limit)
    return out


def _cmd(cmd: Cmd, ctx: _Ctx, piped: Any) -> Any:
    head = cmd.args[0]
    if head[0] == "func":
        args = [_arg(a, ctx) for a in cmd.args[1:]]
        if piped is not _NO_VALUE:
            args.append(piped)
        return _call(head[1], args, ctx)
    if len(cmd.args) > 1 or piped is not _NO_VALUE:
        raise TemplateError("can't give argument to non-function")
    return _arg(head, ctx)


def compile_template(text: str, funcs: Mapping[str, Callable[..., Any]] | None = None
                     ) -> Template:
    return Template(text, funcs)
