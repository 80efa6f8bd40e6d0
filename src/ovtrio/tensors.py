"""The one datatype table, and the transport-neutral request and response types.

Every codec (KServe JSON, KServe binary, KServe gRPC, TF Serving) translates to and from
these types; the data plane and the runtime see nothing else.

Tensor data is always a numpy array in native layout (C-contiguous, little-endian: every
platform OpenVINO runs on is little-endian, and the codecs read wire bytes with explicit
``<`` dtypes). BYTES tensors are numpy arrays of dtype ``object`` whose elements are
``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidArgument

__all__ = [
    "DATATYPES",
    "Datatype",
    "InferRequest",
    "InferResponse",
    "RequestedOutput",
    "Tensor",
    "TensorSpec",
    "datatype",
    "datatype_of_array",
    "datatype_of_ov",
]


@dataclass(frozen=True, slots=True)
class Datatype:
    """One row of the datatype table."""

    kserve: str
    """KServe v2 / Triton name, e.g. ``FP32``."""
    numpy: np.dtype[Any]
    """Little-endian numpy dtype (``object`` for BYTES)."""
    ov: str
    """OpenVINO element type name, as ``openvino.Type.get_type_name()`` prints it."""
    tfs: int
    """TensorFlow ``DataType`` enum value (``tensorflow/core/framework/types.proto``)."""
    triton_config: str
    """Triton ``model_config.proto`` DataType name (``TYPE_FP32``)."""
    kserve_contents: str
    """The KServe ``InferTensorContents`` field holding typed values of this datatype;
    empty for FP16, which has none (it travels in raw contents only)."""
    tfs_val: str
    """The TensorFlow ``TensorProto`` typed ``*_val`` field TensorFlow reads for it."""

    @property
    def itemsize(self) -> int:
        """Bytes per element on the wire; 0 for BYTES (variable length)."""
        return 0 if self.kserve == "BYTES" else self.numpy.itemsize


def _row(
    kserve: str, np_name: str, ov: str, tfs: int, triton: str, contents: str, tfs_val: str
) -> Datatype:
    return Datatype(kserve, np.dtype(np_name), ov, tfs, triton, contents, tfs_val)


# fmt: off
DATATYPES: tuple[Datatype, ...] = (
    #     KServe    numpy  OpenVINO   TF  Triton config   KServe contents    TF *_val
    _row("BOOL",   "?",   "boolean", 10, "TYPE_BOOL",   "bool_contents",   "bool_val"),
    _row("UINT8",  "<u1", "u8",       4, "TYPE_UINT8",  "uint_contents",   "int_val"),
    _row("UINT16", "<u2", "u16",     17, "TYPE_UINT16", "uint_contents",   "int_val"),
    _row("UINT32", "<u4", "u32",     22, "TYPE_UINT32", "uint_contents",   "uint32_val"),
    _row("UINT64", "<u8", "u64",     23, "TYPE_UINT64", "uint64_contents", "uint64_val"),
    _row("INT8",   "<i1", "i8",       6, "TYPE_INT8",   "int_contents",    "int_val"),
    _row("INT16",  "<i2", "i16",      5, "TYPE_INT16",  "int_contents",    "int_val"),
    _row("INT32",  "<i4", "i32",      3, "TYPE_INT32",  "int_contents",    "int_val"),
    _row("INT64",  "<i8", "i64",      9, "TYPE_INT64",  "int64_contents",  "int64_val"),
    _row("FP16",   "<f2", "f16",     19, "TYPE_FP16",   "",                "half_val"),
    _row("FP32",   "<f4", "f32",      1, "TYPE_FP32",   "fp32_contents",   "float_val"),
    _row("FP64",   "<f8", "f64",      2, "TYPE_FP64",   "fp64_contents",   "double_val"),
    _row("BYTES",  "O",   "string",   7, "TYPE_STRING", "bytes_contents",  "string_val"),
)
# fmt: on

_BY_KSERVE = {d.kserve: d for d in DATATYPES}
_BY_OV = {d.ov: d for d in DATATYPES}
_BY_NUMPY = {d.numpy: d for d in DATATYPES if d.kserve != "BYTES"}


def datatype(name: str) -> Datatype:
    """Look a KServe datatype name up; unknown names are the client's mistake."""
    try:
        return _BY_KSERVE[name]
    except KeyError:
        raise InvalidArgument(f"Unsupported datatype: {name!r}") from None


def datatype_of_ov(ov_name: str) -> Datatype | None:
    """The row for an OpenVINO element type name, or None if the server cannot serve it."""
    return _BY_OV.get(ov_name)


def datatype_of_array(array: np.ndarray[Any, Any]) -> Datatype:
    """The row for a numpy array produced by a model or a codec."""
    if array.dtype == np.dtype(object) or array.dtype.kind in "SU":
        return _BY_KSERVE["BYTES"]
    row = _BY_NUMPY.get(array.dtype.newbyteorder("<"))
    if row is None:
        raise InvalidArgument(f"Unsupported numpy dtype: {array.dtype}")
    return row


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output as metadata reports it. ``-1`` marks a dynamic dimension."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...] = ()
    """Per dimension (min, max), max -1 for unbounded; empty if every dimension is static."""
    layout: str = ""


@dataclass(slots=True)
class Tensor:
    """A named tensor; ``data.shape`` is the tensor's shape."""

    name: str
    datatype: Datatype
    data: np.ndarray[Any, Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.data.shape)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for, with its transport parameters (binary_data, ...)."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """An inference request, after decoding, before validation against the model."""

    model_name: str
    model_version: int | None
    """None: the default version (highest AVAILABLE)."""
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None
    """None: every output."""
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: int
    outputs: list[Tensor]
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
