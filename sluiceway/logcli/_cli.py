"""The commands this package adds to `sluiceway` (wired by `sluiceway/cli.py`)."""

from sluiceway.logcli._meta import labels, series, volume, volume_range
from sluiceway.logcli._query import query

__all__ = ["labels", "query", "series", "volume", "volume_range"]
