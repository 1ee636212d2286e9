"""Human units in config: sizes (`16MiB`, `1GB`, `4096`) and durations (`500ms`, `1s`, `2m`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, TypeVar

from pydantic import BeforeValidator

from sluiceway.model._gofmt import parse_loki_size

T = TypeVar("T")

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_MULT = {
    "": 1, "B": 1,
    "K": 1000, "KB": 1000, "KI": 1024, "KIB": 1024,
    "M": 1000**2, "MB": 1000**2, "MI": 1024**2, "MIB": 1024**2,
    "G": 1000**3, "GB": 1000**3, "GI": 1024**3, "GIB": 1024**3,
    "T": 1000**4, "TB": 1000**4, "TI": 1024**4, "TIB": 1024**4,
}
_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|y)")
_DUR_MULT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
             "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def parse_size(value: object) -> int:
    """Bytes from an int or a string such as `16MiB`, `1GB`, `512k`."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like 16MiB")
    if isinstance(value, int | float):
        return int(value)
    if not isinstance(value, str):
        raise ValueError("a size must be a number of bytes or a string like 16MiB")
    m = _SIZE_RE.match(value)
    if m is None:
        raise ValueError(f"invalid size {value!r}: use bytes or a unit like 64KiB, 16MiB, 1GB")
    return int(float(m.group(1)) * _SIZE_MULT[(m.group(2) or "").upper()])


def parse_duration(value: object) -> float:
    """Seconds from a number or a Go-style duration string such as `1m30s` or `250ms`."""
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or a string like 500ms, 1s, 2m")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a duration must be seconds or a string like 500ms, 1s, 2m")
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DUR_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_MULT[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r}: use e.g. 500ms, 1s, 1m30s, 2h")
    return total


def _validated(parse: Callable[[object], T]) -> Callable[[object], T]:
    def check(value: object) -> T:
        return parse(value)

    return check


# Config field types: accept `16MiB` / `1h30m` in YAML and environment variables.
Bytes = Annotated[int, BeforeValidator(_validated(parse_size))]
Duration = Annotated[float, BeforeValidator(_validated(parse_duration))]
# Sizes in Loki's limits (`flagext.ByteSize`): `1KB` is 1024 bytes there.
LokiBytes = Annotated[int, BeforeValidator(_validated(parse_loki_size))]
