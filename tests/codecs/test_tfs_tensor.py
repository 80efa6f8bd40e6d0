"""TF Serving gRPC codec: TensorProto <-> ndarray, PredictRequest/Response, metadata and status.

TensorProtos are built three ways: with our betterproto2 classes (sent through the wire and
parsed back), from hand-written wire bytes (packed and unpacked repeated fields), and with the
real protobuf library from our vendored .proto files (needs grpcio-tools, a dev extra).
"""

from __future__ import annotations

import enum
import math
import pathlib
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from ovtrio._proto import tensorflow as tf_pb
from ovtrio._proto.tensorflow import error as tf_error
from ovtrio._proto.tensorflow import serving as tfs_pb
from ovtrio.codecs import tfs_tensor
from ovtrio.codecs.tfs_tensor import (
    array_to_tensor,
    decode_predict_request,
    dtype_name,
    encode_predict_response,
    model_metadata_json,
    model_metadata_proto,
    model_status_json,
    model_status_proto,
    tensor_to_array,
)
from ovtrio.errors import FailedPrecondition, InvalidArgument, PayloadTooLarge
from ovtrio.tensors import DATATYPES, InferResponse, Tensor, TensorSpec, datatype
from tests.wire import key, ld, varint

Array = np.ndarray[Any, Any]
DT = tf_pb.DataType
ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def shape_proto(shape: list[int] | None) -> tf_pb.TensorShapeProto | None:
    if shape is None:
        return None
    return tf_pb.TensorShapeProto(dim=[tf_pb.TensorShapeProtoDim(size=d) for d in shape])


def tp(dtype: int, shape: list[int] | None, **fields: Any) -> tf_pb.TensorProto:
    """A TensorProto sent through the wire and parsed back (what a server receives)."""
    t = tf_pb.TensorProto(dtype=DT(dtype), tensor_shape=shape_proto(shape), **fields)
    return tf_pb.TensorProto.parse(bytes(t))


def arr(kserve: str, values: Any, shape: tuple[int, ...] | None = None) -> Array:
    row = datatype(kserve)
    if kserve == "BYTES":
        flat = list(values)
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
    else:
        out = np.array(values, dtype=row.numpy).reshape(-1)
    return out.reshape(shape if shape is not None else (len(out),))


def assert_same(actual: Array, expected: Array) -> None:
    assert actual.shape == expected.shape
    if expected.dtype == np.dtype(object):
        assert actual.dtype == np.dtype(object)
        assert actual.tolist() == expected.tolist()
        assert all(type(e) is bytes for e in actual.reshape(-1).tolist())
    else:
        assert actual.dtype == expected.dtype
        assert np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes()


# One sample per datatype, shape (2, 3), extremes of each range.
SAMPLES: dict[str, Array] = {
    "BOOL": arr("BOOL", [True, False, True, False, False, True], (2, 3)),
    "UINT8": arr("UINT8", [0, 1, 255, 7, 128, 254], (2, 3)),
    "UINT16": arr("UINT16", [0, 1, 65535, 7, 32768, 2], (2, 3)),
    "UINT32": arr("UINT32", [0, 1, 2**32 - 1, 7, 2**31, 3], (2, 3)),
    "UINT64": arr("UINT64", [0, 1, 2**64 - 1, 7, 2**63, 3], (2, 3)),
    "INT8": arr("INT8", [-128, 127, 0, -1, 5, 6], (2, 3)),
    "INT16": arr("INT16", [-32768, 32767, 0, -1, 5, 6], (2, 3)),
    "INT32": arr("INT32", [-(2**31), 2**31 - 1, 0, -1, 5, 6], (2, 3)),
    "INT64": arr("INT64", [-(2**63), 2**63 - 1, 0, -1, 5, 6], (2, 3)),
    "FP16": arr("FP16", [0.5, -65504, np.inf, -0.0, 1e-7, 3], (2, 3)),
    "FP32": arr("FP32", [0.1, -3.4e38, np.nan, -0.0, 1e-45, np.inf], (2, 3)),
    "FP64": arr("FP64", [0.1, -1e308, np.nan, -0.0, 5e-324, -np.inf], (2, 3)),
    "BYTES": arr("BYTES", [b"", b"a", b"\x00\xff", "é".encode(), b"xyz", b"  "], (2, 3)),
}
assert set(SAMPLES) == {d.kserve for d in DATATYPES}


# ---------------------------------------------------------------------------------------------
# datatypes
# ---------------------------------------------------------------------------------------------

DTYPE_NAMES = {
    "BOOL": "DT_BOOL",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "FP16": "DT_HALF",
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
}


@pytest.mark.parametrize(("kserve", "name"), DTYPE_NAMES.items())
def test_dtype_name(kserve: str, name: str) -> None:
    assert dtype_name(datatype(kserve)) == name
    assert tfs_tensor.datatype_of_tfs(DT.__members__[name], "x") is datatype(kserve)


# ---------------------------------------------------------------------------------------------
# TensorProto -> ndarray
# ---------------------------------------------------------------------------------------------

F16_BITS = [0x3C00, 0xC000, 0x7C00, 0x0001, 0x8000]  # 1, -2, inf, smallest subnormal, -0

DECODE_CASES: list[tuple[str, tf_pb.TensorProto, Array]] = [
    # one typed field per datatype
    (
        "float_val",
        tp(DT.DT_FLOAT, [3], float_val=[0.5, -1.25, 3e38]),
        arr("FP32", [0.5, -1.25, 3e38]),
    ),
    ("double_val", tp(DT.DT_DOUBLE, [2], double_val=[0.1, -1e300]), arr("FP64", [0.1, -1e300])),
    (
        "int_val INT32",
        tp(DT.DT_INT32, [3], int_val=[-(2**31), 2**31 - 1, 0]),
        arr("INT32", [-(2**31), 2**31 - 1, 0]),
    ),
    ("int_val INT16", tp(DT.DT_INT16, [2], int_val=[-32768, 32767]), arr("INT16", [-32768, 32767])),
    ("int_val INT8", tp(DT.DT_INT8, [2], int_val=[-128, 127]), arr("INT8", [-128, 127])),
    ("int_val UINT8", tp(DT.DT_UINT8, [2], int_val=[0, 255]), arr("UINT8", [0, 255])),
    ("int_val UINT16", tp(DT.DT_UINT16, [2], int_val=[0, 65535]), arr("UINT16", [0, 65535])),
    (
        "int64_val",
        tp(DT.DT_INT64, [2], int64_val=[-(2**63), 2**63 - 1]),
        arr("INT64", [-(2**63), 2**63 - 1]),
    ),
    (
        "bool_val",
        tp(DT.DT_BOOL, [3], bool_val=[True, False, True]),
        arr("BOOL", [True, False, True]),
    ),
    ("half_val", tp(DT.DT_HALF, [5], half_val=F16_BITS), np.array(F16_BITS, "<u2").view("<f2")),
    ("uint32_val", tp(DT.DT_UINT32, [2], uint32_val=[0, 2**32 - 1]), arr("UINT32", [0, 2**32 - 1])),
    ("uint64_val", tp(DT.DT_UINT64, [2], uint64_val=[0, 2**64 - 1]), arr("UINT64", [0, 2**64 - 1])),
    (
        "string_val",
        tp(DT.DT_STRING, [3], string_val=[b"", b"\x00\xff", b"abc"]),
        arr("BYTES", [b"", b"\x00\xff", b"abc"]),
    ),
    # half_val: only the low 16 bits count
    ("half_val high bits", tp(DT.DT_HALF, [1], half_val=[0x10000 | 0x3C00]), arr("FP16", [1.0])),
    # fewer values than elements: the last one repeats (TensorFlow)
    ("repeat float_val", tp(DT.DT_FLOAT, [2, 2], float_val=[1.5]), arr("FP32", [1.5] * 4, (2, 2))),
    ("repeat int_val", tp(DT.DT_INT32, [4], int_val=[1, 2]), arr("INT32", [1, 2, 2, 2])),
    ("repeat int_val INT8", tp(DT.DT_INT8, [3], int_val=[-7]), arr("INT8", [-7, -7, -7])),
    (
        "repeat bool_val",
        tp(DT.DT_BOOL, [3], bool_val=[False, True]),
        arr("BOOL", [False, True, True]),
    ),
    ("repeat half_val", tp(DT.DT_HALF, [3], half_val=[0x3C00]), arr("FP16", [1, 1, 1])),
    (
        "repeat uint64_val",
        tp(DT.DT_UINT64, [2], uint64_val=[2**64 - 1]),
        arr("UINT64", [2**64 - 1] * 2),
    ),
    (
        "repeat string_val",
        tp(DT.DT_STRING, [2, 2], string_val=[b"a", b"b"]),
        arr("BYTES", [b"a", b"b", b"b", b"b"], (2, 2)),
    ),
    # scalars
    ("scalar float_val", tp(DT.DT_FLOAT, [], float_val=[3.5]), arr("FP32", [3.5], ())),
    ("scalar no shape", tp(DT.DT_INT64, None, int64_val=[-9]), arr("INT64", [-9], ())),
    (
        "scalar content",
        tp(DT.DT_DOUBLE, [], tensor_content=struct.pack("<d", 2.5)),
        arr("FP64", [2.5], ()),
    ),
    ("scalar string", tp(DT.DT_STRING, [], string_val=[b"img"]), arr("BYTES", [b"img"], ())),
    ("scalar half_val", tp(DT.DT_HALF, [], half_val=[0xC000]), arr("FP16", [-2.0], ())),
    # empty tensors
    ("empty", tp(DT.DT_FLOAT, [0]), arr("FP32", [], (0,))),
    ("empty 2-D", tp(DT.DT_INT8, [2, 0, 3]), arr("INT8", [], (2, 0, 3))),
    ("empty strings", tp(DT.DT_STRING, [0, 4]), arr("BYTES", [], (0, 4))),
    # tensor_content
    (
        "content fp16",
        tp(DT.DT_HALF, [2], tensor_content=np.array([1.5, -2], "<f2").tobytes()),
        arr("FP16", [1.5, -2]),
    ),
    (
        "content bool non-0/1 byte",
        tp(DT.DT_BOOL, [3], tensor_content=b"\x00\x02\x01"),
        arr("BOOL", [False, True, True]),
    ),
    (
        "content wins over typed",
        tp(DT.DT_INT32, [1], tensor_content=struct.pack("<i", 7), int_val=[1]),
        arr("INT32", [7]),
    ),
]


@pytest.mark.parametrize(
    ("proto", "expected"), [c[1:] for c in DECODE_CASES], ids=[c[0] for c in DECODE_CASES]
)
def test_decode(proto: tf_pb.TensorProto, expected: Array) -> None:
    dt, array = tensor_to_array(proto, "x")
    assert dt is datatype("BYTES" if expected.dtype == object else _kserve_of(expected))
    assert_same(array, expected)


def _kserve_of(a: Array) -> str:
    return next(d.kserve for d in DATATYPES if d.numpy == a.dtype)


@pytest.mark.parametrize("kserve", list(SAMPLES))
def test_decode_content_every_datatype(kserve: str) -> None:
    sample = SAMPLES[kserve]
    if kserve == "BYTES":
        proto = tp(7, [2, 3], string_val=sample.reshape(-1).tolist())
    else:
        proto = tp(datatype(kserve).tfs, [2, 3], tensor_content=sample.tobytes())
    dt, array = tensor_to_array(proto, "x")
    assert dt is datatype(kserve)
    assert_same(array, sample)


def _raw_dtype(value: int) -> tf_pb.TensorProto:
    # field 1 (dtype) varint, then a shape [2] and 8 bytes of content
    shape = b"\x12\x04\x12\x02\x08\x02"
    return tf_pb.TensorProto.parse(bytes([0x08, value]) + shape + b"\x22\x08" + bytes(8))


CONTENT_SIZE = "Invalid content size of tensor proto"
VALUE_COUNT = "Invalid number of values in tensor proto container"

ERROR_CASES: list[tuple[str, tf_pb.TensorProto, type[Exception], str]] = [
    (
        "bfloat16",
        tp(DT.DT_BFLOAT16, [2], tensor_content=bytes(4)),
        InvalidArgument,
        "Invalid input precision - DT_BFLOAT16 is not supported; input name: x",
    ),
    (
        "complex64",
        tp(DT.DT_COMPLEX64, [1], scomplex_val=[1.0, 2.0]),
        InvalidArgument,
        "DT_COMPLEX64 is not supported",
    ),
    (
        "dtype unset",
        tp(DT.DT_INVALID, [1], float_val=[1.0]),
        InvalidArgument,
        "DT_INVALID is not supported",
    ),
    ("dtype unknown", _raw_dtype(99), InvalidArgument, "DataType(99) is not supported"),
    (
        "unknown rank",
        tf_pb.TensorProto(
            dtype=DT.DT_FLOAT, tensor_shape=tf_pb.TensorShapeProto(unknown_rank=True)
        ),
        InvalidArgument,
        "Invalid input shape - unknown_rank",
    ),
    (
        "negative dim",
        tp(DT.DT_FLOAT, [1, -1], float_val=[1.0]),
        InvalidArgument,
        "Invalid input shape - negative dimension in (1,-1); input name: x",
    ),
    (
        "content short",
        tp(DT.DT_FLOAT, [2, 2], tensor_content=bytes(12)),
        InvalidArgument,
        f"{CONTENT_SIZE} - Expected: 16 bytes; Actual: 12 bytes; input name: x",
    ),
    (
        "content long",
        tp(DT.DT_HALF, [1], tensor_content=bytes(4)),
        InvalidArgument,
        f"{CONTENT_SIZE} - Expected: 2 bytes; Actual: 4 bytes; input name: x",
    ),
    (
        "content for strings",
        tp(DT.DT_STRING, [1], tensor_content=b"\x01a"),
        InvalidArgument,
        "DT_STRING values must be sent in string_val",
    ),
    (
        "no values",
        tp(DT.DT_FLOAT, [2]),
        InvalidArgument,
        f"{CONTENT_SIZE} - Expected: 8 bytes; Actual: 0 bytes (neither tensor_content nor float_val holds values); input name: x",
    ),
    (
        "no strings",
        tp(DT.DT_STRING, [2]),
        InvalidArgument,
        f"{VALUE_COUNT} - Expected: 2; Actual: 0",
    ),
    (
        "wrong typed field",
        tp(DT.DT_INT32, [2], float_val=[1.0, 2.0]),
        InvalidArgument,
        "DT_INT32 values belong in tensor_content or int_val, but float_val is set",
    ),
    (
        "fp16 in float_val",
        tp(DT.DT_HALF, [1], float_val=[1.0]),
        InvalidArgument,
        "belong in tensor_content or half_val, but float_val is set",
    ),
    (
        "uint16 in uint32_val",
        tp(DT.DT_UINT16, [1], uint32_val=[1]),
        InvalidArgument,
        "but uint32_val is set",
    ),
    (
        "too many values",
        tp(DT.DT_FLOAT, [2], float_val=[1.0, 2.0, 3.0]),
        InvalidArgument,
        f"{VALUE_COUNT} - Expected: 2; Actual: 3 (in float_val); input name: x",
    ),
    (
        "too many strings",
        tp(DT.DT_STRING, [], string_val=[b"a", b"b"]),
        InvalidArgument,
        f"{VALUE_COUNT} - Expected: 1; Actual: 2",
    ),
    (
        "INT8 overflow",
        tp(DT.DT_INT8, [2], int_val=[1, 200]),
        InvalidArgument,
        "value out of range for DT_INT8 [-128, 127] in int_val; input name: x",
    ),
    (
        "INT16 underflow",
        tp(DT.DT_INT16, [1], int_val=[-40000]),
        InvalidArgument,
        "value out of range for DT_INT16",
    ),
    (
        "UINT8 negative",
        tp(DT.DT_UINT8, [1], int_val=[-1]),
        InvalidArgument,
        "value out of range for DT_UINT8 [0, 255]",
    ),
    (
        "UINT16 overflow",
        tp(DT.DT_UINT16, [1], int_val=[70000]),
        InvalidArgument,
        "value out of range for DT_UINT16 [0, 65535]",
    ),
    (
        "too many elements",
        tp(DT.DT_FLOAT, [1 << 20, 1 << 20]),
        PayloadTooLarge,
        "Input tensor too large - Expected: at most 2147483648 elements; Actual: 1099511627776 elements (the limit is --max_tensor_elements); input name: x",
    ),
]


@pytest.mark.parametrize(
    ("proto", "exc", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_decode_errors(proto: tf_pb.TensorProto, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc) as info:
        tensor_to_array(proto, "x")
    assert message in str(info.value)
    assert type(info.value) is exc


def test_max_elements_is_checked_before_content() -> None:
    proto = tp(DT.DT_FLOAT, [5], tensor_content=bytes(20))
    with pytest.raises(PayloadTooLarge, match="at most 4 elements; Actual: 5 elements"):
        tensor_to_array(proto, "x", max_elements=4)
    assert tensor_to_array(proto, "x", max_elements=5)[1].shape == (5,)


def test_content_is_zero_copy() -> None:
    proto = tp(DT.DT_FLOAT, [4], tensor_content=np.arange(4, dtype="<f4").tobytes())
    _, array = tensor_to_array(proto, "x")
    assert not array.flags.owndata
    np.testing.assert_array_equal(array, [0, 1, 2, 3])


# ---------------------------------------------------------------------------------------------
# hand-written wire bytes: packed and unpacked repeated fields
# ---------------------------------------------------------------------------------------------


def wire_tensor(dtype: int, shape: list[int], body: bytes) -> bytes:
    dims = b"".join(ld(2, key(1, 0) + varint(d)) for d in shape)
    return key(1, 0) + varint(dtype) + ld(2, dims) + body


def packed(field: int, kind: str, values: list[Any]) -> bytes:
    if kind == "varint":
        return ld(field, b"".join(varint(int(v)) for v in values))
    return ld(field, struct.pack(f"<{len(values)}{kind}", *values))


def unpacked(field: int, kind: str, values: list[Any]) -> bytes:
    if kind == "varint":
        return b"".join(key(field, 0) + varint(int(v)) for v in values)
    wire = 5 if kind == "f" else 1
    return b"".join(key(field, wire) + struct.pack(f"<{kind}", v) for v in values)


WIRE_CASES = [
    # (datatype, field number, wire kind, values)
    ("FP32", 5, "f", [0.5, -1.25, 3e38]),
    ("FP64", 6, "d", [0.1, -1e300]),
    ("INT32", 7, "varint", [-1, 2**31 - 1, -(2**31)]),
    ("INT8", 7, "varint", [-128, 127]),
    ("UINT16", 7, "varint", [0, 65535]),
    ("INT64", 10, "varint", [-(2**63), 2**63 - 1, -1]),
    ("BOOL", 11, "varint", [True, False, True]),
    ("UINT32", 16, "varint", [0, 2**32 - 1]),
    ("UINT64", 17, "varint", [0, 2**64 - 1, 2**63]),
]


@pytest.mark.parametrize("encoding", ["packed", "unpacked"])
@pytest.mark.parametrize(
    ("kserve", "field", "kind", "values"), WIRE_CASES, ids=[c[0] for c in WIRE_CASES]
)
def test_wire_typed_fields(
    kserve: str, field: int, kind: str, values: list[Any], encoding: str
) -> None:
    row = datatype(kserve)
    encode = packed if encoding == "packed" else unpacked
    proto = tf_pb.TensorProto.parse(
        wire_tensor(row.tfs, [len(values)], encode(field, kind, values))
    )
    dt, array = tensor_to_array(proto, "x")
    assert dt is row
    assert_same(array, arr(kserve, values))


def test_wire_half_val_and_strings() -> None:
    bits = [0x3C00, 0x7E00, 0xFBFF]  # 1, NaN, -65504
    proto = tf_pb.TensorProto.parse(wire_tensor(19, [3], packed(13, "varint", bits)))
    assert_same(tensor_to_array(proto, "h")[1], np.array(bits, "<u2").view("<f2"))
    body = ld(8, b"ab") + ld(8, b"") + ld(8, b"\xff")
    proto = tf_pb.TensorProto.parse(wire_tensor(7, [1, 3], body))
    assert_same(tensor_to_array(proto, "s")[1], arr("BYTES", [b"ab", b"", b"\xff"], (1, 3)))


# ---------------------------------------------------------------------------------------------
# ndarray -> TensorProto, and back
# ---------------------------------------------------------------------------------------------

ROUND_TRIP_SHAPES = [(2, 3), (), (0,), (6,), (1, 2, 3)]


@pytest.mark.parametrize("shape", ROUND_TRIP_SHAPES, ids=str)
@pytest.mark.parametrize("kserve", list(SAMPLES))
def test_round_trip(kserve: str, shape: tuple[int, ...]) -> None:
    sample = SAMPLES[kserve].reshape(-1)[: math.prod(shape)].reshape(shape)
    proto = array_to_tensor(datatype(kserve), sample)
    assert proto.dtype == datatype(kserve).tfs
    assert [d.size for d in (proto.tensor_shape or tf_pb.TensorShapeProto()).dim] == list(shape)
    if kserve == "BYTES":
        assert proto.tensor_content == b""
        assert proto.string_val == sample.reshape(-1).tolist()
    else:
        assert proto.tensor_content == sample.astype(sample.dtype.newbyteorder("<")).tobytes()
        assert not proto.string_val
    wire = tf_pb.TensorProto.parse(bytes(proto))
    dt, back = tensor_to_array(wire, "x")
    assert dt is datatype(kserve)
    assert_same(back, sample)


def test_encode_non_contiguous_and_big_endian() -> None:
    base = np.arange(12, dtype=">i4").reshape(3, 4)
    view = base[:, ::2].T  # (2, 3), strided, big-endian
    proto = array_to_tensor(datatype("INT32"), view)
    assert proto.tensor_content == np.ascontiguousarray(view, "<i4").tobytes()
    strings = np.array(["a", "é"], dtype=object)  # str elements are sent as UTF-8
    assert array_to_tensor(datatype("BYTES"), strings).string_val == [b"a", "é".encode()]


# ---------------------------------------------------------------------------------------------
# PredictRequest / PredictResponse
# ---------------------------------------------------------------------------------------------


def predict_request(**spec: Any) -> tfs_pb.PredictRequest:
    req = tfs_pb.PredictRequest(
        model_spec=tfs_pb.ModelSpec(name="m", **spec),
        inputs={
            "a": tf_pb.TensorProto(
                dtype=DT.DT_FLOAT, tensor_shape=shape_proto([2]), float_val=[1.0, 2.0]
            ),
            "b": array_to_tensor(datatype("BYTES"), arr("BYTES", [b"x"])),
        },
    )
    return tfs_pb.PredictRequest.parse(bytes(req))


@pytest.mark.parametrize(
    ("spec", "version", "parameters"),
    [
        ({}, None, {}),
        ({"version": 0}, None, {}),
        ({"version": 7}, 7, {}),
        ({"version_label": "stable"}, None, {"version_label": "stable"}),
        ({"signature_name": "serving_default"}, None, {}),
        ({"signature_name": "", "version": 2}, 2, {}),
    ],
    ids=["none", "zero", "seven", "label", "default signature", "empty signature"],
)
def test_decode_predict_request(
    spec: dict[str, Any], version: int | None, parameters: dict[str, Any]
) -> None:
    req = decode_predict_request(predict_request(**spec))
    assert (req.model_name, req.model_version, req.parameters) == ("m", version, parameters)
    assert req.outputs is None
    assert [(t.name, t.datatype.kserve) for t in req.inputs] == [("a", "FP32"), ("b", "BYTES")]
    np.testing.assert_array_equal(req.inputs[0].data, np.array([1, 2], np.float32))
    assert req.inputs[1].data.tolist() == [b"x"]


def test_decode_predict_request_output_filter() -> None:
    msg = predict_request()
    msg.output_filter = ["y", "x"]
    req = decode_predict_request(tfs_pb.PredictRequest.parse(bytes(msg)))
    assert [o.name for o in req.outputs or []] == ["y", "x"]
    msg.output_filter = ["y", "y"]
    with pytest.raises(InvalidArgument, match="duplicate output tensor alias: y"):
        decode_predict_request(msg)


@pytest.mark.parametrize(
    ("msg", "exc", "message"),
    [
        (tfs_pb.PredictRequest(), InvalidArgument, "model_spec missing in request"),
        (
            tfs_pb.PredictRequest(model_spec=tfs_pb.ModelSpec(name="m", signature_name="predict")),
            FailedPrecondition,
            'Serving signature key "predict" not found.',
        ),
        (
            tfs_pb.PredictRequest(
                model_spec=tfs_pb.ModelSpec(name="m"),
                inputs={"a": tf_pb.TensorProto(dtype=DT.DT_FLOAT, tensor_shape=shape_proto([2]))},
            ),
            InvalidArgument,
            "Expected: 8 bytes; Actual: 0 bytes",
        ),
    ],
    ids=["no model_spec", "unknown signature", "bad input"],
)
def test_decode_predict_request_errors(
    msg: tfs_pb.PredictRequest, exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc) as info:
        decode_predict_request(msg)
    assert message in str(info.value)


def test_decode_predict_request_max_elements() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_predict_request(predict_request(), max_elements=1)


def test_encode_predict_response() -> None:
    resp = InferResponse(
        "m",
        3,
        [Tensor(k, datatype(k), v) for k, v in SAMPLES.items()],
    )
    msg = tfs_pb.PredictResponse.parse(bytes(encode_predict_response(resp)))
    assert msg.model_spec == tfs_pb.ModelSpec(name="m", version=3, signature_name="serving_default")
    assert list(msg.outputs) == list(SAMPLES)
    for name, sample in SAMPLES.items():
        dt, back = tensor_to_array(msg.outputs[name], name)
        assert dt is datatype(name)
        assert_same(back, sample)


# ---------------------------------------------------------------------------------------------
# metadata and status
# ---------------------------------------------------------------------------------------------

INPUTS = [
    TensorSpec("data", datatype("FP32"), (-1, 3, 224, 224)),
    TensorSpec("ids", datatype("INT64"), (1, 5)),
]
OUTPUTS = [
    TensorSpec("prob", datatype("FP16"), (1, 1000)),
    TensorSpec("label_bytes", datatype("BYTES"), ()),
]


def _dims(*sizes: int) -> dict[str, Any]:
    return {"dim": [{"size": str(s), "name": ""} for s in sizes], "unknownRank": False}


EXPECTED_METADATA_JSON = {
    "modelSpec": {"name": "resnet", "signatureName": "", "version": "2"},
    "metadata": {
        "signature_def": {
            "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
            "signatureDef": {
                "serving_default": {
                    "inputs": {
                        "data": {
                            "dtype": "DT_FLOAT",
                            "tensorShape": _dims(-1, 3, 224, 224),
                            "name": "data",
                        },
                        "ids": {"dtype": "DT_INT64", "tensorShape": _dims(1, 5), "name": "ids"},
                    },
                    "outputs": {
                        "prob": {"dtype": "DT_HALF", "tensorShape": _dims(1, 1000), "name": "prob"},
                        "label_bytes": {
                            "dtype": "DT_STRING",
                            "tensorShape": _dims(),
                            "name": "label_bytes",
                        },
                    },
                    "methodName": "tensorflow/serving/predict",
                }
            },
        }
    },
}


def test_metadata_json() -> None:
    assert model_metadata_json("resnet", 2, INPUTS, OUTPUTS) == EXPECTED_METADATA_JSON


def ovmsclient_http_metadata(doc: dict[str, Any]) -> dict[str, Any]:
    """What ovmsclient 2023.1 (tfs_compat/http/responses.py) reads from the metadata JSON."""
    io_info = doc["metadata"]["signature_def"]["signatureDef"]["serving_default"]
    out: dict[str, Any] = {
        kind: {
            name: {
                "dtype": info["dtype"],
                "shape": [int(d["size"]) for d in info["tensorShape"]["dim"]],
            }
            for name, info in io_info[kind].items()
        }
        for kind in ("inputs", "outputs")
    }
    out["model_version"] = int(doc["modelSpec"]["version"])
    return out


def test_metadata_json_as_ovmsclient_reads_it() -> None:
    assert ovmsclient_http_metadata(model_metadata_json("resnet", 2, INPUTS, OUTPUTS)) == {
        "inputs": {
            "data": {"dtype": "DT_FLOAT", "shape": [-1, 3, 224, 224]},
            "ids": {"dtype": "DT_INT64", "shape": [1, 5]},
        },
        "outputs": {
            "prob": {"dtype": "DT_HALF", "shape": [1, 1000]},
            "label_bytes": {"dtype": "DT_STRING", "shape": []},
        },
        "model_version": 2,
    }


def test_metadata_proto() -> None:
    msg = tfs_pb.GetModelMetadataResponse.parse(
        bytes(model_metadata_proto("resnet", 2, INPUTS, OUTPUTS))
    )
    assert msg.model_spec == tfs_pb.ModelSpec(name="resnet", version=2)
    assert list(msg.metadata) == ["signature_def"]
    packed_any = msg.metadata["signature_def"]
    assert packed_any.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    sig_map = tfs_pb.SignatureDefMap.parse(packed_any.value)
    sig = sig_map.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert list(sig.inputs) == ["data", "ids"]
    data = sig.inputs["data"]
    assert (data.name, data.dtype) == ("data", DT.DT_FLOAT)
    assert [d.size for d in (data.tensor_shape or tf_pb.TensorShapeProto()).dim] == [
        -1,
        3,
        224,
        224,
    ]
    assert sig.outputs["prob"].dtype == DT.DT_HALF
    assert sig.outputs["label_bytes"].dtype == DT.DT_STRING


class State(enum.IntEnum):
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class Status:
    version: int
    state: State
    error_code: str
    error_message: str


STATUSES = [
    Status(1, State.AVAILABLE, "OK", ""),
    Status(2, State.LOADING, "UNKNOWN", "could not compile"),
    Status(3, State.END, "OK", ""),
    Status(4, State.LOADING, "FAILED_PRECONDITION", "pipeline"),
    Status(5, State.START, "NOT_A_CODE", "?"),
]


def test_status_json() -> None:
    assert model_status_json(STATUSES[:2]) == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
            {
                "version": "2",
                "state": "LOADING",
                "status": {"error_code": "UNKNOWN", "error_message": "could not compile"},
            },
        ]
    }
    assert model_status_json([]) == {"model_version_status": []}


def test_status_proto() -> None:
    msg = tfs_pb.GetModelStatusResponse.parse(bytes(model_status_proto("m", STATUSES)))
    got = []
    for s in msg.model_version_status:
        assert s.status is not None  # always present, even when all-default (OK, "")
        got.append((s.version, s.state, s.status.error_code, s.status.error_message))
    S, C = tfs_pb.ModelVersionStatusState, tf_error.Code
    assert got == [
        (1, S.AVAILABLE, C.OK, ""),
        (2, S.LOADING, C.UNKNOWN, "could not compile"),
        (3, S.END, C.OK, ""),
        (4, S.LOADING, C.FAILED_PRECONDITION, "pipeline"),
        (5, S.START, C.UNKNOWN, "?"),  # unknown code names map to UNKNOWN
    ]


# ---------------------------------------------------------------------------------------------
# interop with the real protobuf library (descriptors compiled from protos/ by grpcio-tools)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Message classes of the protobuf library for our vendored protos."""
    grpc_tools = pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) not installed")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    out = tmp_path_factory.mktemp("tfs") / "set.pb"
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    files = [f for f in files if f.startswith("tensorflow")]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *files,
        ],
        check=True,
    )
    pool = descriptor_pool.DescriptorPool()
    for fd in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        pool.Add(fd)

    class Real:
        def __init__(self) -> None:
            self.pool = pool

        def __getattr__(self, name: str) -> Any:
            full = name if "." in name else f"tensorflow.{name}"
            return message_factory.GetMessageClass(pool.FindMessageTypeByName(full))

    return Real()


def _real_tensor(real: Any, dtype: int, shape: list[int], **fields: Any) -> bytes:
    t = real.TensorProto(dtype=dtype)
    for d in shape:
        t.tensor_shape.dim.add(size=d)
    for name, values in fields.items():
        if name == "tensor_content":
            t.tensor_content = values
        else:
            getattr(t, name).extend(values)
    wire: bytes = t.SerializeToString()
    return wire


REAL_CASES = [
    (
        "float_val",
        "FP32",
        [2, 2],
        {"float_val": [0.5, -1.0, 3e38, 0.25]},
        arr("FP32", [0.5, -1.0, 3e38, 0.25], (2, 2)),
    ),
    ("double_val", "FP64", [2], {"double_val": [0.1, -1e300]}, arr("FP64", [0.1, -1e300])),
    (
        "int_val",
        "INT32",
        [3],
        {"int_val": [-1, 2**31 - 1, -(2**31)]},
        arr("INT32", [-1, 2**31 - 1, -(2**31)]),
    ),
    ("int_val INT8", "INT8", [2], {"int_val": [-128, 127]}, arr("INT8", [-128, 127])),
    ("int_val UINT8", "UINT8", [2], {"int_val": [0, 255]}, arr("UINT8", [0, 255])),
    ("int_val INT16", "INT16", [2], {"int_val": [-32768, 32767]}, arr("INT16", [-32768, 32767])),
    ("int_val UINT16", "UINT16", [2], {"int_val": [0, 65535]}, arr("UINT16", [0, 65535])),
    (
        "int64_val",
        "INT64",
        [2],
        {"int64_val": [-(2**63), 2**63 - 1]},
        arr("INT64", [-(2**63), 2**63 - 1]),
    ),
    ("bool_val", "BOOL", [2], {"bool_val": [True, False]}, arr("BOOL", [True, False])),
    ("half_val", "FP16", [2], {"half_val": [0x3C00, 0xC000]}, arr("FP16", [1, -2])),
    ("uint32_val", "UINT32", [2], {"uint32_val": [0, 2**32 - 1]}, arr("UINT32", [0, 2**32 - 1])),
    ("uint64_val", "UINT64", [2], {"uint64_val": [0, 2**64 - 1]}, arr("UINT64", [0, 2**64 - 1])),
    (
        "string_val",
        "BYTES",
        [2],
        {"string_val": [b"\x00\xff", b"jpeg"]},
        arr("BYTES", [b"\x00\xff", b"jpeg"]),
    ),
    (
        "scalar float_val (tf.make_tensor_proto)",
        "FP32",
        [],
        {"float_val": [7.5]},
        arr("FP32", [7.5], ()),
    ),
    ("one element int64_val", "INT64", [1, 1], {"int64_val": [-3]}, arr("INT64", [-3], (1, 1))),
    ("repeat last", "INT16", [3], {"int_val": [9]}, arr("INT16", [9, 9, 9])),
    (
        "fp16 tensor_content (ovmsclient)",
        "FP16",
        [2],
        {"tensor_content": np.array([0.5, 8], "<f2").tobytes()},
        arr("FP16", [0.5, 8]),
    ),
    (
        "fp32 tensor_content",
        "FP32",
        [1, 2],
        {"tensor_content": np.array([1, 2], "<f4").tobytes()},
        arr("FP32", [1, 2], (1, 2)),
    ),
]


@pytest.mark.parametrize(
    ("kserve", "shape", "fields", "expected"),
    [c[1:] for c in REAL_CASES],
    ids=[c[0] for c in REAL_CASES],
)
def test_real_protobuf_decode(
    real: Any, kserve: str, shape: list[int], fields: dict[str, Any], expected: Array
) -> None:
    wire = _real_tensor(real, datatype(kserve).tfs, shape, **fields)
    dt, array = tensor_to_array(tf_pb.TensorProto.parse(wire), "x")
    assert dt is datatype(kserve)
    assert_same(array, expected)


def test_real_protobuf_predict_request(real: Any) -> None:
    req = real.__getattr__("tensorflow.serving.PredictRequest")()
    req.model_spec.name = "m"
    req.model_spec.version.value = 4
    req.model_spec.signature_name = "serving_default"
    req.inputs["x"].CopyFrom(
        real.TensorProto.FromString(_real_tensor(real, 1, [1], float_val=[2.0]))
    )
    req.output_filter.append("y")
    out = decode_predict_request(tfs_pb.PredictRequest.parse(req.SerializeToString()))
    assert (out.model_name, out.model_version) == ("m", 4)
    assert [o.name for o in out.outputs or []] == ["y"]
    assert_same(out.inputs[0].data, arr("FP32", [2.0]))


@pytest.mark.parametrize("kserve", list(SAMPLES))
def test_real_protobuf_reads_our_tensors(real: Any, kserve: str) -> None:
    sample = SAMPLES[kserve]
    msg = real.TensorProto.FromString(bytes(array_to_tensor(datatype(kserve), sample)))
    assert msg.dtype == datatype(kserve).tfs
    assert [d.size for d in msg.tensor_shape.dim] == [2, 3]
    if kserve == "BYTES":
        assert list(msg.string_val) == sample.reshape(-1).tolist()
    else:  # what tf.make_ndarray / ovmsclient make_ndarray do with tensor_content
        back = np.frombuffer(msg.tensor_content, dtype=datatype(kserve).numpy).reshape(2, 3)
        assert_same(back, sample)


def test_real_protobuf_metadata_json_matches_ovms_printer(real: Any) -> None:
    """OVMS prints metadata with protobuf's JSON printer (always printing default fields):
    our JSON builder must equal that printer's output for our proto builder's message."""
    from google.protobuf import json_format

    cls = real.__getattr__("tensorflow.serving.GetModelMetadataResponse")
    msg = cls.FromString(bytes(model_metadata_proto("resnet", 2, INPUTS, OUTPUTS)))
    printed = json_format.MessageToDict(
        msg, always_print_fields_with_no_presence=True, descriptor_pool=real.pool
    )
    assert printed == model_metadata_json("resnet", 2, INPUTS, OUTPUTS) == EXPECTED_METADATA_JSON


def test_real_protobuf_status_json_matches_printer(real: Any) -> None:
    from google.protobuf import json_format

    cls = real.__getattr__("tensorflow.serving.GetModelStatusResponse")
    msg = cls.FromString(bytes(model_status_proto("m", STATUSES[:4])))
    printed = json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)
    assert printed == model_status_json(STATUSES[:4])
