"""Label matchers of a stream selector: `=`, `!=`, `=~`, `!~` (regexes fully anchored, RE2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import re2

OPS = ("=", "!=", "=~", "!~")


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown matcher operator {self.op!r}")
        if self.op in ("=~", "!~"):
            # Loki anchors selector regexes at both ends.
            object.__setattr__(self, "_regex", re2.compile(f"^(?:{self.value})$"))

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = self._regex.match(value) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        from sluiceway.model._labels import quote

        return f"{self.name}{self.op}{quote(self.value)}"


def matches_all(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    """A missing label has the empty value, as in Prometheus and Loki."""
    return all(m.matches(labels.get(m.name, "")) for m in matchers)
