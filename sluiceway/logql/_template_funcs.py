"""Values and functions of the template subset: Go-like printing, printf and the
Loki/sprig function set (`FUNCS`)."""

from __future__ import annotations

import base64
import math
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import re2

from sluiceway.logql._lexer import CONVERTERS
from sluiceway.logql._regex import compile_re
from sluiceway.model import NAMED_LAYOUTS, go_layout_parser


class TemplateError(ValueError):
    pass


def over_limit(limit: int) -> TemplateError:
    return TemplateError(f"template output longer than max_line_size ({limit} bytes)")


def _room(size: int, limit: int) -> None:
    """Fail before building a text of `size` characters that could not fit."""
    if size > limit:
        raise over_limit(limit)


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


def go_float(v: float, verb: str = "g") -> str:
    """Go's `strconv.FormatFloat(v, verb, -1, 64)` for verb `g` (what `fmt.Sprint` and
    templates print: `2`, `0.5`, `1e+06`) or `e` (Prometheus' alert values: `2e+00`)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, v) < 0 else ""
    if v == 0:
        return sign + ("0e+00" if verb == "e" else "0")
    _, digits_t, exp = Decimal(repr(abs(v))).as_tuple()
    digits = "".join(map(str, digits_t)).rstrip("0") or "0"
    assert isinstance(exp, int)
    x = exp + len(digits_t) - 1  # the exponent of d.ddd form
    if verb == "e" or x < -4 or x >= 6:  # shortest %g switches to %e from 1e+06 on
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if x < 0:
        return f"{sign}0.{'0' * (-x - 1)}{digits}"
    whole = digits[: x + 1].ljust(x + 1, "0")
    frac = digits[x + 1 :]
    return sign + whole + ("." + frac if frac else "")


def to_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
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


def go_printf(fmt: str, *args: Any, limit: int | None = None) -> str:
    """Go's fmt.Sprintf for the verbs templates use; with `limit`, a width or precision
    that would pad past it fails before any padding is made."""
    if limit is not None:
        _room(_printf_padding(fmt), limit)
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


def _printf_padding(fmt: str) -> int:
    """The characters widths and float precisions ask for (a lower bound of the size)."""
    total = 0
    for m in _VERB.finditer(fmt):
        _, width, prec, verb = m.groups()
        if width and width != "*":
            total += int(width)
        if prec and verb in "feEgG":
            total += int(prec)
    return total


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


def _regex_replace(literal: bool) -> Callable[..., str]:
    def run(rx: Any, s: Any, repl: Any, *, limit: int) -> str:
        compiled = compile_re(to_text(rx))
        r = to_text(repl)
        removed = added = 0

        def sub(m: Any) -> str:
            # The output up to this match's end is already this long: stop once it is
            # past the cap, before the rest is built.
            nonlocal removed, added
            out = r if literal else _expand(m, r)
            removed += m.end() - m.start()
            added += len(out)
            _room(m.end() - removed + added, limit)
            return out

        return str(compiled.sub(sub, to_text(s)))

    return run


def _replace(old: Any, new: Any, s: Any, n: int = -1, *, limit: int) -> str:
    text, o, w = to_text(s), to_text(old), to_text(new)
    hits = text.count(o) if o else len(text) + 1
    if n >= 0:
        hits = min(hits, n)
    _room(len(text) + hits * (len(w) - len(o)), limit)
    return text.replace(o, w, n)


def _repeat(n: Any, s: Any, *, limit: int) -> str:
    text, k = to_text(s), max(_int(n), 0)
    _room(k * len(text), limit)
    return text * k


def _indent(n: Any, s: Any, *, limit: int, lead: str = "") -> str:
    text, k = to_text(s), max(_int(n), 0)
    _room(len(lead) + len(text) + k * (text.count("\n") + 1), limit)
    pad = " " * k
    return lead + "\n".join(pad + ln for ln in text.split("\n"))


def _align(right: bool) -> Callable[..., str]:
    def run(n: Any, s: Any, *, limit: int) -> str:
        text, k = to_text(s), _int(n)
        _room(k, limit)  # padded (or cut) to k characters
        if right:
            return text[-k:].rjust(k) if k else ""
        return text[:k].ljust(k)

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


# Go's zero time (0001-01-01 UTC): what sprig's toDate gives for text it cannot parse.
_ZERO_TIME_NS = -62_135_596_800 * 1_000_000_000
_ZONE_TOKENS = ("Z07", "-07", "MST")


def _to_date(layout: Any, value: Any, zone: Any) -> Timestamp:
    """sprig's `toDateInZone`: `value` read with a Go layout; a time without a zone in the
    layout is in `zone` ("Local" is the server's zone)."""
    text = NAMED_LAYOUTS.get(to_text(layout), to_text(layout))
    try:
        ns = go_layout_parser(text)(to_text(value))  # zone-less times come back as UTC
    except ValueError:
        return Timestamp(_ZERO_TIME_NS)
    if any(tok in text for tok in _ZONE_TOKENS):
        return Timestamp(ns)
    name = to_text(zone)
    try:
        tz = datetime.now().astimezone().tzinfo if name == "Local" else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return Timestamp(_ZERO_TIME_NS)
    wall = datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(tzinfo=tz)
    offset = wall.utcoffset()
    return Timestamp(ns - int(offset.total_seconds()) * 1_000_000_000 if offset else ns)


def _converter(kind: str) -> Callable[[Any], float]:
    """`bytes`, `duration`, `duration_seconds`: a label value converted as `unwrap` does
    (seconds for durations); a value that does not convert fails the template, as the
    Go function's error does in Loki."""
    convert, detail = CONVERTERS[kind]

    def call(v: Any) -> float:
        if not isinstance(v, str):  # Go's functions take a string argument only
            raise TypeError(f"wrong type for value; expected string; got {_go_type(v)}")
        out = convert(v)
        if out is None:
            raise ValueError(detail(v))
        return out

    return call


def _go_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    return {int: "int", float: "float64"}.get(type(v), type(v).__name__)


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


FUNCS: dict[str, Callable[..., Any]] = {
    "ToUpper": lambda s: to_text(s).upper(), "ToLower": lambda s: to_text(s).lower(),
    "upper": lambda s: to_text(s).upper(), "lower": lambda s: to_text(s).lower(),
    "title": lambda s: to_text(s).title(), "Title": lambda s: to_text(s).title(),
    "trunc": _trunc,
    "default": lambda d, v=None: v if truthy(v) else d,
    "replace": lambda old, new, s, *, limit: _replace(old, new, s, limit=limit),
    "Replace": lambda s, old, new, n, *, limit: _replace(old, new, s, max(_int(n), -1),
                                                         limit=limit),
    "regexReplaceAll": _regex_replace(False),
    "regexReplaceAllLiteral": _regex_replace(True),
    "printf": lambda fmt, *a, limit: go_printf(to_text(fmt), *a, limit=limit),
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
    "repeat": _repeat,
    "indent": _indent,
    "nindent": lambda n, s, *, limit: _indent(n, s, limit=limit, lead="\n"),
    "alignLeft": _align(False), "alignRight": _align(True),
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
    "toDate": lambda layout, value: _to_date(layout, value, "Local"),
    "toDateInZone": _to_date,
    "bytes": _converter("bytes"), "duration": _converter("duration"),
    "duration_seconds": _converter("duration_seconds"),
}
# The functions that can make a text much longer than their arguments: they take the
# template's size cap as `limit` and refuse to build anything past it.
SIZED = frozenset({"repeat", "indent", "nindent", "alignLeft", "alignRight", "printf",
                   "replace", "Replace", "regexReplaceAll", "regexReplaceAllLiteral"})
