"""Column-wise validation shared by the JSON and protobuf decoders: one C-level pass per
column instead of Python work per entry."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sluiceway.model import LABEL_NAME_RE, Metadata
from sluiceway.wire._errors import WireError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# As Loki (jsonparser.ParseInt): an optional "-", then ASCII digits only; no "+", spaces, "_".
_TS_COLUMN_RE = re.compile(r"-?[0-9]+(?:\n-?[0-9]+)*", re.ASCII)
_TS_ONE_RE = re.compile(r"-?[0-9]+", re.ASCII)


def fail(where: str, what: str) -> WireError:
    return WireError(f"error parsing push request: {where}: {what}")


def parse_ts_strings(where: str, stamps: Sequence[Any]) -> list[int]:
    """Nanosecond timestamps sent as decimal strings, as Loki requires in JSON pushes."""
    if not stamps:
        return []
    try:
        joined = "\n".join(stamps)  # TypeError: a non-string, reported below
    except TypeError:
        joined = ""
    # The count rules out a "\n" inside one of the strings passing as two timestamps.
    if not _TS_COLUMN_RE.fullmatch(joined) or joined.count("\n") != len(stamps) - 1:
        i, bad = next((i, s) for i, s in enumerate(stamps)
                      if not (type(s) is str and _TS_ONE_RE.fullmatch(s)))
        kind = "string" if type(bad) is str else "non-string"
        raise fail(f"{where}[{i}][0]", f"timestamp must be a string holding integer "
                   f"nanoseconds, got {kind} {_short(bad)}")
    try:
        ts = list(map(int, stamps))
    except ValueError:  # more digits than Python converts: out of range anyway
        ts = [INT64_MAX + 1]
    check_ts_range(where, ts)
    return ts


def check_ts_range(where: str, ts: list[int]) -> None:
    # The store keeps int64 nanoseconds, as Loki does.
    if ts and (min(ts) < INT64_MIN or max(ts) > INT64_MAX):
        raise fail(where, "timestamp out of range for int64 nanoseconds")


def check_label_names(where: str, labels: dict[str, object]) -> None:
    for name, value in labels.items():
        if type(value) is not str:
            raise fail(where, f"label {name!r} must have a string value, got {_short(value)}")
        if not LABEL_NAME_RE.fullmatch(name):  # fullmatch: "$" would allow a final "\n"
            raise fail(where, f"invalid label name {name!r}")


def check_metadata(where: str, md: object) -> Metadata | None:
    """Structured metadata must be a flat object of string to string; {} means none."""
    if type(md) is not dict:
        raise fail(where, f"structured metadata must be an object, got {_short(md)}")
    for name, value in md.items():
        if type(value) is not str:
            raise fail(where, f"structured metadata {name!r} must be a string, "
                       f"got {_short(value)}")
    return md or None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
