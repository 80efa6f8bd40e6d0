"""Strings to and from 2-D UINT8 tensors, as OVMS handles text for models without string types.

OVMS rules, kept here:

* a BYTES (KServe) or DT_STRING (TF Serving) tensor of N strings sent to a 2-D UINT8 input
  becomes an ``[N, W]`` UINT8 array, one row per string, each row the string's bytes followed
  by zeros; ``W`` is the longest string's length plus one, so every row ends with at least one
  terminating zero (``abcd``, ``ab`` -> ``[[a b c d 0] [a b 0 0 0]]``);
* the request tensor must be 1-D (``[N]``) and hold at least one string; the padded array may
  take at most 1 GiB;
* a 2-D UINT8 output whose name ends in ``_string`` goes back as N strings (BYTES / DT_STRING,
  shape ``[N]``), each row cut at its first zero byte;
* metadata reports such inputs and outputs as the model has them (UINT8, two dimensions): the
  conversion is per request, chosen by the request's datatype, and a UINT8 tensor sent to the
  same input is taken as it is.

Pure: numpy only, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidArgument
from .tensors import TensorSpec

__all__ = [
    "MAX_TEXT_BYTES",
    "STRING_OUTPUT_SUFFIX",
    "is_text_input",
    "is_text_output",
    "rows_to_strings",
    "strings_to_rows",
]

MAX_TEXT_BYTES = 1 << 30
"""Largest padded array (rows x width bytes) a batch of strings may become, as OVMS."""
STRING_OUTPUT_SUFFIX = "_string"
"""Name suffix that marks a 2-D UINT8 output as strings (OVMS' serialization hint)."""


def _is_u8_2d(spec: TensorSpec) -> bool:
    return spec.datatype.kserve == "UINT8" and len(spec.shape) == 2


def is_text_input(spec: TensorSpec) -> bool:
    """Whether BYTES sent to ``spec`` are strings to pad into rows (any 2-D UINT8 input)."""
    return _is_u8_2d(spec)


def is_text_output(spec: TensorSpec) -> bool:
    """Whether ``spec``'s values go back as strings: 2-D UINT8 named ``*_string``."""
    return _is_u8_2d(spec) and spec.name.endswith(STRING_OUTPUT_SUFFIX)


def strings_to_rows(
    items: Sequence[bytes | bytearray | memoryview], name: str, max_bytes: int = MAX_TEXT_BYTES
) -> np.ndarray[Any, Any]:
    """``items`` as an ``[N, longest + 1]`` UINT8 array of zero-padded rows.

    Raises InvalidArgument for no strings, or when the array would exceed ``max_bytes``.
    """
    count = len(items)
    if count == 0:
        raise InvalidArgument(
            f"Invalid input batch size - a string input needs at least one string; "
            f"input name: {name}"
        )
    lengths = [len(memoryview(item)) for item in items]
    width = max(lengths) + 1
    if count * width > max_bytes:
        raise InvalidArgument(
            f"Maximum size of a string batch exceeded - {count} strings padded to {width} bytes "
            f"take {count * width // (1 << 20)} MiB (max {max_bytes // (1 << 20)} MiB); "
            f"input name: {name}"
        )
    rows = np.zeros((count, width), np.uint8)
    for row, item, length in zip(rows, items, lengths, strict=True):
        row[:length] = np.frombuffer(item, np.uint8)
    return rows


def rows_to_strings(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A 2-D UINT8 array's rows as a 1-D BYTES array, each row cut at its first zero byte."""
    out = np.empty(rows.shape[0], dtype=object)
    width = rows.shape[1]
    for i, row in enumerate(np.ascontiguousarray(rows)):
        zeros = np.flatnonzero(row == 0)
        out[i] = row[: zeros[0] if zeros.size else width].tobytes()
    return out
