"""Level names and numbers (stdlib-compatible) plus custom levels such as AUDIT."""

from __future__ import annotations

import logging

# stdlib numbers so records from `logging` map one to one; AUDIT sits above INFO so an
# INFO threshold keeps it, SECURITY above ERROR.
LEVELS: dict[str, int] = {
    "TRACE": 5, "DEBUG": 10, "INFO": 20, "AUDIT": 25, "WARNING": 30, "ERROR": 40,
    "SECURITY": 45, "CRITICAL": 50,
}
DEFAULT_PROTECTED = frozenset({"ERROR", "CRITICAL", "AUDIT", "SECURITY"})
_BY_NUMBER: dict[int, str] = {v: k for k, v in LEVELS.items()}


def add_level(name: str, number: int) -> None:
    """Register a custom level; `log.<name.lower()>(...)` then works on every logger."""
    name = name.upper()
    if not name.isidentifier():
        raise ValueError(f"level name must be an identifier, not {name!r}")
    LEVELS[name] = number
    _BY_NUMBER.setdefault(number, name)
    logging.addLevelName(number, name)


def level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.upper()]
    except KeyError:
        raise ValueError(f"unknown level {level!r}; known: {', '.join(LEVELS)}") from None


def level_name(number: int) -> str:
    name = _BY_NUMBER.get(number)
    if name is not None:
        return name
    # stdlib records at an unnamed number: name them after the level below
    below = [n for n in _BY_NUMBER if n <= number]
    return _BY_NUMBER[max(below)] if below else "TRACE"


for _name in ("TRACE", "AUDIT", "SECURITY"):
    logging.addLevelName(LEVELS[_name], _name)
