"""Query results and statistics in Loki's JSON shapes (`data` of the response envelope)."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(slots=True)
class QueryResult:
    """`result_type` is streams (log queries) or matrix/vector/scalar (metric queries);
    `result` is already in Loki's JSON shape for that type."""

    result_type: str
    result: list[Any]
    stats: QueryStats = field(default_factory=QueryStats)
    encoding_flags: tuple[str, ...] = ()

    def to_loki_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"resultType": self.result_type}
        if self.encoding_flags:
            data["encodingFlags"] = list(self.encoding_flags)
        data["result"] = self.result
        data["stats"] = self.stats.to_loki_json()
        return data
