"""Content-Encoding (gzip, deflate) and raw snappy, each bounded by a decompressed-size limit."""

from __future__ import annotations

import zlib

import cramjam

from sluiceway.model import quote
from sluiceway.wire._errors import BodyTooLarge, WireError

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
_SNAPPY_MAX_RATIO = 22  # > 64/3, the best ratio any snappy block can reach


def decode_content_encoding(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo the HTTP Content-Encoding as Loki does, for JSON and protobuf bodies alike.

    `snappy` is accepted and passed through: the protobuf decoder undoes snappy itself
    (Loki tolerates the header because some clients send it, grafana/loki#3407).
    """
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity", "snappy"):
        if len(body) > limit:  # uncompressed JSON counts as its own decompressed size
            raise BodyTooLarge(len(body), limit)
        return body
    if enc == "gzip":
        return _inflate(body, _GZIP_WBITS, limit, "gzip")
    if enc == "deflate":
        return _inflate(body, _deflate_wbits(body), limit, "deflate")
    raise WireError(f"Content-Encoding {quote(encoding or '')} not supported")


def _deflate_wbits(body: bytes) -> int:
    # Loki reads raw DEFLATE (Go's flate.NewReader); RFC 9110 says zlib-wrapped. Accept
    # both: a zlib header is CM=8 with a header checksum divisible by 31.
    if len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0:
        return zlib.MAX_WBITS
    return _RAW_DEFLATE_WBITS


def _inflate(body: bytes, wbits: int, limit: int, name: str) -> bytes:
    """Decompress all members (Go's gzip reader reads concatenated members too),
    never producing more than `limit + 1` bytes, so a zip bomb cannot exhaust memory."""
    parts: list[bytes] = []
    total = 0
    data = body
    try:
        while True:
            d = zlib.decompressobj(wbits)
            out = d.decompress(data, limit - total + 1)
            total += len(out)
            if total > limit:
                raise BodyTooLarge(None, limit)
            parts.append(out)
            if not d.eof:
                raise WireError(f"error parsing push request: {name}: unexpected EOF")
            data = d.unused_data
            if not data or wbits != _GZIP_WBITS:
                break
    except zlib.error as exc:
        raise WireError(f"error parsing push request: {name}: {exc}") from None
    if data and wbits != _GZIP_WBITS:
        raise WireError(f"error parsing push request: {name}: trailing data after stream")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def snappy_decode(body: bytes, limit: int) -> memoryview:
    """Raw (block) snappy, the format of Loki's protobuf push; framed snappy is refused.

    The decoded length is read from the block header and checked against `limit`
    before any output buffer is allocated.
    """
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as exc:
        raise WireError(f"error parsing push request: {exc}") from None
    if size > limit:
        raise BodyTooLarge(size, limit)
    if size > _SNAPPY_MAX_RATIO * len(body):
        # Snappy's densest op turns 3 bytes into 64: a longer claim is a lie, refused
        # before it makes us allocate for it.
        raise WireError("error parsing push request: snappy: corrupt input: decoded length "
                        f"{size} is impossible for {len(body)} bytes")
    out = bytearray(size)
    try:
        written = cramjam.snappy.decompress_raw_into(body, out)
    except cramjam.DecompressionError as exc:
        raise WireError(f"error parsing push request: {exc}") from None
    if written != size:
        raise WireError("error parsing push request: snappy: corrupt input: length mismatch")
    return memoryview(out)
