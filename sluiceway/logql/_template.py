"""A small, safe subset of Go text/template for `line_format` and `label_format`.

Supported: text, `{{ pipeline }}` with `-` trim markers, `{{/* comments */}}`,
`if` / `else if` / `else` / `end`, fields `.name`, literals (strings, numbers, booleans),
parenthesised pipelines, `|` chaining (the piped value is the last argument) and the
functions in `_FUNCS`. Nothing reaches Python objects beyond the label map.
"""

from __future__ import annotations

import base64
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Union

import re2

from sluiceway.logql._regex import compile_re


class TemplateError(ValueError):
    pass


# --- values --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timestamp:
    ns: int

    def __str__(self) -> str:
        dt = datetime.fromtimestamp(self.ns // 1_000_000_000, UTC)
        frac = self.ns % 1_000_000_000
        text = dt.strftime("%Y-%m-%d %H:%M:%S")
        if frac:
            text += "." + f"{frac:09d}".rstrip("0")
        return text + " +0000 UTC"


def to_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    return str(v)


def truthy(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, (str, bool, int, float)):
        return bool(v)
    return True


def _num(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return 0.0


def _int(v: Any) -> int:
    f = _num(v)
    return int(f) if math.isfinite(f) else 0


# --- printf --------------------------------------------------------------------------

_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+))?([a-zA-Z%])")


def go_printf(fmt: str, *args: Any) -> str:
    out: list[str] = []
    pos = 0
    ai = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if ai >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[ai]
        ai += 1
        out.append(_verb(flags, width, prec, verb, arg))
    out.append(fmt[pos:])
    if ai < len(args):
        out.append("%!(EXTRA " + ", ".join(to_text(a) for a in args[ai:]) + ")")
    return "".join(out)


def _verb(flags: str, width: str | None, prec: str | None, verb: str, arg: Any) -> str:
    spec = flags.replace("#", "") + (width or "") + (f".{prec}" if prec else "")
    isnum = isinstance(arg, (int, float)) and not isinstance(arg, bool)
    if verb in "sv":
        return format(to_text(arg), ("<" if "-" in flags else ">") + (width or "")) \
            if width else (to_text(arg)[: int(prec)] if prec and verb == "s" else to_text(arg))
    if verb == "q":
        from sluiceway.logql._format import go_quote

        return go_quote(to_text(arg))
    if verb in "dxXob" and isinstance(arg, int) and not isinstance(arg, bool):
        return format(arg, spec.replace("-", "<") + verb.replace("d", "d"))
    if verb in "feEgG" and isnum:
        return format(float(arg), spec.replace("-", "<") + verb)
    if verb == "t" and isinstance(arg, bool):
        return to_text(arg)
    kind = type(arg).__name__.replace("str", "string").replace("float", "float64")
    return f"%!{verb}({kind}={to_text(arg)})"


# --- functions -----------------------------------------------------------------------


def _trunc(n: Any, s: Any) -> str:
    text, k = to_text(s), _int(n)
    if k < 0:
        return text[max(len(text) + k, 0) :]
    return text[:k]


def _regex_replace(literal: bool) -> Callable[[Any, Any, Any], str]:
    def run(rx: Any, s: Any, repl: Any) -> str:
        compiled = compile_re(to_text(rx))
        r = to_text(repl)
        if literal:
            return str(compiled.sub(lambda _m: r, to_text(s)))
        return str(compiled.sub(lambda m: _expand(m, r), to_text(s)))

    return run


_GO_GROUP = re.compile(r"\$(\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _expand(m: Any, repl: str) -> str:
    def sub(g: re.Match[str]) -> str:
        if g.group(1) == "$":
            return "$"
        name = g.group(2) or g.group(3)
        try:
            val = m.group(int(name)) if name.isdigit() else m.group(name)
        except (IndexError, KeyError, re2.error):
            return ""
        return val or ""

    return _GO_GROUP.sub(sub, repl)


def _date(layout: Any, t: Any) -> str:
    ns = t.ns if isinstance(t, Timestamp) else _int(t) * 1_000_000_000
    dt = datetime.fromtimestamp(ns / 1e9, UTC)
    text = to_text(layout)
    for go, py in (("2006", "%Y"), ("01", "%m"), ("02", "%d"), ("15", "%H"), ("04", "%M"),
                   ("05", "%S"), ("Jan", "%b"), ("Mon", "%a"), ("MST", "UTC")):
        text = text.replace(go, py)
    return dt.strftime(text)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "string" if isinstance(v, str) else type(v).__name__


def _comparable(a: Any, b: Any) -> None:
    """Go templates refuse to compare a string with a number (no implicit conversion)."""
    if _kind(a) != _kind(b):
        raise TemplateError("incompatible types for comparison")


def _eq(a: Any, *bs: Any) -> bool:
    for b in bs:
        _comparable(a, b)
    return any(a == b for b in bs)


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def run(a: Any, b: Any) -> bool:
        _comparable(a, b)
        if _kind(a) not in ("number", "string"):
            raise TemplateError("invalid type for comparison")
        return op(a, b)

    return run


def _substr(start: Any, end: Any, s: Any) -> str:
    """sprig-style substr as Loki defines it: out-of-range ends are clamped."""
    text, a, b = to_text(s), _int(start), _int(end)
    if a < 0:
        return text[:b] if b >= 0 else ""
    if b < 0 or b > len(text):
        return text[a:]
    return text[a:b] if a <= b else ""


def _arith(op: Callable[[float, float], float], as_int: bool) -> Callable[..., Any]:
    def run(*xs: Any) -> Any:
        vals = [_num(x) for x in xs]
        acc = vals[0] if vals else 0.0
        for v in vals[1:]:
            acc = op(acc, v)
        return int(acc) if as_int and math.isfinite(acc) else acc

    return run


def _div(a: float, b: float) -> float:
    if b == 0:
        raise TemplateError("integer divide by zero")
    return a / b


_FUNCS: dict[str, Callable[..., Any]] = {
    "ToUpper": lambda s: to_text(s).upper(), "ToLower": lambda s: to_text(s).lower(),
    "upper": lambda s: to_text(s).upper(), "lower": lambda s: to_text(s).lower(),
    "title": lambda s: to_text(s).title(), "Title": lambda s: to_text(s).title(),
    "trunc": _trunc,
    "default": lambda d, v=None: v if truthy(v) else d,
    "replace": lambda old, new, s: to_text(s).replace(to_text(old), to_text(new)),
    "Replace": lambda s, old, new, n: to_text(s).replace(to_text(old), to_text(new),
                                                          _int(n) if _int(n) >= 0 else -1),
    "regexReplaceAll": _regex_replace(False),
    "regexReplaceAllLiteral": _regex_replace(True),
    "printf": lambda fmt, *a: go_printf(to_text(fmt), *a),
    "trim": lambda s: to_text(s).strip(), "TrimSpace": lambda s: to_text(s).strip(),
    "trimAll": lambda c, s: to_text(s).strip(to_text(c)),
    "trimPrefix": lambda p, s: to_text(s).removeprefix(to_text(p)),
    "trimSuffix": lambda p, s: to_text(s).removesuffix(to_text(p)),
    "TrimPrefix": lambda s, p: to_text(s).removeprefix(to_text(p)),
    "TrimSuffix": lambda s, p: to_text(s).removesuffix(to_text(p)),
    "contains": lambda sub, s: to_text(sub) in to_text(s),
    "hasPrefix": lambda p, s: to_text(s).startswith(to_text(p)),
    "hasSuffix": lambda p, s: to_text(s).endswith(to_text(p)),
    "substr": _substr,
    "Trim": lambda s, c: to_text(s).strip(to_text(c)),
    "TrimLeft": lambda s, c: to_text(s).lstrip(to_text(c)),
    "TrimRight": lambda s, c: to_text(s).rstrip(to_text(c)),
    "print": lambda *xs: "".join(to_text(x) for x in xs),
    "repeat": lambda n, s: to_text(s) * min(max(_int(n), 0), 10_000),
    "indent": lambda n, s: "\n".join(" " * _int(n) + ln for ln in to_text(s).split("\n")),
    "nindent": lambda n, s: "\n" + "\n".join(" " * _int(n) + ln
                                            for ln in to_text(s).split("\n")),
    "alignLeft": lambda n, s: to_text(s)[: _int(n)].ljust(_int(n)),
    "alignRight": lambda n, s: to_text(s)[-_int(n):].rjust(_int(n)) if _int(n) else "",
    "b64enc": lambda s: base64.b64encode(to_text(s).encode()).decode(),
    "b64dec": lambda s: base64.b64decode(to_text(s)).decode("utf-8", "replace"),
    "urlencode": lambda s: urllib.parse.quote_plus(to_text(s)),
    "urldecode": lambda s: urllib.parse.unquote_plus(to_text(s)),
    "eq": _eq, "ne": lambda a, b: not _eq(a, b),
    "lt": _ordered(lambda a, b: a < b), "le": _ordered(lambda a, b: a <= b),
    "gt": _ordered(lambda a, b: a > b), "ge": _ordered(lambda a, b: a >= b),
    "not": lambda a: not truthy(a),
    "and": lambda *xs: next((x for x in xs if not truthy(x)), xs[-1] if xs else None),
    "or": lambda *xs: next((x for x in xs if truthy(x)), xs[-1] if xs else None),
    "len": lambda a: len(to_text(a)),
    "add": _arith(lambda a, b: a + b, True), "sub": _arith(lambda a, b: a - b, True),
    "mul": _arith(lambda a, b: a * b, True), "div": _arith(_div, True),
    "mod": lambda a, b: _int(a) % _int(b) if _int(b) else 0,
    "addf": _arith(lambda a, b: a + b, False), "subf": _arith(lambda a, b: a - b, False),
    "mulf": _arith(lambda a, b: a * b, False), "divf": _arith(_div, False),
    "max": _arith(max, True), "min": _arith(min, True),
    "maxf": _arith(max, False), "minf": _arith(min, False),
    "ceil": lambda a: float(math.ceil(_num(a))), "floor": lambda a: float(math.floor(_num(a))),
    "round": lambda a, p=0: round(_num(a), _int(p)),
    "int": _int, "float64": _num,
    "count": lambda rx, s: len(compile_re(to_text(rx)).findall(to_text(s))),
    "unixEpoch": lambda t: (t.ns // 1_000_000_000) if isinstance(t, Timestamp) else 0,
    "unixEpochMillis": lambda t: (t.ns // 1_000_000) if isinstance(t, Timestamp) else 0,
    "unixEpochNanos": lambda t: t.ns if isinstance(t, Timestamp) else 0,
    "unixToTime": lambda s: Timestamp(_int(s) * 1_000_000_000),
    "date": _date,
}

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
                    r"""(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(\|)|(\()|(\)))""")


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
    def __init__(self, src: str) -> None:
        self.toks = _tokens(src)
        self.i = 0

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
        if text not in _FUNCS and text not in ("__line__", "__timestamp__", "now"):
            raise TemplateError(f'function "{text}" not defined')
        return ("func", text)


def _parse_pipe(src: str) -> Pipe:
    p = _PipeParser(src)
    pipe = p.pipe()
    if p.i != len(p.toks):
        raise TemplateError(f"unexpected {p.toks[p.i][1]!r} in action")
    return pipe


def _parse_nodes(text: str) -> list[Node]:
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
            node = If([(_parse_pipe(body[2:]), [])], [])
            cur.append(node)
            stack.append((node, cur))
            cur = node.branches[0][1]
        elif word == "else" and stack:
            node = stack[-1][0]
            rest = body[4:].strip()
            if rest.startswith("if "):
                node.branches.append((_parse_pipe(rest[3:]), []))
                cur = node.branches[-1][1]
            else:
                cur = node.otherwise
        elif word == "end" and stack:
            _, cur = stack.pop()
        elif word in ("else", "end", "range", "with", "define", "template", "block"):
            raise TemplateError(f"unexpected {{{{{word}}}}}")
        else:
            cur.append(Action(_parse_pipe(body)))
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
    """A compiled template; `render(labels, line, ts)` returns the text or raises TemplateError."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes = _parse_nodes(text)
        self.static = text if "{{" not in text else None

    def render(self, labels: Mapping[str, str], line: str, ts: int) -> str:
        if self.static is not None:
            return self.static
        out: list[str] = []
        _run(self.nodes, _Ctx(labels, line, ts), out)
        return "".join(out)


@dataclass(slots=True)
class _Ctx:
    labels: Mapping[str, str]
    line: str
    ts: int


def _run(nodes: list[Node], ctx: _Ctx, out: list[str]) -> None:
    for n in nodes:
        if isinstance(n, Text):
            out.append(n.text)
        elif isinstance(n, Action):
            out.append(to_text(_pipe(n.pipe, ctx)))
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
        if v == "":
            return dict(ctx.labels)
        return ctx.labels.get(v, "")
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
        return _FUNCS[name](*args)
    except TemplateError:
        raise
    except (TypeError, ValueError, ArithmeticError, re2.error) as exc:
        raise TemplateError(f"error calling {name}: {exc}") from None


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


def compile_template(text: str) -> Template:
    return Template(text)
