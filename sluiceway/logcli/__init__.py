"""The logcli-style commands: `sluiceway query`, `labels`, `series`, `volume`,
`volume_range`. An HTTP client of the Loki API (any Loki, or a Sluiceway server), not a
part of the query engine: it parses LogQL only to pick the endpoint."""

from sluiceway.logcli._common import CliError, Output, label_text, parse_time, rfc3339
from sluiceway.logcli._meta import analyze
from sluiceway.logcli._query import is_metric, metric_rows

__all__ = ["CliError", "Output", "analyze", "is_metric", "label_text", "metric_rows",
           "parse_time", "rfc3339"]
