"""Columnar parsers: `| json` and `| logfmt` fields of a whole block at once.

A block's blob and offsets become an Arrow binary array without a copy, and RE2 kernels
of pyarrow.compute (C++, the GIL released) run over all its lines in one call. Each line
falls in one of three classes:

- *simple*: a shape whose parse result is unambiguous and equal to the reference
  scanner's — for JSON a flat object of identifier keys and strings without escapes,
  numbers, booleans or nulls; for logfmt `key=value` / `key="quoted"` pairs of identifier
  keys without `=` or escapes in values. Their fields are extracted by regex, as columns;
- *not an object* (JSON only): the first character is not `{` or blank: the reference
  stops at once with `JSONParserErr` and no labels, so these need no parsing either;
- *other*: everything else (escapes, nesting, odd keys, duplicate wanted keys, malformed
  text). The caller sends these few lines through the per-line reference stages, so every
  answer stays exact whatever the input.

A column is dictionary-encoded (`Col`): one code per line (-1 = no such label) into a
list of distinct values, so label filters and conversions run once per distinct value.
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from sluiceway.model import EntryBlock


class _OnFirstUse:
    """A module imported when first used: pyarrow (about 30 MB) loads with the first query
    that scans columns, not in every process that imports the engine (the pattern miner,
    a server that only ingests)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = _OnFirstUse("pyarrow")
    pc = _OnFirstUse("pyarrow.compute")


def on_first_use(name: str) -> Any:
    """Module `name`, imported when one of its attributes is first read."""
    return _OnFirstUse(name)

Codes = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

# A label name that is its own sanitised form and can never be `__error__`-like.
_IDENT = r"(?:[A-Za-z][A-Za-z0-9_]*|_[A-Za-z0-9][A-Za-z0-9_]*)"
IDENT_RE = re.compile(_IDENT)
_WS = r"[ \t\n\r]*"
_JVAL = r'(?:"[^"\\]*"|-?[0-9][0-9.eE+-]*|true|false|null)'
_JMEMBER = rf'"{_IDENT}"{_WS}:{_WS}{_JVAL}{_WS}'
SIMPLE_JSON = rf"^{_WS}\{{{_WS}{_JMEMBER}(?:,{_WS}{_JMEMBER})*\}}$"
# `| unpack` reads the line with a strict JSON decoder: numbers as JSON spells them, no
# control characters in strings, the object's brace first.
_UVAL = (r'(?:"[^"\\\x00-\x1f]*"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?'
         r"|true|false|null)")
_UMEMBER = rf'"{_IDENT}"{_WS}:{_WS}{_UVAL}{_WS}'
SIMPLE_UNPACK = rf"^\{{{_WS}{_UMEMBER}(?:,{_WS}{_UMEMBER})*\}}$"
_LSEP = r"[\x00-\x20]"
_LPAIR = rf'{_IDENT}=(?:"[^"\\=]*"|[^\x00-\x20"=]*)'
SIMPLE_LOGFMT = rf"^{_LSEP}*(?:{_LPAIR}(?:{_LSEP}+{_LPAIR})*)?{_LSEP}*$"
_LVAL = r'(?:"[^"\\=]*"|[^\x00-\x20"=]*)'

_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")
_WORD = _LETTERS | _DIGITS | {"_"}
# _IDENT's two branches: fixed classes for the first characters, then _WORD*.
_BRANCHES = ([_LETTERS], [frozenset("_"), _LETTERS | _DIGITS])


def _cls(chars: frozenset[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


def _branch_except(w: str, sets: list[frozenset[str]]) -> str:
    """The branch `sets[0] sets[1] .. _WORD*` without the one word `w` (RE2 has no
    lookahead, so the complement is spelled out: diverge at some position, stop early,
    or go on past the end of `w`)."""
    def at(i: int) -> frozenset[str]:
        return sets[i] if i < len(sets) else _WORD

    def tail(j: int) -> str:
        return "".join(_cls(at(t)) for t in range(j, len(sets))) + _cls(_WORD) + "*"

    full = "".join(_cls(c) for c in sets) + _cls(_WORD) + "*"
    if len(w) < len(sets) or any(c not in at(i) for i, c in enumerate(w)):
        return full
    alts = []
    for i, c in enumerate(w):
        rest = at(i) - {c}
        if rest:
            alts.append(re.escape(w[:i]) + _cls(rest) + tail(i + 1))
    alts += [re.escape(w[:i]) for i in range(max(len(sets), 1), len(w))]
    alts.append(re.escape(w) + _cls(_WORD) + "+")
    return "(?:" + "|".join(alts) + ")"


def ident_except(w: str) -> str:
    """A regex of every key `_IDENT` accepts except `w`."""
    return "(?:" + "|".join(_branch_except(w, list(b)) for b in _BRANCHES) + ")"


def _at_most_once(other: str, one: str, sep: str) -> str:
    """A `sep`-separated list of items, at most one of which is `one`, at least one item."""
    return (f"(?:{other}(?:{sep}{other})*(?:{sep}{one}(?:{sep}{other})*)?"
            f"|{one}(?:{sep}{other})*)")


@functools.lru_cache(maxsize=256)
def simple_json(unique: str | None = None) -> str:
    """SIMPLE_JSON; with `unique`, also only lines where that key occurs at most once
    (kept: every block asks, and spelling it out takes about 0.2 ms)."""
    if unique is None:
        return SIMPLE_JSON
    other = rf'"{ident_except(unique)}"{_WS}:{_WS}{_JVAL}{_WS}'
    one = rf'"{re.escape(unique)}"{_WS}:{_WS}{_JVAL}{_WS}'
    return rf"^{_WS}\{{{_WS}{_at_most_once(other, one, ',' + _WS)}\}}$"


@functools.lru_cache(maxsize=256)
def simple_logfmt(unique: str | None = None) -> str:
    if unique is None:
        return SIMPLE_LOGFMT
    other = f"{ident_except(unique)}={_LVAL}"
    one = f"{re.escape(unique)}={_LVAL}"
    return rf"^{_LSEP}*(?:{_at_most_once(other, one, _LSEP + '+')})?{_LSEP}*$"


@dataclass(slots=True)
class Col:
    """A dictionary-encoded label column: `codes[i]` indexes `values`, -1 = absent."""

    codes: Codes
    values: list[str]
    fixed: str | None = None  # every line has this value (a stream label)

    @staticmethod
    def absent(n: int) -> Col:
        return Col(np.full(n, -1, dtype=np.int64), [])

    @staticmethod
    def constant(n: int, value: str) -> Col:
        return Col(np.zeros(n, dtype=np.int64), [value], value)

    def take(self, idx: npt.NDArray[np.intp]) -> Col:
        return Col(self.codes[idx], self.values, self.fixed)


def arrow_lines(block: EntryBlock) -> pa.Array:
    """The block's lines as an Arrow large_binary array sharing the blob's memory."""
    offs = block.offsets
    base = int(offs[0])
    if base:
        offs = offs - base
    data = memoryview(block.blob)[base:int(block.offsets[-1])]
    return pa.Array.from_buffers(pa.large_binary(), len(block),
                                 [None, pa.py_buffer(np.ascontiguousarray(offs, np.int64)),
                                  pa.py_buffer(data)])


def arrow_text(block: EntryBlock) -> pa.Array | None:
    """The lines as an Arrow large_string array (RE2 in UTF-8 mode, as the per-line
    engine's), or None when the blob is not valid UTF-8."""
    arr = arrow_lines(block)
    text = pa.Array.from_buffers(pa.large_string(), len(arr), arr.buffers())
    if not block.blob.isascii():
        try:
            text.validate(full=True)
        except pa.ArrowInvalid:
            return None
    return text


def regexp_fields(arr: pa.Array, pattern: str, groups: dict[str, str]) -> dict[str, Col]:
    """`| regexp`: label name -> column of its named group; a line the pattern does not
    match has none of them, a group that did not take part is "" (as `m.group(n) or ""`)."""
    got = pc.extract_regex(arr, pattern)
    invalid = ~_np_bool(got.is_valid()) if got.null_count else None
    out = {}
    for label, group in groups.items():
        enc = pc.dictionary_encode(got.field(group))
        codes = np.asarray(enc.indices.fill_null(-1).to_numpy(zero_copy_only=False),
                           dtype=np.int64)
        values = [v or "" for v in enc.dictionary.to_pylist()]
        if invalid is not None:
            codes[invalid] = -1
        out[label] = Col(codes, values)
    return out


def _np_bool(a: Any) -> Mask:
    return np.asarray(a.to_numpy(zero_copy_only=False), dtype=np.bool_)


def json_classes(block: EntryBlock, arr: pa.Array,
                 unique: str | None = None) -> tuple[Mask, Mask]:
    """(simple, not_object) masks of a block's lines for `| json`; with `unique`, simple
    lines hold that key at most once (so its extraction needs no count)."""
    n = len(block)
    lens = np.diff(block.offsets)
    first = np.full(n, 0x7B, dtype=np.uint8)  # an empty line is not an object either
    nonempty = lens > 0
    if nonempty.any():
        b = np.frombuffer(block.blob, dtype=np.uint8)
        first[nonempty] = b[block.offsets[:-1][nonempty]]
    not_obj = ~np.isin(first, np.array([0x7B, 0x20, 0x09, 0x0A, 0x0D], dtype=np.uint8))
    not_obj |= ~nonempty
    if not_obj.all():
        return np.zeros(n, dtype=np.bool_), not_obj
    simple = _np_bool(pc.match_substring_regex(arr, simple_json(unique))) & ~not_obj
    return simple, not_obj


def unpack_classes(block: EntryBlock, arr: pa.Array) -> tuple[Mask, Mask]:
    """(simple, not_object) masks of a block's lines for `| unpack`: a line that does not
    start with `{` is no object (the reference sets `JSONParserErr` and stops); a simple
    one is a flat object of identifier keys and plain values that a strict decoder reads
    the same way."""
    n = len(block)
    lens = np.diff(block.offsets)
    first = np.zeros(n, dtype=np.uint8)
    nonempty = lens > 0
    if nonempty.any():
        b = np.frombuffer(block.blob, dtype=np.uint8)
        first[nonempty] = b[block.offsets[:-1][nonempty]]
    not_obj = first != 0x7B
    if not_obj.all():
        return np.zeros(n, dtype=np.bool_), not_obj
    simple = _np_bool(pc.match_substring_regex(arr, SIMPLE_UNPACK)) & ~not_obj
    return simple, not_obj


def string_spans(arr: pa.Array, name: str, simple: Mask
                 ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64],
                            npt.NDArray[np.int64], Mask] | None:
    """Where the string value of key `name` lies in the simple lines that hold it as
    `"name":"value"` (rows, start, stop in the array's data buffer), and the simple lines
    holding the key in another shape; None for an empty or sliced array."""
    search = _key_search(arr, f'"{name}"', simple)
    if search is None:
        return None
    offs, data_buf, data, pos, rows, _codes, slow = search
    after = offs[rows] + pos[rows] + len(name) + 2
    quick = data[after] == 0x3A
    quick[quick] = data[after[quick] + 1] == 0x22
    slow[rows[~quick]] = True
    rows, start = rows[quick], after[quick] + 2
    if not len(rows):
        return rows, start, start, slow
    spans = np.empty(2 * len(rows), dtype=np.int64)
    spans[0::2], spans[1::2] = start, offs[rows + 1]
    dist = np.asarray(pc.find_substring(_view(data_buf, spans), '"').to_numpy(
        zero_copy_only=False), dtype=np.int64)[0::2]
    return rows, start, start + dist, slow


def logfmt_simple(arr: pa.Array, unique: str | None = None) -> Mask:
    return _np_bool(pc.match_substring_regex(arr, simple_logfmt(unique)))


def _field_patterns(fmt: str, name: str) -> tuple[str, str]:
    """(count pattern, extract pattern) of a top-level key in a simple line."""
    key = re.escape(name)
    if fmt == "json":
        return (rf'"{key}"{_WS}:', rf'"{key}"{_WS}:{_WS}(?P<v>"[^"]*"|[^ \t\n\r,}}]*)')
    return (rf"(?:^|{_LSEP}){key}=", rf'(?:^|{_LSEP}){key}=(?P<v>"[^"]*"|[^\x00-\x20]*)')


def extract_field(fmt: str, arr: pa.Array, name: str, simple: Mask,
                  unique: bool = False) -> tuple[Col, Mask]:
    """The value of key `name` on the simple lines, and the simple lines where the key
    occurs more than once (the caller moves those to the per-line path); `unique` when the
    simple lines are known to hold it at most once."""
    is_json = fmt != "logfmt"
    count_pat, extract_pat = _field_patterns("json" if is_json else fmt, name)
    n = len(arr)
    # (a key known to be unique only needs its first occurrence: `_key_search` finds it)
    hits = None if unique else key_hits(arr, f'"{name}"' if is_json else f"{name}=", is_json)
    if unique:
        dup = np.zeros(n, dtype=np.bool_)
    elif hits is not None:
        dup = simple & hits.many
    else:
        dup = simple & (np.asarray(pc.count_substring_regex(arr, count_pat).to_numpy(
            zero_copy_only=False)) > 1)
    if fmt in ("json", "unpack", "logfmt"):
        fast = _logfmt_values(arr, name, simple, hits) if fmt == "logfmt" else _json_strings(
            arr, name, simple, fmt == "json", hits, numbers=fmt == "json")
        if fast is not None:
            codes, values, slow = fast
            if slow.any():  # other value shapes: the regex, for those lines only
                other = _extract(fmt, arr, extract_pat, slow)
                codes[slow] = np.where(other.codes[slow] >= 0,
                                       other.codes[slow] + len(values), -1)
                values = values + other.values
            return Col(codes, values), dup
    col = _extract(fmt, arr, extract_pat, simple)
    return col, dup


def _view(data: pa.Buffer, bounds: npt.NDArray[np.int64]) -> pa.Array:
    """Values data[bounds[0]:bounds[1]], data[bounds[1]:bounds[2]], ... without a copy."""
    return pa.Array.from_buffers(pa.large_binary(), len(bounds) - 1,
                                 [None, pa.py_buffer(bounds), data])


class _KeySearch(NamedTuple):
    offs: npt.NDArray[np.int64]  # the lines' bounds in `data`
    data_buf: pa.Buffer
    data: npt.NDArray[np.uint8]
    pos: npt.NDArray[np.int64]  # where each line holds the needle first (-1: nowhere)
    rows: npt.NDArray[np.intp]  # simple lines that hold it
    codes: Codes  # to fill: every line without a value (-1)
    slow: Mask  # to fill: simple lines the regex must read


class KeyHits(NamedTuple):
    pos: npt.NDArray[np.int64]  # each line's first key-like occurrence (-1: none)
    many: Mask  # lines with two or more


# Letters from the most to the least frequent in text: between bytes equally rare in the
# probe, the rarer letter is searched first (fewer candidates to check).
_PROBE = 1 << 16
_FREQ = "etaoinshrdlcumwfgypbvkjxqz"


def _rarity(c: int) -> int:
    ch = chr(c)
    if ch in _FREQ:
        return _FREQ.index(ch)
    return 20 if ch.isalnum() or ch == "_" else -1


def key_hits(arr: pa.Array, needle: str, json: bool) -> KeyHits | None:
    """Where a key occurs in each line, found with numpy over the whole data buffer (a
    literal search per line from Arrow is slow when the key sits far into the line):
    occurrences of `needle` that can be a key — for JSON (`"name"`) followed by `:` or
    blank, for logfmt (`name=`) at the line's start or after a byte <= 0x20. In a simple
    line (no quote inside a JSON string, no `=` inside a logfmt value) that is exactly a
    key; in others it may also be text, which only sends more lines to the slow paths.
    None when the array is empty or sliced."""
    n = len(arr)
    raw = needle.encode()
    m = len(raw)
    if not n or arr.offset or not m:
        return None
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int64)[: n + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    lo, hi = int(offs[0]), int(offs[-1])
    pos = np.full(n, -1, dtype=np.int64)
    many = np.zeros(n, dtype=np.bool_)
    if hi - lo < m:
        return KeyHits(pos, many)
    # the needle's rarest byte in (the start of) this block is searched first
    seen = np.bincount(data[lo:min(hi, lo + _PROBE)], minlength=256)
    j = min(range(m), key=lambda k: (int(seen[raw[k]]), -_rarity(raw[k])))
    cand = np.flatnonzero(data[lo + j: hi - m + 1 + j] == raw[j]) + lo
    for k in range(m):
        if k != j and len(cand):
            cand = cand[data[cand + k] == raw[k]]
    line = np.searchsorted(offs, cand, "right") - 1
    end = offs[line + 1]
    ok = cand + m <= end
    if json:
        nxt = np.minimum(cand + m, hi - 1)
        ok &= (cand + m < end) & np.isin(data[nxt], np.frombuffer(b": \t\n\r", np.uint8))
    else:
        ok &= (cand == offs[line]) | (data[np.maximum(cand - 1, 0)] <= 0x20)
    cand, line = cand[ok], line[ok]
    if len(cand):
        first = np.concatenate(([True], line[1:] != line[:-1]))
        pos[line[first]] = cand[first] - offs[line[first]]
        many = np.bincount(line, minlength=n) > 1
    return KeyHits(pos, many)


_SAMPLE = 256


def _near_start(arr: pa.Array, needle: str) -> bool:
    """Is Arrow's literal search (its cost grows with how far into a line the needle
    sits: about 5 ns a byte) cheaper here than `key_hits` (about 1.2 ns a byte of the
    whole block)? Judged on the first lines: the needle within their first fifth."""
    head = arr.slice(0, _SAMPLE)
    found = np.asarray(pc.find_substring(head, needle).to_numpy(zero_copy_only=False),
                       dtype=np.int64)
    lens = np.asarray(pc.binary_length(head).to_numpy(zero_copy_only=False), dtype=np.int64)
    scanned = np.where(found >= 0, found + len(needle), lens)
    return int(scanned.sum()) * 5 < int(lens.sum())


def _key_search(arr: pa.Array, needle: str, simple: Mask,
                hits: KeyHits | None = None) -> _KeySearch | None:
    """Where a key first occurs in each line (`key_hits`), with zero-copy views of the
    array's buffers; None when the array is empty or sliced (the callers' regex path)."""
    n = len(arr)
    if not n or arr.offset:
        return None
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int64)[: n + 1]
    data_buf = arr.buffers()[2]
    if hits is not None:
        pos = hits.pos
    elif _near_start(arr, needle):
        pos = np.asarray(pc.find_substring(arr, needle).to_numpy(zero_copy_only=False),
                         dtype=np.int64)
    else:
        got = key_hits(arr, needle, needle.startswith('"'))
        if got is None:
            return None
        pos = got.pos
    return _KeySearch(offs, data_buf, np.frombuffer(data_buf, dtype=np.uint8), pos,
                      np.flatnonzero(simple & (pos >= 0)), np.full(n, -1, dtype=np.int64),
                      np.zeros(n, dtype=np.bool_))


_NUM_START = np.zeros(256, dtype=np.bool_)
_NUM_START[list(b"-0123456789")] = True
_NUM_BODY = np.zeros(256, dtype=np.bool_)
_NUM_BODY[list(b"0123456789.eE+-")] = True
_NUM_MAX = 24


def _number_ends(data_buf: pa.Buffer, data: npt.NDArray[np.uint8],
                 start: npt.NDArray[np.int64],
                 end: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], Mask]:
    """Where each number starting at `start` ends (a simple line's number is
    `-?[0-9][0-9.eE+-]*`, then a blank, `,` or the line's final `}`: the next comma, or
    that brace; the caller checks the bytes between), and the numbers not read that way
    (left to the regex)."""
    spans = np.empty(2 * len(start), dtype=np.int64)
    spans[0::2], spans[1::2] = start, end
    view = _view(data_buf, spans)
    dist = np.asarray(pc.find_substring(view, ",").to_numpy(zero_copy_only=False),
                      dtype=np.int64)[0::2]
    # no comma after it: the last member, before the line's closing brace
    stop = np.where(dist >= 0, start + dist, end - 1)
    lens = stop - start
    return stop, (lens <= 0) | (lens > _NUM_MAX)


def _json_strings(arr: pa.Array, name: str, simple: Mask, blank_fffd: bool = True,
                  hits: KeyHits | None = None,
                  numbers: bool = False) -> tuple[Codes, list[str], Mask] | None:
    """`"name":"value"` on simple lines with literal searches instead of a regex: in a
    simple line a string holds no quote, so the first `"name"` followed by a colon is the
    key and its value ends at the next quote; with `numbers` (`| json`), a number's text
    is read too. Returns the codes, the values, and the simple lines holding the key in
    another shape (a space, `true`, an object...)."""
    search = _key_search(arr, f'"{name}"', simple, hits)
    if search is None:
        return None
    offs, data_buf, data, pos, rows, codes, slow = search
    if not len(rows):
        return codes, [], slow
    after = offs[rows] + pos[rows] + len(name) + 2  # just past the key's closing quote
    quick = data[after] == 0x3A  # ':'
    first = data[after[quick] + 1]
    quick[quick] = first == 0x22  # '"' opens a string value
    nums = np.zeros(len(rows), dtype=np.bool_)
    if numbers:  # a number: its text is the label (as `"200"`)
        nums[data[after] == 0x3A] = _NUM_START[first]
    slow[rows[~quick & ~nums]] = True
    num_rows, num_start = rows[nums], after[nums] + 1
    rows, start = rows[quick], after[quick] + 2
    end = offs[rows + 1]
    if len(rows):  # each string value ends at its closing quote
        spans = np.empty(2 * len(rows), dtype=np.int64)
        spans[0::2], spans[1::2] = start, end
        end = start + np.asarray(pc.find_substring(_view(data_buf, spans), '"').to_numpy(
            zero_copy_only=False), dtype=np.int64)[0::2]
    is_num = np.zeros(len(rows), dtype=np.bool_)
    if len(num_rows):
        stop, long = _number_ends(data_buf, data, num_start, offs[num_rows + 1])
        slow[num_rows[long]] = True
        # Back in line order: the spans below must not go backwards in the block.
        order = np.argsort(np.concatenate([rows, num_rows[~long]]), kind="stable")
        rows = np.concatenate([rows, num_rows[~long]])[order]
        start = np.concatenate([start, num_start[~long]])[order]
        end = np.concatenate([end, stop[~long]])[order]
        is_num = np.concatenate([is_num, np.ones(len(rows) - len(is_num), np.bool_)])[order]
    if not len(rows):
        return codes, [], slow
    spans = np.empty(2 * len(rows), dtype=np.int64)  # [value start, value end] of each row
    spans[0::2], spans[1::2] = start, end
    strings = pc.take(_view(data_buf, spans), pa.array(np.arange(0, 2 * len(rows) - 1, 2)))
    keep = np.ones(len(rows), dtype=np.bool_)
    if is_num.any():  # a number's bytes are all a number's (else a blank came before the comma)
        voffs = np.frombuffer(strings.buffers()[1], dtype=np.int64)[:len(rows) + 1]
        vbuf = np.frombuffer(strings.buffers()[2], dtype=np.uint8)
        other = np.concatenate(([0], np.cumsum(~_NUM_BODY[vbuf[voffs[0]:voffs[-1]]],
                                               dtype=np.int64)))
        odd = is_num & ((other[voffs[1:] - voffs[0]] - other[voffs[:-1] - voffs[0]]) > 0)
        keep = ~odd
        slow[rows[odd]] = True
    enc = pc.dictionary_encode(strings)
    got = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    codes[rows[keep]] = got[keep]
    values = [v.decode("utf-8", "replace") for v in enc.dictionary.to_pylist()]
    if blank_fffd:  # `| json` turns replacement characters into spaces; unpack keeps them
        values = [v.replace("\ufffd", " ") for v in values]
    return codes, values, slow


def _logfmt_values(arr: pa.Array, name: str, simple: Mask,
                   hits: KeyHits | None = None) -> tuple[Codes, list[str], Mask] | None:
    """`name=value` / `name="value"` on simple logfmt lines with literal searches: there
    no value holds `=`, so the first `name=` after a separator (or at the start) is the
    key; an unquoted value ends at the next space (a value holding another control
    character goes to the regex), a quoted one at the next quote."""
    search = _key_search(arr, f"{name}=", simple, hits)
    if search is None:
        return None
    offs, data_buf, data, pos, rows, codes, slow = search
    if not len(rows):
        return codes, [], slow
    at = offs[rows] + pos[rows]
    key = pos[rows] == 0
    key[~key] = data[at[~key] - 1] <= 0x20
    slow[rows[~key]] = True
    rows, start = rows[key], at[key] + len(name) + 1
    if not len(rows):
        return codes, [], slow
    ends = offs[rows + 1]
    quoted = np.zeros(len(rows), dtype=np.bool_)
    inside = start < ends
    quoted[inside] = data[start[inside]] == 0x22
    start = start + quoted  # a quoted value starts after its quote
    spans = np.empty(2 * len(rows), dtype=np.int64)
    spans[0::2], spans[1::2] = start, ends
    dist = np.full(len(rows), -1, dtype=np.int64)
    view = _view(data_buf, spans)
    for sep, sel in ((b'"', quoted), (b" ", ~quoted)):
        if sel.any():
            found = np.asarray(pc.find_substring(view, sep.decode()).to_numpy(
                zero_copy_only=False), dtype=np.int64)[0::2]
            dist[sel] = found[sel]
    stop_at = np.where(dist >= 0, start + dist, ends)
    spans[1::2] = stop_at
    strings = pc.take(_view(data_buf, spans), pa.array(np.arange(0, 2 * len(rows) - 1, 2)))
    # An unquoted value that holds another control character ends earlier: the regex.
    lens = stop_at - start
    ctrl = np.zeros(len(rows), dtype=np.bool_)
    if int(lens.sum()):
        vbuf = np.frombuffer(strings.buffers()[2], dtype=np.uint8)
        cum = np.concatenate(([0], np.cumsum(vbuf <= 0x20, dtype=np.int64)))
        vo = np.concatenate(([0], np.cumsum(lens)))
        ctrl = ((cum[vo[1:]] - cum[vo[:-1]]) > 0) & ~quoted
    enc = pc.dictionary_encode(strings)
    got = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    raw: list[bytes] = enc.dictionary.to_pylist()
    remap = np.full(len(raw) + 1, -1, dtype=np.int64)
    values: list[str] = []
    for k, v in enumerate(raw):
        if v:  # an empty value is no label
            remap[k] = len(values)
            values.append(v.decode("utf-8", "replace"))
    got = remap[got]
    got[ctrl] = -1
    codes[rows] = got
    slow[rows[ctrl]] = True
    return codes, values, slow


def _extract(fmt: str, arr: pa.Array, extract_pat: str, simple: Mask) -> Col:
    n = len(arr)
    got = pc.extract_regex(arr, extract_pat)
    # A line without a match is a null struct whose child still holds "" (not null).
    enc = pc.dictionary_encode(got.field("v"))
    codes = np.asarray(enc.indices.fill_null(-1).to_numpy(zero_copy_only=False),
                       dtype=np.int64)
    if got.null_count:
        codes[~_np_bool(got.is_valid())] = -1
    raw: list[bytes] = enc.dictionary.to_pylist()
    values: list[str] = []
    remap = np.full(len(raw) + 1, -1, dtype=np.int64)  # last slot: absent stays absent
    for k, v in enumerate(raw):
        text = _value_text(fmt, v)
        if text is None:
            continue
        remap[k] = len(values)
        values.append(text)
    codes = remap[codes]
    if n:
        codes[~simple] = -1
    return Col(codes, values)


def _value_text(fmt: str, v: bytes) -> str | None:
    """A captured value as the reference scanner labels it; None = no label."""
    if fmt == "json":
        if v[:1] == b'"':
            return v[1:-1].decode("utf-8", "replace").replace("\ufffd", " ")
        return None if v == b"null" else v.decode("utf-8", "replace")
    if fmt == "unpack":  # only strings become labels
        return v[1:-1].decode("utf-8", "replace") if v[:1] == b'"' else None
    if v[:1] == b'"':
        v = v[1:-1]
    return v.decode("utf-8", "replace") or None  # logfmt: an empty value is no label
