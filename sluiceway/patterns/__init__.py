"""Log patterns mined from pushed lines (Drain, as Loki's pattern ingester does)."""

from sluiceway.patterns._config import PatternIngesterConfig
from sluiceway.patterns._drain import Drain
from sluiceway.patterns._miner import MIN_LINES, MinerConfig, PatternMiner, PatternSeries
from sluiceway.patterns._service import MinerUnavailable, PatternService
from sluiceway.patterns._tokenize import PARAM, detect_format, tokenizer_for

__all__ = ["MIN_LINES", "PARAM", "Drain", "MinerConfig", "MinerUnavailable",
           "PatternIngesterConfig", "PatternMiner", "PatternSeries", "PatternService",
           "detect_format", "tokenizer_for"]
