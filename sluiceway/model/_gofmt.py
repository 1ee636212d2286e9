"""Sizes, durations and times read and written exactly as Loki's Go code does, so our
answers and our reading of a Loki config or a LogQL literal match Loki's byte for byte.

- `parse_humanize_bytes`: go-humanize's `ParseBytes` (LogQL byte literals, label values
  compared with them, `unwrap bytes()`): `10k`, `1.5 MB`, `1 KiB`, `1,000`; SI units are
  powers of 1000, IEC units (`Ki`, `KiB`) powers of 1024; no sign.
- `parse_loki_size` / `format_loki_size`: Loki's `flagext.ByteSize` (its limits config):
  `KB`, `MB`, … are powers of 1024, and a size prints as its largest exact unit (`1KB`,
  `3000B`). Fractions and `KiB` are accepted here as well.
- `format_go_duration`: Go's `time.Duration.String` (`768h0m0s`, `1.5s`, `250ms`).
- `format_prom_duration`: Prometheus' `model.Duration.String` (`30d1h`, `1w`, `0s`).
- `format_go_time`: Go's `time.Time.String` in UTC
  (`2026-12-04 16:00:00.000000001 +0000 UTC`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime, timedelta

from sluiceway.model._labels import quote

_KI, _K = 1024, 1000
_HUMANIZE_UNITS = {
    "": 1, "b": 1,
    "k": _K, "kb": _K, "ki": _KI, "kib": _KI,
    "m": _K**2, "mb": _K**2, "mi": _KI**2, "mib": _KI**2,
    "g": _K**3, "gb": _K**3, "gi": _KI**3, "gib": _KI**3,
    "t": _K**4, "tb": _K**4, "ti": _KI**4, "tib": _KI**4,
    "p": _K**5, "pb": _K**5, "pi": _KI**5, "pib": _KI**5,
    "e": _K**6, "eb": _K**6, "ei": _KI**6, "eib": _KI**6,
}
# Go's unicode.IsSpace: what strings.TrimSpace removes.
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" \
           "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_GO_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)", re.ASCII)
_MAX_UINT64 = 2**64


def parse_humanize_bytes(text: str) -> int:
    """go-humanize's ParseBytes: leading digits, `.` and `,` (commas dropped) as a float,
    then a unit after optional spaces (case does not matter). Raises ValueError with Go's
    error text (`strconv.ParseFloat: parsing "": invalid syntax`, `unhandled size name:
    x`, `too large: …`)."""
    n = 0
    for ch in text:
        if not (ch in ".," or unicodedata.category(ch) == "Nd"):
            break
        n += 1
    num = text[:n].replace(",", "")
    if _GO_NUMBER.fullmatch(num) is None:  # also any digit outside ASCII, as Go's slicing
        raise ValueError(f"strconv.ParseFloat: parsing {quote(num)}: invalid syntax")
    value = float(num)
    if value == float("inf"):
        raise ValueError(f"strconv.ParseFloat: parsing {quote(num)}: value out of range")
    unit = text[n:].strip(GO_SPACE).lower()
    mult = _HUMANIZE_UNITS.get(unit)
    if mult is None:
        raise ValueError(f"unhandled size name: {unit}")
    value *= mult
    if value >= _MAX_UINT64:
        raise ValueError(f"too large: {text}")
    return int(value)


_LOKI_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kmgtpe]?)(i?)(b|bytes?)?\s*$",
                           re.IGNORECASE)


def parse_loki_size(value: object) -> int:
    """A size in Loki's limits (`flagext.ByteSize`): plain bytes, or a number with `K`,
    `KB`, `KiB`, `M`, `MB`, … where every unit is a power of 1024, as Loki reads
    `per_stream_rate_limit: 1KB` (1024 bytes). Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a size must be a number of bytes or a string like 256KB")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return int(value)
    m = _LOKI_SIZE_RE.match(value)
    if m is None:
        raise ValueError(f"invalid size {value!r}: use bytes or a unit like 256KB, 3MB "
                         "(Loki's units: 1KB = 1024 bytes)")
    num, prefix, _binary, _b = m.groups()
    return int(float(num) * 1024 ** " kmgtpe".index(prefix.lower() or " "))


def format_loki_size(n: int) -> str:
    """How Loki prints a `flagext.ByteSize`: the largest 1024-based unit that divides it
    exactly (`1KB`, `3MB`, `3000B`, `0B`)."""
    if n == 0:
        return "0B"
    for power, unit in ((6, "EB"), (5, "PB"), (4, "TB"), (3, "GB"), (2, "MB"), (1, "KB")):
        if n % 1024**power == 0:
            return f"{n // 1024**power}{unit}"
    return f"{n}B"


def format_humanize_ibytes(n: int) -> str:
    """Go's `humanize.IBytes` (what Loki's `max_query_bytes_read` answer prints): powers of
    1024, one decimal below 10 of a unit, `1.5 KiB`, `100 KiB`, `999 B`."""
    if n < 10:
        return f"{n} B"
    e = 0
    while e < 6 and n >= 1024 ** (e + 1):
        e += 1
    val = math.floor(n / 1024**e * 10 + 0.5) / 10
    unit = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")[e]
    return f"{val:.1f} {unit}" if val < 10 else f"{val:.0f} {unit}"


def _fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def format_go_duration(ns: int) -> str:
    """Go's `time.Duration.String` of `ns` nanoseconds."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_fraction(u, 1_000)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_fraction(u, 1_000_000)}ms"
    secs, frac = divmod(u, 1_000_000_000)
    out = _fraction(secs % 60 * 1_000_000_000 + frac, 1_000_000_000) + "s"
    minutes = secs // 60
    if minutes:
        out = f"{minutes % 60}m{out}"
        if minutes // 60:
            out = f"{minutes // 60}h{out}"
    return sign + out


_PROM_UNITS = (("y", 365 * 86_400_000, True), ("w", 7 * 86_400_000, True),
               ("d", 86_400_000, False), ("h", 3_600_000, False), ("m", 60_000, False),
               ("s", 1_000, False), ("ms", 1, False))


def format_prom_duration(ns: int) -> str:
    """Prometheus' `model.Duration.String` (Loki prints its duration limits so): whole
    milliseconds; years and weeks only when they divide exactly."""
    ms = abs(ns) // 1_000_000
    if ms == 0:
        return "0s"
    out = "-" if ns < 0 else ""
    for unit, mult, exact in _PROM_UNITS:
        if exact and ms % mult:
            continue
        if ms >= mult:
            out += f"{ms // mult}{unit}"
            ms %= mult
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_go_time(ns: int) -> str:
    """Go's `time.Time.String` of Unix `ns` in UTC: `2026-12-04 16:00:00 +0000 UTC`, the
    fraction with its trailing zeros cut (as Loki writes an entry's time in errors)."""
    secs, frac = divmod(ns, 1_000_000_000)
    t = _EPOCH + timedelta(seconds=secs)
    stamp = f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if frac:
        stamp += "." + f"{frac:09d}".rstrip("0")
    return stamp + " +0000 UTC"
