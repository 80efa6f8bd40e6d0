"""The tensor wire every codec shares: element counts, fixed-size blobs, length-prefixed BYTES.

One place, so KServe REST (JSON and binary), KServe gRPC and TF Serving (gRPC and REST) answer
a tensor alike, with the same error messages (OVMS' wording, ``src/status.cpp``). No I/O.

Two rules hold on every transport:

* **BOOL bytes.** A BOOL element travels as one byte. Any non-zero byte is true, as C, numpy
  and protobuf's ``bool`` read it, and a decoded BOOL tensor holds only 0 and 1: the model never
  sees a bool whose byte is 2. Checking costs one vectorised ``max`` over the bytes; only a
  blob holding another byte is copied.
* **BYTES outputs.** An element of a BYTES output is sent as it is when it is ``bytes`` (or
  ``bytearray`` / ``memoryview``), UTF-8 encoded when it is ``str`` (OpenVINO's string tensors
  read as numpy ``str``). Anything else breaks the tensor contract (:mod:`ovtrio.tensors`: BYTES
  elements are bytes); the answer is an internal error naming the output (HTTP 500, gRPC
  INTERNAL) rather than a value the model did not produce.

A BYTES blob is ``<uint32 LE length><bytes>`` per element (tritonclient's
``serialize_byte_tensor``), in KServe binary REST and in ``raw_input_contents`` /
``raw_output_contents``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from ..errors import (
    MSG_CONTENT_SIZE,
    MSG_INVALID_SHAPE,
    MSG_TOO_LARGE,
    InvalidArgument,
    OvtrioError,
    PayloadTooLarge,
)
from ..tensors import Datatype, Tensor

__all__ = [
    "MAX_ELEMENTS",
    "bytes_elements",
    "decode_fixed",
    "decode_prefixed",
    "decode_prefixed_or_whole",
    "element_count",
    "encode_prefixed",
    "encode_raw",
    "shape_text",
]

MAX_ELEMENTS: Final = 1 << 31
"""Default bound on a tensor's element count (``--max_tensor_elements``)."""

_PREFIX: Final = struct.Struct("<I")


def shape_text(shape: Sequence[int]) -> str:
    """A shape as OVMS prints it: ``(1,3,224,224)``."""
    return "(" + ",".join(str(d) for d in shape) + ")"


def element_count(shape: Sequence[int], name: str, max_elements: int = MAX_ELEMENTS) -> int:
    """The element count of input ``name`` of ``shape``, checked before anything is allocated.

    Raises InvalidArgument for a negative dimension or an empty shape numpy cannot build (its
    other dimensions multiply past ``max_elements``), PayloadTooLarge past ``max_elements``.
    """
    if any(d < 0 for d in shape):
        raise InvalidArgument(
            f"{MSG_INVALID_SHAPE} - negative dimension in {shape_text(shape)}; input name: {name}"
        )
    count = math.prod(shape)
    if count > max_elements:
        raise PayloadTooLarge(
            f"{MSG_TOO_LARGE} - Expected: at most {max_elements} elements;"
            f" Actual: {count} elements (the limit is --max_tensor_elements); input name: {name}"
        )
    if count == 0 and math.prod(d for d in shape if d) > max_elements:
        raise InvalidArgument(
            f"{MSG_INVALID_SHAPE} - {shape_text(shape)} holds no elements, but its other dimensions"
            f" multiply to more than {max_elements}; input name: {name}"
        )
    return count


def decode_fixed(
    blob: bytes | memoryview, row: Datatype, count: int, name: str
) -> np.ndarray[Any, Any]:
    """``count`` little-endian elements of a fixed-size datatype filling ``blob`` exactly, as a
    flat array (a zero-copy, read-only view of ``blob`` unless BOOL bytes are normalised)."""
    expected = count * row.itemsize
    if len(blob) != expected:
        raise InvalidArgument(
            f"{MSG_CONTENT_SIZE} - Expected: {expected} bytes; Actual: {len(blob)} bytes"
            f"; input name: {name}"
        )
    array: np.ndarray[Any, Any] = np.frombuffer(blob, dtype=row.numpy)
    if row.kserve == "BOOL" and count and int(array.view(np.uint8).max()) > 1:
        array = array.view(np.uint8) != 0
    return array


def decode_prefixed(
    blob: bytes | memoryview, count: int, name: str, container: str
) -> np.ndarray[Any, Any]:
    """``count`` elements of ``<uint32 LE length><bytes>`` filling ``blob`` exactly, as a flat
    object array of bytes. ``container`` names where the blob came from in error messages."""
    size = len(blob)
    if 4 * count > size:
        raise InvalidArgument(
            f"{MSG_CONTENT_SIZE} - Expected: at least {4 * count} bytes (a 4-byte length prefix"
            f" per element of {count} BYTES elements); Actual: {size} bytes; input name: {name}"
        )
    array = np.empty(count, dtype=object)
    view = memoryview(blob)
    unpack = _PREFIX.unpack_from
    offset = 0
    for i in range(count):
        if offset + 4 > size:
            raise InvalidArgument(
                f"{MSG_CONTENT_SIZE} - BYTES data ends after element {i} of {count}"
                " (each element is a 4-byte little-endian length then its bytes)"
                f"; input name: {name}"
            )
        (length,) = unpack(view, offset)
        offset += 4
        end = offset + length
        if end > size:
            raise InvalidArgument(
                f"{MSG_CONTENT_SIZE} - BYTES element {i} declares {length} bytes but only"
                f" {size - offset} remain in {container}; input name: {name}"
            )
        array[i] = bytes(view[offset:end])
        offset = end
    if offset != size:
        raise InvalidArgument(
            f"{MSG_CONTENT_SIZE} - {size - offset} bytes of {container} remain after the"
            f" {count} BYTES elements the shape declares; input name: {name}"
        )
    return array


def decode_prefixed_or_whole(
    blob: bytes | memoryview, count: int, name: str, container: str
) -> np.ndarray[Any, Any]:
    """As :func:`decode_prefixed`, with OVMS' one exception: a single element whose blob is not
    exactly one prefixed element is the whole blob, unprefixed (the curl, Java, Go and C++
    examples OVMS documents send a file's bytes that way)."""
    if count == 1 and (len(blob) < 4 or _PREFIX.unpack_from(blob, 0)[0] != len(blob) - 4):
        array = np.empty(1, dtype=object)
        array[0] = bytes(blob)
        return array
    return decode_prefixed(blob, count, name, container)


def bytes_elements(array: np.ndarray[Any, Any], name: str) -> list[bytes]:
    """The elements of BYTES output ``name`` as bytes, in row-major order (module doc)."""
    elements = array.reshape(-1).tolist()
    for i, element in enumerate(elements):
        if type(element) is not bytes:
            elements[i] = _as_bytes(element, name)
    return elements


def _as_bytes(element: Any, name: str) -> bytes:
    if isinstance(element, bytes):
        return bytes(element)
    if isinstance(element, str):
        return element.encode("utf-8")
    if isinstance(element, (bytearray, memoryview)):
        return bytes(element)
    raise OvtrioError(f"BYTES output {name} holds a {type(element).__name__}, not bytes")


def encode_prefixed(array: np.ndarray[Any, Any], name: str) -> bytes:
    """BYTES output ``name`` as one blob of ``<uint32 LE length><bytes>`` per element."""
    parts: list[bytes] = []
    pack = _PREFIX.pack
    for element in bytes_elements(array, name):
        if len(element) > 0xFFFFFFFF:
            raise OvtrioError(f"BYTES element of output {name} exceeds 4 GiB")
        parts.append(pack(len(element)))
        parts.append(element)
    return b"".join(parts)


def encode_raw(tensor: Tensor) -> memoryview:
    """Output ``tensor`` as raw contents (KServe binary REST, ``raw_output_contents``): BYTES
    length-prefixed, any other datatype its elements little-endian in row-major order."""
    if tensor.datatype.kserve == "BYTES":
        return memoryview(encode_prefixed(tensor.data, tensor.name))
    flat = np.ascontiguousarray(tensor.data, dtype=tensor.datatype.numpy).reshape(-1)
    return flat.data.cast("B")
