"""Per-block token filters and counts, kept in the chunk footer's filters slot: a Bloom
filter of a block's whole-word tokens, so a query can leave out the blocks that cannot
hold a line it selects without reading them; and the block's lines and bytes per minute
(and per `detected_level`, a label worked out at read time, when the owner says how), so
a count over it needs no lines even when it spans a bucket edge.

What is indexed (`block_tokens`, the rule `sluiceway.model.words` defines): the tokens
of every line, of every line with its JSON escapes decoded (`model.decode_escapes`), and
of every structured metadata value. The query side (`sluiceway.logql`) only ever asks
for tokens a matching line must hold in one of those forms, so a filter never rules
out a block holding a matching line; a block it lets through may still hold none (a
false positive, about 0.8 % at the size below).

Layout of one block's slot: sections back to back (an empty slot: no filter, never
skipped; an unknown kind is passed over), each `u8 kind | u8 | u16 0 | u32 n` and then:
  kind 1, Bloom: the u8 is the probes k, n the bits m; ceil(m / 8) bytes of bits. Bit i
    is bit (i & 7) of byte i >> 3. A token's probes are `(h1 + j·h2) mod m` for j < k, h1
    and h2 the low and high 32 bits of `token_hashes` (h2 made odd).
  kind 2, counts (the u8: layout version 1): n is the length of what follows: str key
    (the rules that made the values, `LevelRules.key`; "" for none) | u16 values | that
    many str values | u32 rows | rows of (i64 minute m | u16 value index | u32 lines |
    u64 bytes): the block's lines and bytes in minute `((m-1)·60 s, m·60 s]` with that
    value (`str`: a u16 length and that many bytes of UTF-8).
"""

from __future__ import annotations

import struct
from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from sluiceway.model import EntryBlock, decode_escapes, words

KIND_BLOOM = 1
KIND_COUNTS = 2
PROBES = 7
BITS_PER_TOKEN = 10  # with 7 probes: a false-positive rate of about 0.82 %
_HEAD = struct.Struct("<BBHI")
U64 = npt.NDArray[np.uint64]

_P = np.uint64(0x100000001B3)  # FNV's 64-bit prime: odd, so every power is too
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
_LEN = np.uint64(0x9E3779B97F4A7C15)
_S33 = np.uint64(33)
_POW: list[U64] = [np.ones(1, dtype=np.uint64)]


def _powers(n: int) -> U64:
    """P**i mod 2**64 for i < n."""
    have = _POW[0]
    if len(have) < n:
        out = np.empty(max(n, 2 * len(have)), dtype=np.uint64)
        out[0] = 1
        with np.errstate(over="ignore"):
            for i in range(1, len(out)):
                out[i] = out[i - 1] * _P
        _POW[0] = have = out
    return have[:n]


def token_hashes(tokens: list[bytes]) -> U64:
    """A 64-bit hash of each token (all non-empty): sum of byte_i * P**i mod 2**64, mixed
    with the length and MurmurHash3's 64-bit finaliser. Part of the on-disk format."""
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    lens = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    buf = np.frombuffer(b"".join(tokens), dtype=np.uint8).astype(np.uint64)
    starts = np.zeros(len(tokens), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    pos = np.arange(len(buf), dtype=np.int64) - np.repeat(starts, lens)
    with np.errstate(over="ignore"):
        h = np.add.reduceat(buf * _powers(int(lens.max()))[pos], starts, dtype=np.uint64)
        h ^= lens.astype(np.uint64) * _LEN
        h ^= h >> _S33
        h *= _M1
        h ^= h >> _S33
        h *= _M2
        h ^= h >> _S33
    return h


def block_tokens(block: EntryBlock) -> set[bytes]:
    """The distinct tokens a block's filter holds (see the module's docstring)."""
    c = block.compacted()
    # Lines are back to back in the blob: a newline between them keeps a token from
    # running over two lines.
    arr = np.frombuffer(c.blob, dtype=np.uint8)
    joined = np.insert(arr, c.offsets[1:-1], 10).tobytes() if len(c) > 1 else c.blob
    out = set(words(joined))
    if b"\\" in joined:
        out.update(words(decode_escapes(joined)))
    if c.metadata is not None:
        for md in c.metadata:
            if md:
                for v in md.values():
                    out.update(words(v.encode()))
    return out


def build_filter(block: EntryBlock) -> bytes:
    """The filter bytes of one block."""
    tokens = list(block_tokens(block))
    m = max(64, -(-len(tokens) * BITS_PER_TOKEN // 8) * 8)
    flags = np.zeros(m, dtype=np.bool_)
    if tokens:
        flags[_probes(token_hashes(tokens), m, PROBES).reshape(-1)] = True
    return _HEAD.pack(KIND_BLOOM, PROBES, 0, m) + np.packbits(flags, bitorder="little").tobytes()


def _probes(h: U64, m: int, k: int) -> npt.NDArray[np.int64]:
    """The k bit positions of each hash, one row per hash."""
    h1 = (h & np.uint64(0xFFFFFFFF)).astype(np.int64)
    h2 = ((h >> np.uint64(32)) | np.uint64(1)).astype(np.int64)
    j = np.arange(k, dtype=np.int64)
    return (h1[:, None] + j[None, :] * h2[:, None]) % m


def sections(slot: bytes) -> dict[int, memoryview]:
    """The sections of a block's slot by kind (the bytes after each header); a slot cut
    short yields what is whole."""
    out: dict[int, memoryview] = {}
    view = memoryview(slot)
    pos = 0
    while pos + _HEAD.size <= len(view):
        kind, _a, _r, n = _HEAD.unpack_from(view, pos)
        size = -(-n // 8) if kind == KIND_BLOOM else n
        if pos + _HEAD.size + size > len(view):
            break
        out.setdefault(kind, view[pos:pos + _HEAD.size + size])
        pos += _HEAD.size + size
    return out


_STR = struct.Struct("<H")
_ROW = np.dtype([("minute", "<i8"), ("value", "<u2"), ("n", "<u4"), ("bytes", "<u8")])
MINUTE_NS = 60 * 10**9
MAX_ROWS = 1024  # (minute, value) pairs a block's counts keep at most; past it, none
COUNTS_VERSION = 1  # the layout of a counts section (its header's second byte)


def build_counts(key: str, values: str | list[str], block: EntryBlock) -> bytes:
    """The counts section of a block whose line i has label value `values[i]` (a str:
    every line; "" for no label), worked out under the rules `key` ("" for none): lines
    and bytes per minute `((m-1)·60 s, m·60 s]` and value. Empty when there would be more
    than `MAX_ROWS` of them (a sparse stream's block over many hours)."""
    minutes = -(-block.ts // MINUTE_NS)
    if isinstance(values, str):
        names, codes = [values], np.zeros(len(block), dtype=np.int64)
    else:
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(v, len(index)) for v in values),
                            dtype=np.int64, count=len(values))
        names = list(index)
    if len(names) > 0xFFFF:
        return b""
    pairs, inv = np.unique(minutes * len(names) + codes, return_inverse=True)
    if len(pairs) > MAX_ROWS:
        return b""
    rows = np.zeros(len(pairs), dtype=_ROW)
    rows["minute"] = pairs // len(names)
    rows["value"] = pairs % len(names)
    rows["n"] = np.bincount(inv, minlength=len(pairs))
    rows["bytes"] = np.bincount(inv, weights=np.diff(block.offsets), minlength=len(pairs))
    payload = b"".join([_str(key), _STR.pack(len(names)), *map(_str, names),
                        struct.pack("<I", len(rows)), rows.tobytes()])
    return _HEAD.pack(KIND_COUNTS, COUNTS_VERSION, 0, len(payload)) + payload


def _str(text: str) -> bytes:
    raw = text.encode()[:0xFFFF]
    return _STR.pack(len(raw)) + raw


def _read_str(buf: memoryview, pos: int) -> tuple[str, int]:
    (size,) = _STR.unpack_from(buf, pos)
    if pos + 2 + size > len(buf):
        raise ValueError("cut short")
    return bytes(buf[pos + 2:pos + 2 + size]).decode(), pos + 2 + size


Rows = tuple[tuple[int, str, int, int], ...]  # (bucket id, value, lines, bytes)


def block_rows(slot: bytes, key: str, grid: int, one_bucket: bool,
               lines: int, nbytes: int, maxt: int) -> Rows | None:
    """A block's lines and bytes per bucket `((k-1)·grid, k·grid]` (by its id k) and per
    value of the label `key`'s rules made (value "" when `key` is ""), or None when the
    block's slot cannot say: no counts under those rules (when `key` is not ""), or a
    block over several buckets without counts by minute (or a grid that is no whole
    number of minutes). `one_bucket`: the block lies in one bucket (then its totals
    `lines`, `nbytes` serve when no split by value is asked for)."""
    if not key and one_bucket:
        return ((-(-maxt // grid), "", lines, nbytes),)
    sec = sections(slot).get(KIND_COUNTS)
    if sec is None or sec[1] != COUNTS_VERSION or (not one_bucket and grid % MINUTE_NS):
        return None
    try:
        made_by, pos = _read_str(sec, _HEAD.size)
        if key and made_by != key:
            return None
        (nv,) = _STR.unpack_from(sec, pos)
        pos += 2
        names = []
        for _ in range(nv):
            name, pos = _read_str(sec, pos)
            names.append(name)
        (nr,) = struct.unpack_from("<I", sec, pos)
        rows = np.frombuffer(sec, dtype=_ROW, count=nr, offset=pos + 4)
    except (struct.error, UnicodeDecodeError, ValueError):
        return None
    if not names or int(rows["value"].max(initial=0)) >= len(names):
        return None
    if one_bucket:  # the minutes may reach past the bucket's edges: the block does not
        buckets = np.full(len(rows), -(-maxt // grid), dtype=np.int64)
    else:  # a whole number of minutes: each minute lies in one bucket
        buckets = -(-(rows["minute"] * MINUTE_NS) // grid)
    values = rows["value"] if key else np.zeros(len(rows), dtype=np.uint16)
    out: dict[tuple[int, int], list[int]] = {}
    for b, v, n, nb in zip(buckets.tolist(), values.tolist(), rows["n"].tolist(),
                           rows["bytes"].tolist(), strict=True):
        acc = out.setdefault((b, v), [0, 0])
        acc[0] += n
        acc[1] += nb
    return tuple((b, names[v] if key else "", n, nb) for (b, v), (n, nb) in out.items())


class TokenProbe:
    """A query's required tokens, hashed once, tested against block filters."""

    def __init__(self, tokens: Collection[bytes]) -> None:
        self.tokens = tuple(sorted(tokens))
        self._pairs = [(int(h) & 0xFFFFFFFF, (int(h) >> 32) | 1)
                       for h in token_hashes(list(self.tokens)).tolist()]

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def excludes(self, filt: bytes) -> bool:
        """True when the block whose filter is `filt` holds no line that has every token
        (an empty or unknown filter excludes nothing)."""
        if not self._pairs or len(filt) < _HEAD.size:
            return False
        kind, k, _r, m = _HEAD.unpack_from(filt)
        base = _HEAD.size
        if kind != KIND_BLOOM:  # the Bloom section comes first when there is one
            sec = sections(filt).get(KIND_BLOOM)
            if sec is None:
                return False
            filt = bytes(sec)
            kind, k, _r, m = _HEAD.unpack_from(filt)
        if not m or not k or len(filt) < _HEAD.size + m // 8:
            return False
        for h1, h2 in self._pairs:
            for j in range(k):
                p = (h1 + j * h2) % m
                if not (filt[base + (p >> 3)] >> (p & 7)) & 1:
                    return True
        return False
