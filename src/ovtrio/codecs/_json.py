"""JSON nesting limit shared by the REST codecs (pure functions, no I/O).

orjson and simdjson refuse documents nested deeper than 1024 levels; ``--rest_max_json_depth``
may lower that. A lower limit is checked before parsing by one vectorised pass over the body:
brackets inside strings are skipped (quotes are paired after dropping escaped ones), then the
running depth of ``[``/``{`` against ``]``/``}`` is taken. Bodies that hold fewer opening
brackets than the limit skip even that.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import orjson

from ..errors import InvalidArgument, JsonInvalid

__all__ = ["PARSER_DEPTH", "check_depth", "loads", "not_json"]

PARSER_DEPTH: Final = 1024
"""The deepest nesting orjson and simdjson parse; --rest_max_json_depth cannot exceed it."""

_QUOTE, _BACKSLASH = 0x22, 0x5C
_OPEN = (0x5B, 0x7B)  # [ {
_CLOSE = (0x5D, 0x7D)  # ] }


def depth_error(limit: int) -> InvalidArgument:
    return InvalidArgument(
        f"The file is not valid json - Error: nested deeper than {limit} levels"
        " (--rest_max_json_depth)"
    )


def not_json(exc: Exception, limit: int) -> Exception:
    """The error for a body a parser refused: the depth limit's, or JsonInvalid (412)."""
    if "depth" in str(exc).lower() or "recursion" in str(exc).lower():
        return depth_error(min(limit, PARSER_DEPTH))
    return JsonInvalid(f"The file is not valid json - Error: {exc}")


def loads(body: bytes | bytearray | memoryview, max_depth: int = PARSER_DEPTH) -> Any:
    """orjson.loads with the depth limit; JsonInvalid (412) for anything else it refuses."""
    check_depth(body, max_depth)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise not_json(exc, max_depth) from None


def check_depth(body: bytes | bytearray | memoryview, limit: int) -> None:
    """Raise InvalidArgument when the JSON text nests arrays/objects deeper than ``limit``."""
    if limit >= PARSER_DEPTH or len(body) <= 2 * limit:
        return  # the parsers' own limit applies / too short to nest that deep
    raw = np.frombuffer(body, np.uint8)
    opening = (raw == _OPEN[0]) | (raw == _OPEN[1])
    if np.count_nonzero(opening) <= limit:
        return
    closing = (raw == _CLOSE[0]) | (raw == _CLOSE[1])
    where = np.flatnonzero(opening | closing)
    quotes = np.flatnonzero(raw == _QUOTE)
    if quotes.size:
        quotes = _unescaped(raw, quotes)
        # a bracket after an odd number of real quotes is inside a string
        where = where[np.searchsorted(quotes, where) % 2 == 0]
    steps = np.where(opening[where], 1, -1)
    if steps.size and int(np.cumsum(steps).max()) > limit:
        raise depth_error(limit)


def _unescaped(raw: np.ndarray[Any, Any], quotes: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The quotes not escaped by an odd run of backslashes before them."""
    maybe = quotes[(quotes > 0) & (raw[np.maximum(quotes - 1, 0)] == _BACKSLASH)]
    if not maybe.size:
        return quotes
    escaped = []
    for q in maybe.tolist():  # each backslash run precedes one quote: linear in all
        run, i = 0, q - 1
        while i >= 0 and raw[i] == _BACKSLASH:
            run, i = run + 1, i - 1
        if run % 2:
            escaped.append(q)
    return np.setdiff1d(quotes, np.asarray(escaped, dtype=quotes.dtype), assume_unique=True)
