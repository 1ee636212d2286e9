"""`detected_level`: the one rule that says what level a log line is, as Loki's
`discover_log_levels` does.

Loki works this out in its distributor and stores it as structured metadata. Here it is
worked out when lines are read (log and metric queries, live tail, patterns, detected
fields), by this module alone, from what is stored with the line: the stream labels, its
structured metadata and the line itself. Those never change, so every view gets the same
answer for a line, and pushes pay nothing for it.

The order is Loki's: a `detected_level` sent as structured metadata (normalised); a
stream label named in `log_level_fields` (first in that list wins); such a field in the
structured metadata; OTLP's `severity_number`; the line's JSON (string values, up to
`log_level_from_json_max_depth` levels deep, first in document order) or logfmt
(case-insensitive keys, first in `log_level_fields` order); and last the earliest level
word standing alone in the line. A value that is no known level is kept as it is; a
line with no clue at all is `unknown`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from sluiceway.model import EntryBlock

DETECTED_LEVEL = "detected_level"
UNKNOWN = "unknown"
# Loki's default `log_level_fields`.
DEFAULT_LEVEL_FIELDS = ("level", "LEVEL", "Level", "log.level", "severity", "SEVERITY",
                        "Severity", "SeverityText", "lvl", "LVL", "Lvl", "severity_text",
                        "Severity_Text", "SEVERITY_TEXT")
OTLP_SEVERITY_NUMBER = "severity_number"

_KNOWN = {"trace": "trace", "trc": "trace", "debug": "debug", "dbg": "debug",
          "info": "info", "inf": "info", "information": "info", "warn": "warn",
          "wrn": "warn", "warning": "warn", "error": "error", "err": "error",
          "critical": "critical", "fatal": "fatal"}
# The earliest level word with a boundary on both sides; at one position the first
# alternative wins (`error` before `err`, `warning` before `warn`), as in Loki.
_WORD = re.compile(r"(?<![^ \t\n\[({\"'=|])(trace|debug|fatal|critical|error|err|warning|"
                   r"warn|info)(?![^ \t\n\[\](){}:,!\"'=|])", re.IGNORECASE)
_WORD_LEVEL = {"trace": "trace", "debug": "debug", "fatal": "fatal", "critical": "critical",
               "error": "error", "err": "error", "warning": "warn", "warn": "warn",
               "info": "info"}


@dataclass(frozen=True, slots=True)
class LevelRules:
    """A tenant's `log_level_fields` and `log_level_from_json_max_depth` (<= 0: any)."""

    fields: tuple[str, ...] = DEFAULT_LEVEL_FIELDS
    json_max_depth: int = 2
    json_keys: frozenset[str] = field(init=False, compare=False, repr=False)
    ranks: dict[str, int] = field(init=False, compare=False, repr=False)  # logfmt, any case
    logfmt_keys: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        fields = tuple(self.fields) or DEFAULT_LEVEL_FIELDS
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "json_keys", frozenset(fields))
        ranks: dict[str, int] = {}
        for i, f in enumerate(fields):
            ranks.setdefault(f.lower(), i)
        object.__setattr__(self, "ranks", ranks)
        # A level key at the start of a pair, and its value (quoted whole, or bare).
        keys = "|".join(re.escape(k) for k in sorted(ranks, key=len, reverse=True))
        object.__setattr__(self, "logfmt_keys", re.compile(
            rf'(?<![^\s])({keys})=("(?:[^"\\]|\\.)*"|[^\s"]*)', re.IGNORECASE))

    @property
    def key(self) -> str:
        """These rules as text, for what was worked out with them and kept (the per-level
        line counts of a compacted block): the same key, the same levels. A change to
        how levels are found bumps `RULES_VERSION`."""
        return "\x1f".join((str(RULES_VERSION), str(self.json_max_depth), *self.fields))


RULES_VERSION = 1  # of `line_level` and friends: per-level counts kept under older keys go


def normalize_level(value: str) -> str:
    """Loki's spelling of a known level (any case, short forms); others as they are."""
    return _KNOWN.get(value.lower(), value)


_STEMS = ("err", "warn", "info", "debug", "trace", "fatal", "critical")


def keyword_level(line: str) -> str:
    low = line.lower()
    if not any(stem in low for stem in _STEMS):  # most lines: a few C scans, no regex
        return UNKNOWN
    m = _WORD.search(line)
    return _WORD_LEVEL[m.group(1).lower()] if m else UNKNOWN


def _is_json(line: str) -> bool:
    s = line.strip()
    return s[:1] == "{" and s[-1:] == "}"


def _json_level(line: str, fields: frozenset[str], max_depth: int) -> str | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return _json_walk(obj, fields, max_depth, 0) if isinstance(obj, dict) else None


def _json_walk(o: dict[str, Any], fields: frozenset[str], max_depth: int,
               depth: int) -> str | None:
    """The first string value of a level key in document order, depth first (as a
    streaming parser meets the keys)."""
    if 0 < max_depth <= depth:
        return None
    for k, v in o.items():
        if isinstance(v, str):
            if k in fields:
                return v
        elif isinstance(v, dict):
            found = _json_walk(v, fields, max_depth, depth + 1)
            if found is not None:
                return found
    return None


def _logfmt_level(line: str, rules: LevelRules) -> str | None:
    best, found = len(rules.ranks), None
    for m in rules.logfmt_keys.finditer(line):
        if line.count('"', 0, m.start()) % 2:  # inside a quoted value: not a key
            continue
        rank = rules.ranks[m.group(1).lower()]
        if rank < best:
            best, found = rank, m.group(2)
            if rank == 0:
                break
    if found is not None and found.startswith('"'):
        try:
            found = str(orjson.loads(found))
        except orjson.JSONDecodeError:
            found = found[1:-1]
    return found


def line_level(rules: LevelRules, line: str) -> str:
    """The level the line itself says (JSON field, logfmt field, or a level word)."""
    if _is_json(line):
        value = _json_level(line, rules.json_keys, rules.json_max_depth)
    elif "=" in line:
        value = _logfmt_level(line, rules)
    else:
        return keyword_level(line)
    known = _KNOWN.get(value.lower()) if value else None
    return known or keyword_level(line)


def _field(labels: Mapping[str, str], fields: Sequence[str]) -> str | None:
    for f in fields:
        v = labels.get(f)
        if v is not None:
            return v
    return None


def stream_level(rules: LevelRules, labels: Mapping[str, str]) -> str | None:
    """The level every line of a stream gets from its labels, or None."""
    v = _field(labels, rules.fields)
    return normalize_level(v) if v is not None else None


def _otlp_level(text: str) -> str:
    try:
        n = int(text)
    except ValueError:
        return "info"
    for top, level in ((0, UNKNOWN), (4, "trace"), (8, "debug"), (12, "info"), (16, "warn"),
                       (20, "error"), (24, "fatal")):
        if n <= top:
            return level if n >= 0 else UNKNOWN
    return UNKNOWN


_UNSET: Any = object()


def entry_level(rules: LevelRules, labels: Mapping[str, str],
                metadata: Mapping[str, str] | None, line: str,
                from_stream: str | None = _UNSET) -> str:
    """The `detected_level` of one entry (`from_stream`: `stream_level(rules, labels)`,
    when the caller has it already)."""
    if metadata:
        sent = metadata.get(DETECTED_LEVEL)
        if sent is not None:
            return normalize_level(sent)
    if from_stream is _UNSET:
        from_stream = stream_level(rules, labels)
    if from_stream is not None:
        return from_stream
    if metadata:
        v = _field(metadata, rules.fields)
        if v is not None:
            return normalize_level(v)
        sev = metadata.get(OTLP_SEVERITY_NUMBER)
        if sev:
            return _otlp_level(sev)
    return line_level(rules, line)


def block_level(rules: LevelRules, block: EntryBlock) -> str | None:
    """The level of every entry of the block when its stream labels decide it (and no
    entry sent a `detected_level` of its own), else None."""
    from_stream = stream_level(rules, block.labels)
    md = block.metadata
    if from_stream is not None and (md is None or not any(
            m and DETECTED_LEVEL in m for m in md)):
        return from_stream
    return None


def block_levels(rules: LevelRules, block: EntryBlock,
                 idx: np.ndarray[Any, Any] | None = None) -> str | list[str]:
    """Levels of a block's entries: one string when the stream labels decide for all of
    them, else one per entry (only those in `idx` worked out; the others are "")."""
    uniform = block_level(rules, block)
    if uniform is not None:
        return uniform
    from_stream = stream_level(rules, block.labels)
    md = block.metadata
    n = len(block)
    out = [""] * n
    blob, offs = block.blob, block.offsets
    which = range(n) if idx is None else idx.tolist()
    for i in which:
        m = md[i] if md is not None else None
        if not m and from_stream is not None:
            out[i] = from_stream
            continue
        line = blob[int(offs[i]):int(offs[i + 1])].decode("utf-8", "replace")
        out[i] = entry_level(rules, block.labels, m, line, from_stream)
    return out
