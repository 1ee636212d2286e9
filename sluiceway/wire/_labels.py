"""Label strings of protobuf pushes, parsed once per distinct string."""

from __future__ import annotations

from functools import lru_cache

from sluiceway.model import LabelError, parse_labels
from sluiceway.wire._errors import WireError
from sluiceway.wire._text import scrub


def labels_from_string(text: str) -> dict[str, str]:
    # Copy: callers (and the store) may keep or modify the dict they get.
    return dict(_parse_labels_cached(text))


@lru_cache(maxsize=4096)
def _parse_labels_cached(text: str) -> dict[str, str]:
    # A client pushes the same few label strings again and again.
    try:
        labels = parse_labels(text)
    except LabelError as exc:
        raise WireError(f"error parsing push request: couldn't parse labels: {exc}") from None
    if "\\u" in text or "\\U" in text:
        # An escaped lone surrogate is not text; Go's unquoting makes it U+FFFD, and so
        # must we, or the value cannot be encoded as UTF-8 later.
        labels = {k: scrub(v) for k, v in labels.items()}
    return labels
