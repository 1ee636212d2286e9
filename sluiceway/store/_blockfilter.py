"""Per-block token filters: a Bloom filter of a block's whole-word tokens, kept in the
chunk footer's filters slot, so a query can leave out the blocks that cannot hold a line
it selects without reading them.

What is indexed (`block_tokens`, the rule `sluiceway.model.words` defines): the tokens
of every line, of every line with its JSON escapes decoded (`model.decode_escapes`), and
of every structured metadata value. The query side (`sluiceway.logql`) only ever asks
for tokens a matching line must hold in one of those forms, so a filter never rules
out a block holding a matching line; a block it lets through may still hold none (a
false positive, about 0.8 % at the size below).

Layout of one block's filter bytes (an empty slot: no filter, never skipped):
  u8 kind (1: Bloom) | u8 probes k | u16 0 | u32 bits m | ceil(m / 8) bytes of bits
Bit i is bit (i & 7) of byte i >> 3. A token's probes are `(h1 + j·h2) mod m` for
j < k, h1 and h2 the low and high 32 bits of `token_hashes` (h2 made odd).
"""

from __future__ import annotations

import struct
from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from sluiceway.model import EntryBlock, decode_escapes, words

KIND_BLOOM = 1
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
        if kind != KIND_BLOOM or not m or not k or len(filt) < _HEAD.size + m // 8:
            return False
        base = _HEAD.size
        for h1, h2 in self._pairs:
            for j in range(k):
                p = (h1 + j * h2) % m
                if not (filt[base + (p >> 3)] >> (p & 7)) & 1:
                    return True
        return False
