"""Alert label and annotation templates, as Prometheus expands them.

The LogQL template engine (Go text/template subset) with Prometheus' data and variables:
`.Labels`/`$labels`, `.Value`/`$value`, `.ExternalLabels`/`$externalLabels`,
`.ExternalURL`/`$externalURL`, plus Prometheus' formatting functions (`humanize`,
`humanizeDuration`, ...). A template that fails to expand gives
`<error expanding template: ...>`, as Prometheus does, and the rule goes on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sluiceway.logql import TemplateError, compile_template

_MAX_TEXT = 64 * 1024  # a label or annotation is not a log line: cap what one may become


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise TemplateError(f"can't convert {v} to float")
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        raise TemplateError(f"can't convert {v!r} to float") from None


def _g4(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return format(v, ".4g")


def _scaled(v: float, up: list[str], down: list[str], base: float) -> str:
    if v == 0 or not math.isfinite(v):
        return _g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in up:
            if abs(v) < base:
                break
            prefix, v = p, v / base
    else:
        for p in down:
            if abs(v) >= 1:
                break
            prefix, v = p, v * base
    return _g4(v) + prefix


def humanize(x: Any) -> str:
    return _scaled(_float(x), ["k", "M", "G", "T", "P", "E", "Z", "Y"],
                   ["m", "u", "n", "p", "f", "a", "z", "y"], 1000)


def humanize1024(x: Any) -> str:
    v = _float(x)
    if abs(v) <= 1 or not math.isfinite(v):
        return _g4(v)
    return _scaled(v, ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"], [], 1024)


def humanize_duration(x: Any) -> str:
    v = _float(x)
    if not math.isfinite(v):
        return _g4(v)
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        secs, mins, hours, days = d % 60, d // 60 % 60, d // 3600 % 24, d // 86400
        if days:
            return f"{sign}{days}d {hours}h {mins}m {secs}s"
        if hours:
            return f"{sign}{hours}h {mins}m {secs}s"
        if mins:
            return f"{sign}{mins}m {secs}s"
        return f"{sign}{_g4(v)}s"
    return _scaled(v, [], ["m", "u", "n", "p", "f", "a", "z", "y"], 1000) + "s"


def humanize_timestamp(x: Any) -> str:
    v = _float(x)
    if not math.isfinite(v):
        return _g4(v)
    t = datetime.fromtimestamp(v, UTC)
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " +0000 UTC"


def _match(pattern: Any, text: Any) -> bool:
    return re.search(str(pattern), str(text)) is not None


def _re_replace_all(pattern: Any, repl: Any, text: Any) -> str:
    go_repl = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: f"\\g<{m.group(1) or m.group(2)}>",
                     str(repl))
    return re.sub(str(pattern), go_repl, str(text))


def _strip_port(host: Any) -> str:
    text = str(host)
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


TEMPLATE_FUNCS: dict[str, Callable[..., Any]] = {
    "humanize": humanize, "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": lambda x: _g4(_float(x) * 100) + "%",
    "humanizeTimestamp": humanize_timestamp,
    "toUpper": lambda s: str(s).upper(), "toLower": lambda s: str(s).lower(),
    "match": _match, "reReplaceAll": _re_replace_all, "stripPort": _strip_port,
    "safeHtml": lambda s: str(s),
}


def expand(text: str, labels: Mapping[str, str], value: float,
           external_labels: Mapping[str, str], external_url: str) -> str:
    """One label or annotation template, expanded for one alert."""
    if "{{" not in text:
        return text
    try:
        tmpl = compile_template(text, TEMPLATE_FUNCS)
        return tmpl.render({}, "", 0, _MAX_TEXT, data={
            "Labels": dict(labels), "ExternalLabels": dict(external_labels),
            "ExternalURL": external_url, "Value": value,
        }, variables={"labels": dict(labels), "externalLabels": dict(external_labels),
                      "externalURL": external_url, "value": value})
    except (TemplateError, re.error) as exc:
        return f"<error expanding template: {exc}>"
