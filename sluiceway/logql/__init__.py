"""LogQL: parser → AST, canonical formatting, and log query evaluation over a `LogSource`."""

from sluiceway.logql._ast import (
    BinaryOp,
    Decolorize,
    Drop,
    Expr,
    Grouping,
    JsonParser,
    Keep,
    LabelBinary,
    LabelCompare,
    LabelFilter,
    LabelFmt,
    LabelFormat,
    LabelReplace,
    LabelsSpec,
    LineFilter,
    LineFormat,
    Literal,
    LogExpr,
    LogfmtParser,
    LogRange,
    MetricExpr,
    PatternParser,
    RangeAggregation,
    RegexpParser,
    Stage,
    UnpackParser,
    Unwrap,
    VectorAggregation,
    VectorExpr,
    VectorMatching,
)
from sluiceway.logql._detected import detected_field_values, detected_fields
from sluiceway.logql._engine import (
    MetricEvaluator,
    QueryParams,
    evaluate,
    register_metric_evaluator,
    series_entries,
)
from sluiceway.logql._errors import ParseError, QueryError
from sluiceway.logql._exec import ExecOptions, QueryCancelled, split_range, too_many_bytes
from sluiceway.logql._filters import LinePrefilter, decolorize_text
from sluiceway.logql._format import format_loki, format_query
from sluiceway.logql._levels import (
    DEFAULT_LEVEL_FIELDS,
    DETECTED_LEVEL,
    LevelRules,
    block_levels,
    entry_level,
    normalize_level,
    stream_level,
)
from sluiceway.logql._lexer import parse_go_float
from sluiceway.logql._limits import (
    DEFAULT_MAX_LINE_SIZE,
    MAX_POINTS,
    Deadline,
    QueryTimeout,
    check_resolution,
)
from sluiceway.logql._logfmt import scan_logfmt
from sluiceway.logql._metric import metric_evaluator as _metric_evaluator
from sluiceway.logql._parse_log import check_selector
from sluiceway.logql._parser import parse, parse_selector
from sluiceway.logql._pipeline import LogPipeline, Processed
from sluiceway.logql._result import (
    MatrixResult,
    MatrixSeries,
    QueryResult,
    QueryStats,
    ResultData,
    ScalarResult,
    Stream,
    StreamsResult,
    VectorResult,
)
from sluiceway.logql._results_cache import ResultsCache
from sluiceway.logql._source import (
    DerivedSource,
    IndexStats,
    LogSource,
    MemorySource,
    SeriesVolume,
    bucket_bytes,
    names_of,
    until_deadline,
    values_of,
)
from sluiceway.logql._template import Template, TemplateError, compile_template
from sluiceway.logql._template_funcs import go_float
from sluiceway.model import SeriesRef

# Metric expressions are evaluated by `_metric` (range and vector aggregations over the
# step grid); the log engine dispatches to whatever is registered here.
register_metric_evaluator(_metric_evaluator)

__all__ = [
    "BinaryOp", "DEFAULT_LEVEL_FIELDS", "DEFAULT_MAX_LINE_SIZE", "DETECTED_LEVEL", "Deadline",
    "Decolorize", "DerivedSource", "Drop", "ExecOptions", "Expr", "Grouping", "IndexStats",
    "JsonParser", "Keep", "LabelBinary", "LabelCompare", "LabelFilter", "LabelFmt", "LabelFormat",
    "LabelReplace", "LabelsSpec", "LevelRules", "LineFilter", "LineFormat", "LinePrefilter",
    "Literal", "LogExpr", "LogPipeline", "LogRange", "LogSource", "LogfmtParser", "MAX_POINTS",
    "MatrixResult", "MatrixSeries", "MemorySource", "MetricEvaluator", "MetricExpr", "ParseError",
    "PatternParser", "Processed", "QueryCancelled", "QueryError", "QueryParams", "QueryResult",
    "QueryStats", "QueryTimeout", "RangeAggregation", "RegexpParser", "ResultData",
    "ResultsCache", "ScalarResult", "SeriesRef", "SeriesVolume", "Stage", "Stream",
    "StreamsResult", "Template", "TemplateError", "UnpackParser", "Unwrap", "VectorAggregation",
    "VectorExpr", "VectorMatching", "VectorResult", "block_levels", "bucket_bytes",
    "check_resolution", "check_selector", "compile_template", "decolorize_text",
    "detected_field_values", "detected_fields", "entry_level", "evaluate", "format_loki",
    "format_query", "go_float", "names_of", "normalize_level", "parse", "parse_go_float",
    "parse_selector", "register_metric_evaluator", "scan_logfmt", "series_entries", "split_range",
    "stream_level", "too_many_bytes", "until_deadline", "values_of",
]
