"""Syslog over TCP (RFC 6587): octet-counted frames (`<len> <msg>`) and LF-terminated
frames, detected frame by frame as rsyslog and syslog-ng do: a frame that starts with a
digit is octet-counted, any other (normally `<`) runs to the next LF."""

from __future__ import annotations

DEFAULT_MAX_FRAME = 64 * 1024
_MAX_LEN_DIGITS = 10


class SyslogFramer:
    """Feed it bytes as they arrive on one connection; it returns the complete frames.

    A frame longer than `max_frame` is cut into `max_frame` pieces rather than buffered
    without bound (nothing is dropped). Empty frames and a trailing CR are removed.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        frames: list[bytes] = []
        pos = 0
        while pos < len(self._buf):
            frame, nxt = self._next(pos)
            if nxt == pos:  # incomplete: wait for more bytes
                break
            pos = nxt
            if frame:
                frames.append(frame)
        del self._buf[:pos]
        return frames

    def flush(self) -> list[bytes]:
        """At end of stream: whatever is left is the last (unterminated) frame."""
        rest = bytes(self._buf).rstrip(b"\r\n")
        self._buf.clear()
        return [rest] if rest else []

    def _next(self, pos: int) -> tuple[bytes, int]:
        buf = self._buf
        if 0x31 <= buf[pos] <= 0x39:  # "1".."9": MSG-LEN SP MSG
            counted = self._octet_counted(pos)
            if counted is not None:
                return counted
        end = buf.find(b"\n", pos, pos + self.max_frame + 1)
        if end < 0:
            if len(buf) - pos <= self.max_frame:
                return b"", pos
            end = pos + self.max_frame  # too long: cut here, the rest is the next frame
            return bytes(buf[pos:end]), end
        return bytes(buf[pos:end]).rstrip(b"\r"), end + 1

    def _octet_counted(self, pos: int) -> tuple[bytes, int] | None:
        """The frame at `pos` if it is a valid octet count; (b"", pos) to wait for more;
        None if the digits are not a frame length (then the frame is LF-terminated)."""
        buf = self._buf
        space = buf.find(b" ", pos, pos + _MAX_LEN_DIGITS + 1)
        if space < 0:
            digits = bytes(buf[pos:pos + _MAX_LEN_DIGITS + 1])
            if len(digits) <= _MAX_LEN_DIGITS and digits.isdigit():
                return b"", pos  # the length may still be arriving
            return None
        digits = bytes(buf[pos:space])
        if not digits.isdigit() or int(digits) > self.max_frame:
            return None
        start, end = space + 1, space + 1 + int(digits)
        if end > len(buf):
            return b"", pos
        return bytes(buf[start:end]), end
