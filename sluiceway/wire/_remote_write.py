"""Prometheus remote write 1.0: a `prometheus.WriteRequest`, raw-snappy compressed.

What the ruler sends for recording rules and `ALERTS`/`ALERTS_FOR_STATE`; the decoder is
for receivers and tests. Labels go out sorted by name, as Prometheus requires (so
`__name__` comes first), and times are Unix milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cramjam
from google.protobuf.message import DecodeError

from sluiceway.wire import _remote_write_pb2 as pb
from sluiceway.wire._errors import WireError

# The headers a remote-write 1.0 request carries (besides User-Agent and the tenant).
REMOTE_WRITE_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


@dataclass(slots=True)
class RemoteSeries:
    """One series and its float samples as (Unix ms, value)."""

    labels: dict[str, str]
    samples: list[tuple[int, float]] = field(default_factory=list)


def encode_write_request(series: Iterable[RemoteSeries]) -> bytes:
    """The snappy-compressed body of one remote-write request."""
    req: Any = pb.WriteRequest()
    for s in series:
        ts = req.timeseries.add()
        for name in sorted(s.labels):
            lab = ts.labels.add()
            lab.name, lab.value = name, s.labels[name]
        for t_ms, value in s.samples:
            sample = ts.samples.add()
            sample.timestamp, sample.value = t_ms, value
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def decode_write_request(body: bytes) -> list[RemoteSeries]:
    """A remote-write body back into series; `WireError` for anything undecodable."""
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise WireError(f"remote write body is not snappy: {exc}") from None
    try:
        req: Any = pb.WriteRequest.FromString(raw)
    except DecodeError as exc:
        raise WireError(f"remote write body is not a WriteRequest: {exc}") from None
    return [RemoteSeries({lab.name: lab.value for lab in ts.labels},
                         [(int(s.timestamp), float(s.value)) for s in ts.samples])
            for ts in req.timeseries]

