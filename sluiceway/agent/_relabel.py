"""Prometheus relabeling (`relabel_configs`), as Promtail applies it to targets, syslog
messages, journal entries and pushed streams.

A rule's regex is anchored at both ends (RE2); `replacement` expands `$1`, `${1}`,
`$name` and `${name}` as Go's `Regexp.Expand` does (`$1x` is the group named `1x`,
empty); a result that is not a valid label name, or an empty value, changes nothing or
removes the label as Prometheus does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping

import re2

from sluiceway.agent._config import RelabelRule

Labels = dict[str, str]
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_EXPAND = re.compile(r"\$(?:\$|\{([^}]*)\}|([a-zA-Z0-9_]+))")


def expand(template: str, m: re2._Match) -> str:
    """Go's `Regexp.ExpandString`: `$$` is `$`; a group that does not exist is empty."""
    def one(g: re.Match[str]) -> str:
        if g.group(0) == "$$":
            return "$"
        name = g.group(1) if g.group(1) is not None else g.group(2)
        try:
            v = m.group(int(name)) if name.isdigit() else m.group(name)
        except (IndexError, KeyError, ValueError, re2.error):
            return ""
        return v or ""
    return _EXPAND.sub(one, template)


def _compile(rule: RelabelRule) -> re2._Regexp:
    try:
        return re2.compile(f"^(?:{rule.regex})$")
    except re2.error as exc:
        raise ValueError(f"relabel regex {rule.regex!r}: {exc}") from exc


def _hashmod(value: str, modulus: int) -> int:
    # Prometheus: the low 8 bytes of the MD5 sum, big-endian, modulo.
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


Step = Callable[[Labels], Labels | None]


def _step(rule: RelabelRule) -> Step:
    rx = _compile(rule)
    sep, target, repl = rule.separator, rule.target_label or "", rule.replacement
    sources = rule.source_labels

    def value(labels: Labels) -> str:
        return sep.join(labels.get(s, "") for s in sources)

    act = rule.action
    if act == "replace":
        def replace(labels: Labels) -> Labels | None:
            m = rx.search(value(labels))
            if m is None:
                return labels
            name = expand(target, m)
            if not _LABEL_NAME.match(name):
                return labels
            res = expand(repl, m)
            out = dict(labels)
            if res:
                out[name] = res
            else:
                out.pop(name, None)
            return out
        return replace
    if act in ("keep", "drop"):
        keep = act == "keep"
        return lambda labels: labels if (rx.search(value(labels)) is not None) == keep else None
    if act in ("keepequal", "dropequal"):
        eq = act == "keepequal"
        return lambda labels: labels if (value(labels) == labels.get(target, "")) == eq \
            else None
    if act == "hashmod":
        mod = int(rule.modulus or 1)
        return lambda labels: {**labels, target: str(_hashmod(value(labels), mod))}
    if act in ("lowercase", "uppercase"):
        up = act == "uppercase"
        return lambda labels: {**labels, target: value(labels).upper() if up
                               else value(labels).lower()}
    if act == "labelmap":
        def labelmap(labels: Labels) -> Labels | None:
            out = dict(labels)
            for name, v in labels.items():
                m = rx.search(name)
                if m is not None:
                    out[expand(repl, m)] = v
            return out
        return labelmap
    if act == "labeldrop":
        return lambda labels: {k: v for k, v in labels.items() if rx.search(k) is None}
    # labelkeep
    return lambda labels: {k: v for k, v in labels.items() if rx.search(k) is not None}


class Relabeler:
    """Compiled rules; `apply(labels)` is the new label set or None (dropped)."""

    def __init__(self, rules: list[RelabelRule]) -> None:
        self.steps = [_step(r) for r in rules]

    def __bool__(self) -> bool:
        return bool(self.steps)

    def apply(self, labels: Mapping[str, str]) -> Labels | None:
        out: Labels | None = dict(labels)
        for step in self.steps:
            assert out is not None
            out = step(out)
            if out is None:
                return None
        return out


def public(labels: Mapping[str, str]) -> Labels:
    """The labels left once relabeling is done: those starting with `__` go."""
    return {k: v for k, v in labels.items() if not k.startswith("__") and v != ""}
