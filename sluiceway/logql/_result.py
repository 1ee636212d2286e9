"""Query results, typed (streams, matrix, vector, scalar), and statistics; both written in
Loki's JSON shapes (`data` of the response envelope) only when asked, at the HTTP edge."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

_CACHE_KEYS = ("chunk", "index", "result", "statsResult", "volumeResult", "seriesResult",
               "labelResult", "instantMetricResult", "logResult", "taskResult")
_DATAOBJ_KEYS = ("prePredicateDecompressedRows", "prePredicateDecompressedBytes",
                 "prePredicateDecompressedStructuredMetadataBytes", "postPredicateRows",
                 "postPredicateDecompressedBytes", "postPredicateStructuredMetadataBytes",
                 "postFilterRows", "pagesScanned", "pagesDownloaded", "pagesDownloadedBytes",
                 "pageBatches", "totalRowsAvailable", "totalPageDownloadTime",
                 "wireBytesTransferred")


def _store(chunk: dict[str, int], referenced_metadata: bool = False) -> dict[str, Any]:
    return {
        "totalChunksRef": chunk.get("chunksRef", 0),
        "totalChunksDownloaded": chunk.get("chunksDownloaded", 0), "chunksDownloadTime": 0,
        "queryReferencedStructuredMetadata": referenced_metadata, "queryUsedV2Engine": False,
        "chunk": {
            "headChunkBytes": 0, "headChunkLines": 0,
            "decompressedBytes": chunk.get("decompressedBytes", 0),
            "decompressedLines": chunk.get("decompressedLines", 0),
            "compressedBytes": 0, "totalDuplicates": 0,
            "postFilterLines": chunk.get("postFilterLines", 0),
            "headChunkStructuredMetadataBytes": 0,
            "decompressedStructuredMetadataBytes":
                chunk.get("decompressedStructuredMetadataBytes", 0),
        },
        "chunkRefsFetchTime": 0, "congestionControlLatency": 0,
        "pipelineWrapperFilteredLines": 0,
        "dataobj": dict.fromkeys(_DATAOBJ_KEYS, 0),
    }


@dataclass(slots=True)
class QueryStats:
    """What one evaluation measured; the rest of Loki's stats groups are zeros."""

    bytes_processed: int = 0
    lines_processed: int = 0
    post_filter_lines: int = 0
    entries_returned: int = 0
    metadata_bytes: int = 0
    blocks_read: int = 0
    blocks_skipped: int = 0  # by a block filter, without reading its lines
    blocks_summarized: int = 0  # counted from the chunk footer, without reading its lines
    splits: int = 0
    cache_requested: int = 0  # closed splits looked up in the results cache
    cache_found: int = 0
    cache_stored: int = 0
    streams: int = 0
    exec_time: float = 0.0
    queue_time: float = 0.0

    def to_loki_json(self) -> dict[str, Any]:
        t = self.exec_time
        chunk = {"decompressedBytes": self.bytes_processed,
                 "decompressedLines": self.lines_processed,
                 "postFilterLines": self.post_filter_lines,
                 "decompressedStructuredMetadataBytes": self.metadata_bytes,
                 "chunksRef": self.blocks_read + self.blocks_skipped + self.blocks_summarized,
                 "chunksDownloaded": self.blocks_read}
        return {
            "summary": {
                "bytesProcessedPerSecond": int(self.bytes_processed / t) if t > 0 else 0,
                "linesProcessedPerSecond": int(self.lines_processed / t) if t > 0 else 0,
                "totalBytesProcessed": self.bytes_processed,
                "totalLinesProcessed": self.lines_processed,
                "execTime": round(t, 6), "queueTime": round(self.queue_time, 6),
                "subqueries": 0, "totalEntriesReturned": self.entries_returned,
                "splits": self.splits, "shards": 0, "totalPostFilterLines": self.post_filter_lines,
                "totalStructuredMetadataBytesProcessed": self.metadata_bytes,
                "estimatedQueryBytes": 0,
                # Ours (Loki's summary has no such counts): blocks not read because their
                # token filter rules the query out, and blocks counted from their footer.
                "totalBlocksSkippedByFilter": self.blocks_skipped,
                "totalBlocksFromMetadata": self.blocks_summarized,
            },
            "querier": {"store": _store(chunk), "querierExecTime": round(t, 6)},
            "ingester": {"totalReached": 0, "totalChunksMatched": 0, "totalBatches": 0,
                         "totalLinesSent": 0, "store": _store({}), "recvWaitTime": 0},
            "cache": {k: {"entriesFound": self.cache_found if k == "result" else 0,
                          "entriesRequested": self.cache_requested if k == "result" else 0,
                          "entriesStored": self.cache_stored if k == "result" else 0,
                          "bytesReceived": 0, "bytesSent": 0,
                          "requests": self.cache_requested if k == "result" else 0,
                          "downloadTime": 0, "queryLengthServed": 0} for k in _CACHE_KEYS},
            "index": {"totalChunks": self.blocks_read + self.blocks_skipped
                      + self.blocks_summarized,
                      "postFilterChunks": self.blocks_read + self.blocks_summarized,
                      "shardsDuration": 0,
                      "usedBloomFilters": False, "totalStreams": self.streams,
                      "chunkRefsLookupTime": 0, "bloomFilterTime": 0},
        }


Extra = dict[str, Any]  # categorize-labels: {"structuredMetadata": ..., "parsed": ...}


@dataclass(slots=True)
class Stream:
    """One stream of a log query's answer: its labels and entries (ts ns, line, and the
    categorized labels or None), in the answer's order."""

    labels: dict[str, str]
    entries: list[tuple[int, str, Extra | None]]


@dataclass(slots=True)
class StreamsResult:
    streams: list[Stream]


@dataclass(slots=True)
class MatrixSeries:
    """One series of a matrix: its points (ts ns, value), oldest first."""

    labels: dict[str, str]
    times: list[int]
    values: list[float]


@dataclass(slots=True)
class MatrixResult:
    series: list[MatrixSeries]


@dataclass(slots=True)
class VectorResult:
    """Samples at one time (ns), in the answer's order."""

    time: int
    samples: list[tuple[dict[str, str], float]]


@dataclass(slots=True)
class ScalarResult:
    time: int
    value: float


ResultData = StreamsResult | MatrixResult | VectorResult | ScalarResult
_TYPE_NAMES: dict[type, str] = {StreamsResult: "streams", MatrixResult: "matrix",
                                VectorResult: "vector", ScalarResult: "scalar"}


@dataclass(slots=True)
class QueryResult:
    """What the engine answers, typed: `data` is a `StreamsResult` (log queries) or a
    `MatrixResult`, `VectorResult` or `ScalarResult` (metric queries). It is written in
    Loki's JSON shapes only by `to_loki_json` (at the HTTP edge)."""

    data: ResultData
    stats: QueryStats = field(default_factory=QueryStats)
    encoding_flags: tuple[str, ...] = ()

    @property
    def result_type(self) -> str:
        return _TYPE_NAMES[type(self.data)]

    @property
    def result(self) -> list[Any]:
        """`data` as Loki's JSON `result`."""
        return result_json(self.data)

    def to_loki_json(self) -> dict[str, Any]:
        """The `data` object of Loki's answer."""
        data: dict[str, Any] = {"resultType": self.result_type}
        if self.encoding_flags:
            data["encodingFlags"] = list(self.encoding_flags)
        data["result"] = self.result
        data["stats"] = self.stats.to_loki_json()
        return data


def float_f(v: float) -> str:
    """`strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(float(v))
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def json_time(ns: int) -> int | float:
    """Seconds with millisecond resolution, an integer when whole (as Loki writes it)."""
    ms = ns // 1_000_000
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def result_json(data: ResultData) -> list[Any]:
    """Loki's JSON `result` of a typed result: times in ns strings (streams) or seconds
    (metrics), values as Go prints floats."""
    if isinstance(data, StreamsResult):
        return [{"stream": dict(s.labels),
                 "values": [[str(t), line] if extra is None else [str(t), line, extra]
                            for t, line, extra in s.entries]} for s in data.streams]
    if isinstance(data, MatrixResult):
        return [{"metric": dict(s.labels),
                 "values": [[json_time(t), float_f(v)]
                            for t, v in zip(s.times, s.values, strict=True)]}
                for s in data.series]
    if isinstance(data, VectorResult):
        t = json_time(data.time)
        return [{"metric": dict(labels), "value": [t, float_f(v)]}
                for labels, v in data.samples]
    # Loki writes an instant scalar's time in milliseconds (see query_instant_scalar).
    return [data.time // 1_000_000, float_f(data.value)]
