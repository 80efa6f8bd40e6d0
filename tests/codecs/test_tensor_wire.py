"""The tensor wire every codec shares: one table per rule, run through every codec it reaches.

The codecs must answer a tensor alike: BOOL bytes other than 0/1 are true and read as 1, a
BYTES output element that is not bytes or str is an internal error, and element counts and
length-prefixed BYTES fail with the same messages.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import deserialize_bytes_tensor

from ovtrio._proto import tensorflow as tf_pb
from ovtrio.codecs import kserve_grpc, kserve_rest, tfs_rest, tfs_tensor
from ovtrio.codecs._tensor_wire import element_count, shape_text
from ovtrio.errors import GrpcStatus, InvalidArgument, OvtrioError, PayloadTooLarge
from ovtrio.tensors import DATATYPES, Datatype, InferRequest, InferResponse, Tensor, datatype

# ---------------------------------------------------------------------------------------------
# decoders: (datatype, shape, blob, max_elements) -> the decoded array
# ---------------------------------------------------------------------------------------------

Decode = Callable[[str, list[int], bytes, int], np.ndarray[Any, Any]]


def _rest_binary(dt: str, shape: list[int], blob: bytes, limit: int) -> np.ndarray[Any, Any]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": dt,
                    "shape": shape,
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
    )
    request = kserve_rest.decode_infer_request(
        header + blob, len(header), model_name="m", model_version=None, max_elements=limit
    )
    return request.inputs[0].data


def _grpc_raw(dt: str, shape: list[int], blob: bytes, limit: int) -> np.ndarray[Any, Any]:
    message = service_pb2.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype=dt, shape=shape)
    message.raw_input_contents.append(blob)
    wire = kserve_grpc.InferRequestReader.FromString(message.SerializeToString())
    return kserve_grpc.decode_infer_request(wire, max_elements=limit).inputs[0].data


def _tfs_content(dt: str, shape: list[int], blob: bytes, limit: int) -> np.ndarray[Any, Any]:
    proto = tf_pb.TensorProto(
        dtype=tf_pb.DataType(datatype(dt).tfs),
        tensor_shape=tf_pb.TensorShapeProto(dim=[tf_pb.TensorShapeProtoDim(size=d) for d in shape]),
        tensor_content=blob,
    )
    return tfs_tensor.tensor_to_array(proto, "x", limit)[1]


NUMERIC_DECODERS: dict[str, Decode] = {
    "kserve rest binary": _rest_binary,
    "kserve grpc raw": _grpc_raw,
    "tfs tensor_content": _tfs_content,
}
PREFIXED_DECODERS: dict[str, Decode] = {
    "kserve rest binary": _rest_binary,
    "kserve grpc raw": _grpc_raw,
}


# ---------------------------------------------------------------------------------------------
# BOOL bytes
# ---------------------------------------------------------------------------------------------

BOOL_CASES = {
    "0 and 1": (b"\x00\x01\x01\x00", [0, 1, 1, 0]),
    "2 is true": (b"\x00\x02", [0, 1]),
    "every byte": (bytes(range(256)), [0] + [1] * 255),
    "empty": (b"", []),
}


@pytest.mark.parametrize("decode", NUMERIC_DECODERS.values(), ids=NUMERIC_DECODERS.keys())
@pytest.mark.parametrize(("blob", "expected"), BOOL_CASES.values(), ids=BOOL_CASES.keys())
def test_bool_bytes(decode: Decode, blob: bytes, expected: list[int]) -> None:
    array = decode("BOOL", [len(blob)], blob, 1 << 31)
    assert array.dtype == np.bool_
    assert array.view(np.uint8).tolist() == expected


# ---------------------------------------------------------------------------------------------
# element counts
# ---------------------------------------------------------------------------------------------

COUNT_CASES = {
    "too many": (
        [2, 3],
        5,
        PayloadTooLarge,
        "Input tensor too large - Expected: at most 5 elements; Actual: 6 elements"
        " (the limit is --max_tensor_elements); input name: x",
    ),
    "empty but huge": (
        [0, 4, 4],
        10,
        InvalidArgument,
        "Invalid input shape - (0,4,4) holds no elements, but its other dimensions multiply to"
        " more than 10; input name: x",
    ),
}


@pytest.mark.parametrize("decode", NUMERIC_DECODERS.values(), ids=NUMERIC_DECODERS.keys())
@pytest.mark.parametrize(
    ("shape", "limit", "exc", "message"), COUNT_CASES.values(), ids=COUNT_CASES.keys()
)
def test_element_count(
    decode: Decode, shape: list[int], limit: int, exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc) as info:
        decode("FP32", shape, b"", limit)
    assert type(info.value) is exc
    assert str(info.value) == message


@pytest.mark.parametrize(
    "decode", [_grpc_raw, _tfs_content], ids=["kserve grpc raw", "tfs tensor_content"]
)
def test_negative_dimension(decode: Decode) -> None:
    with pytest.raises(InvalidArgument) as info:
        decode("FP32", [1, -1], b"", 1 << 31)
    assert str(info.value) == "Invalid input shape - negative dimension in (1,-1); input name: x"


@pytest.mark.parametrize(
    ("shape", "count"), [([], 1), ([0], 0), ([2, 3, 4], 24), ([1 << 20, 1 << 11], 1 << 31)]
)
def test_element_count_accepts(shape: list[int], count: int) -> None:
    assert element_count(shape, "x") == count


def test_shape_text() -> None:
    assert shape_text([1, 3, 224, 224]) == "(1,3,224,224)"
    assert shape_text(()) == "()"


@pytest.mark.parametrize("decode", NUMERIC_DECODERS.values(), ids=NUMERIC_DECODERS.keys())
def test_fixed_size_mismatch(decode: Decode) -> None:
    with pytest.raises(InvalidArgument) as info:
        decode("INT32", [2], b"\0" * 7, 1 << 31)
    assert str(info.value) == (
        "Invalid content size of tensor proto - Expected: 8 bytes; Actual: 7 bytes; input name: x"
    )


# ---------------------------------------------------------------------------------------------
# length-prefixed BYTES
# ---------------------------------------------------------------------------------------------


def _prefixed(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


PREFIXED_CASES: dict[str, tuple[list[int], bytes, list[bytes] | str]] = {
    "two elements": ([2], _prefixed(b"ab", b""), [b"ab", b""]),
    "one element": ([1, 1], _prefixed(b"\x00\xff"), [b"\x00\xff"]),
    "fewer bytes than prefixes": (
        [3],
        b"\0" * 8,
        "Expected: at least 12 bytes (a 4-byte length prefix per element of 3 BYTES elements);"
        " Actual: 8 bytes",
    ),
    "element overruns": (
        [2],
        _prefixed(b"a") + struct.pack("<I", 5),
        "BYTES element 1 declares 5 bytes but only 0 remain in {container}",
    ),
    "elements run out": (
        [2],
        _prefixed(b"abcde"),
        "BYTES data ends after element 1 of 2 (each element is a 4-byte little-endian length"
        " then its bytes)",
    ),
    "bytes left over": (
        [2],
        _prefixed(b"a", b"b") + b"z",
        "1 bytes of {container} remain after the 2 BYTES elements the shape declares",
    ),
}
CONTAINER = {"kserve rest binary": "binary_data_size", "kserve grpc raw": "raw_input_contents"}


@pytest.mark.parametrize("codec", PREFIXED_DECODERS)
@pytest.mark.parametrize(
    ("shape", "blob", "expected"), PREFIXED_CASES.values(), ids=PREFIXED_CASES.keys()
)
def test_prefixed_bytes(
    codec: str, shape: list[int], blob: bytes, expected: list[bytes] | str
) -> None:
    decode = PREFIXED_DECODERS[codec]
    if isinstance(expected, list):
        array = decode("BYTES", shape, blob, 1 << 31)
        assert array.shape == tuple(shape)
        assert array.reshape(-1).tolist() == expected
        return
    with pytest.raises(InvalidArgument) as info:
        decode("BYTES", shape, blob, 1 << 31)
    assert str(info.value) == (
        "Invalid content size of tensor proto - "
        + expected.format(container=CONTAINER[codec])
        + "; input name: x"
    )


# ---------------------------------------------------------------------------------------------
# BYTES outputs
# ---------------------------------------------------------------------------------------------

Encode = Callable[[np.ndarray[Any, Any]], list[bytes]]


def _response(data: np.ndarray[Any, Any]) -> InferResponse:
    return InferResponse("m", 1, [Tensor("t", datatype("BYTES"), data)])


def _rest(binary: bool) -> Encode:
    def encode(data: np.ndarray[Any, Any]) -> list[bytes]:
        request = InferRequest("m", None, [], parameters={"binary_data_output": binary})
        body, length = kserve_rest.encode_infer_response(_response(data), request)
        result = httpclient.InferResult.from_response_body(body, header_length=length)
        values = result.as_numpy("t").reshape(-1).tolist()
        return values if binary else [v.encode() for v in values]

    return encode


def _grpc(data: np.ndarray[Any, Any]) -> list[bytes]:
    wire = bytes(kserve_grpc.encode_infer_response(_response(data)))
    raw = service_pb2.ModelInferResponse.FromString(wire).raw_output_contents[0]
    values: list[bytes] = deserialize_bytes_tensor(raw).tolist()
    return values


def _tfs_grpc(data: np.ndarray[Any, Any]) -> list[bytes]:
    proto = tfs_tensor.encode_predict_response(_response(data))
    return list(proto.outputs["t"].string_val)


def _tfs_rest(data: np.ndarray[Any, Any]) -> list[bytes]:
    doc = orjson.loads(tfs_rest.encode_predict(_response(data), "column"))
    return [v.encode() for v in doc["outputs"]]


ENCODERS: dict[str, Encode] = {
    "kserve rest json": _rest(False),
    "kserve rest binary": _rest(True),
    "kserve grpc": _grpc,
    "tfs grpc": _tfs_grpc,
    "tfs rest": _tfs_rest,
}


def _objects(*items: Any) -> np.ndarray[Any, Any]:
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


BYTES_OUTPUT_CASES: dict[str, tuple[np.ndarray[Any, Any], list[bytes] | str]] = {
    "bytes": (_objects(b"a", b""), [b"a", b""]),
    "str": (_objects("h\u00e9", "x"), ["h\u00e9".encode(), b"x"]),
    "numpy str": (np.array(["ab", "c"]), [b"ab", b"c"]),
    "numpy bytes": (np.array([b"ab", b"c"]), [b"ab", b"c"]),
    "bytes-like": (_objects(bytearray(b"q"), memoryview(b"w")), [b"q", b"w"]),
    "int": (_objects(b"a", 1), "int"),
    "float": (_objects(1.5), "float"),
    "None": (_objects(None), "NoneType"),
}


@pytest.mark.parametrize("encode", ENCODERS.values(), ids=ENCODERS.keys())
@pytest.mark.parametrize(
    ("data", "expected"), BYTES_OUTPUT_CASES.values(), ids=BYTES_OUTPUT_CASES.keys()
)
def test_bytes_output(
    encode: Encode, data: np.ndarray[Any, Any], expected: list[bytes] | str
) -> None:
    if isinstance(expected, list):
        assert encode(data) == expected
        return
    with pytest.raises(OvtrioError) as info:
        encode(data)
    assert type(info.value) is OvtrioError
    assert info.value.http_status == 500
    assert info.value.grpc_status == GrpcStatus.INTERNAL
    assert str(info.value) == f"BYTES output t holds a {expected}, not bytes"


# ---------------------------------------------------------------------------------------------
# the datatype table
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", DATATYPES, ids=[d.kserve for d in DATATYPES])
def test_table_fields_exist(row: Datatype) -> None:
    """The table's field names are fields of the KServe and TensorFlow messages."""
    if row.kserve_contents:
        assert row.kserve_contents in service_pb2.InferTensorContents.DESCRIPTOR.fields_by_name
    else:
        assert row.kserve == "FP16"
    assert hasattr(tf_pb.TensorProto(), row.tfs_val)
