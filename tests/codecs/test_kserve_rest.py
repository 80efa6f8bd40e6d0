"""KServe v2 REST codec: JSON and binary extension, both ways, and tritonclient interop."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from tritonclient.http._utils import _get_inference_request

from ovtrio.codecs import kserve_rest
from ovtrio.codecs.kserve_rest import (
    HEADER_LENGTH,
    decode_infer_request,
    encode_error,
    encode_infer_response,
)
from ovtrio.errors import InvalidArgument, JsonInvalid, OvtrioError, PayloadTooLarge
from ovtrio.tensors import (
    DATATYPES,
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    datatype,
)

Array = np.ndarray[Any, Any]

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def arr(kserve: str, values: Any, shape: tuple[int, ...] | None = None) -> Array:
    row = datatype(kserve)
    if kserve == "BYTES":
        flat = list(values)
        out = np.empty(len(flat), dtype=object)
        out[:] = [v.encode() if isinstance(v, str) else v for v in flat]
    else:
        out = np.array(values, dtype=row.numpy).reshape(-1)
    return out.reshape(shape if shape is not None else (len(out),))


def blobs_of_bytes(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def body_of(doc: Any, *blobs: bytes) -> tuple[bytes, int]:
    header = orjson.dumps(doc)
    return header + b"".join(blobs), len(header)


def decode(body: bytes, header_length: int | str | None, **kwargs: Any) -> InferRequest:
    return decode_infer_request(body, header_length, model_name="m", model_version=None, **kwargs)


def assert_tensor_equal(actual: Array, expected: Array) -> None:
    assert actual.shape == expected.shape
    if expected.dtype == np.dtype(object):
        assert actual.dtype == np.dtype(object)
        assert actual.tolist() == expected.tolist()
        assert all(type(e) is bytes for e in actual.reshape(-1).tolist())
    else:
        assert actual.dtype == expected.dtype
        # bit-exact (covers -0.0 and NaN payloads)
        assert np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes()


# One sample per datatype, shape (2, 3), extremes of each range. JSON-safe (BYTES is UTF-8).


@pytest.fixture(autouse=True, params=["orjson", "simdjson"])
def json_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs twice: small headers go through orjson, large ones through simdjson's
    numeric fast path (kserve_rest.LARGE_JSON); both must give the same answers and errors."""
    if request.param == "simdjson":
        monkeypatch.setattr(kserve_rest, "LARGE_JSON", 0)
    return str(request.param)


SAMPLES: dict[str, Array] = {
    "BOOL": arr("BOOL", [True, False, True, False, False, True], (2, 3)),
    "UINT8": arr("UINT8", [0, 1, 255, 7, 128, 254], (2, 3)),
    "UINT16": arr("UINT16", [0, 1, 65535, 7, 32768, 2], (2, 3)),
    "UINT32": arr("UINT32", [0, 1, 2**32 - 1, 7, 2**31, 3], (2, 3)),
    "UINT64": arr("UINT64", [0, 1, 2**64 - 1, 7, 2**63, 2**53 + 1], (2, 3)),
    "INT8": arr("INT8", [-128, 127, 0, -1, 5, 64], (2, 3)),
    "INT16": arr("INT16", [-(2**15), 2**15 - 1, 0, -1, 5, 64], (2, 3)),
    "INT32": arr("INT32", [-(2**31), 2**31 - 1, 0, -1, 5, 64], (2, 3)),
    "INT64": arr("INT64", [-(2**63), 2**63 - 1, 0, -1, 2**53 + 1, 64], (2, 3)),
    "FP16": arr("FP16", [0.1, -65504, 6e-8, 1 / 3, -0.0, 1.5], (2, 3)),
    "FP32": arr("FP32", [0.1, -3.4e38, 1e-45, 1 / 3, -0.0, 1.5], (2, 3)),
    "FP64": arr("FP64", [0.1, -1.7e308, 5e-324, 1 / 3, -0.0, 1.5], (2, 3)),
    "BYTES": arr("BYTES", [b"", b"abc", "\u00e9t\u00e9", b"x" * 300, b"\x00\x01", "tab\t"], (2, 3)),
}
ALL_TYPES = [d.kserve for d in DATATYPES]


def test_samples_cover_the_datatype_table() -> None:
    assert sorted(SAMPLES) == sorted(ALL_TYPES)
    for name, sample in SAMPLES.items():
        assert sample.dtype == datatype(name).numpy


# ---------------------------------------------------------------------------------------------
# decode: table of requests -> expected arrays
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeCase:
    doc: Any
    expected: dict[str, Array]
    blobs: tuple[bytes, ...] = ()
    header: bool | None = None
    """Send Inference-Header-Content-Length? None: iff there are blobs."""


def _inp(name: str, dt: str, shape: list[int], **kw: Any) -> dict[str, Any]:
    return {"name": name, "datatype": dt, "shape": shape, **kw}


def _binp(name: str, dt: str, shape: list[int], size: Any) -> dict[str, Any]:
    return _inp(name, dt, shape, parameters={"binary_data_size": size})


CASES: dict[str, DecodeCase] = {
    "json flat FP32": DecodeCase(
        {"inputs": [_inp("x", "FP32", [2, 2], data=[1.5, 2, -3, 4e10])]},
        {"x": arr("FP32", [1.5, 2, -3, 4e10], (2, 2))},
    ),
    "json nested INT32": DecodeCase(
        {"inputs": [_inp("x", "INT32", [2, 2], data=[[1, 2], [3, -4]])]},
        {"x": arr("INT32", [1, 2, 3, -4], (2, 2))},
    ),
    "json nesting need not follow shape": DecodeCase(
        {"inputs": [_inp("x", "INT8", [4], data=[[1, 2], [3, 4]])]},
        {"x": arr("INT8", [1, 2, 3, 4])},
    ),
    "json BOOL true/false": DecodeCase(
        {"inputs": [_inp("b", "BOOL", [3], data=[True, False, True])]},
        {"b": arr("BOOL", [True, False, True])},
    ),
    "json BOOL 0/1": DecodeCase(
        {"inputs": [_inp("b", "BOOL", [1, 3], data=[[1, 0, 1]])]},
        {"b": arr("BOOL", [True, False, True], (1, 3))},
    ),
    "json FP16 numbers": DecodeCase(
        {"inputs": [_inp("h", "FP16", [3], data=[0.1, -65504, 1])]},
        {"h": arr("FP16", [0.1, -65504, 1])},
    ),
    "json FP64 from ints": DecodeCase(
        {"inputs": [_inp("d", "FP64", [2], data=[1, 2**53])]},
        {"d": arr("FP64", [1, 2**53])},
    ),
    "json UINT64/INT64 extremes": DecodeCase(
        {
            "inputs": [
                _inp("u", "UINT64", [2], data=[0, 2**64 - 1]),
                _inp("i", "INT64", [2], data=[-(2**63), 2**63 - 1]),
            ]
        },
        {"u": arr("UINT64", [0, 2**64 - 1]), "i": arr("INT64", [-(2**63), 2**63 - 1])},
    ),
    "json BYTES flat and nested": DecodeCase(
        {
            "inputs": [
                _inp("s", "BYTES", [2], data=["abc", "\u00e9"]),
                _inp("t", "BYTES", [2, 1], data=[["x"], [""]]),
            ]
        },
        {"s": arr("BYTES", [b"abc", "\u00e9".encode()]), "t": arr("BYTES", [b"x", b""], (2, 1))},
    ),
    "json empty tensor": DecodeCase(
        {"inputs": [_inp("x", "FP32", [0, 3], data=[])]},
        {"x": np.zeros((0, 3), dtype="<f4")},
    ),
    "json scalar": DecodeCase(
        {"inputs": [_inp("x", "INT64", [], data=[5])]},
        {"x": np.array(5, dtype="<i8")},
    ),
    "binary FP32 little-endian": DecodeCase(
        {"inputs": [_binp("x", "FP32", [2], 8)]},
        {"x": arr("FP32", [1.0, -2.0])},
        blobs=(struct.pack("<2f", 1.0, -2.0),),
    ),
    "binary INT32 explicit LE": DecodeCase(
        {"inputs": [_binp("x", "INT32", [1, 2], 8)]},
        {"x": arr("INT32", [1, -2], (1, 2))},
        blobs=(b"\x01\x00\x00\x00\xfe\xff\xff\xff",),
    ),
    "binary BYTES prefixed": DecodeCase(
        {"inputs": [_binp("s", "BYTES", [3], 4 + 3 + 4 + 0 + 4 + 2)]},
        {"s": arr("BYTES", [b"abc", b"", b"\xff\x00"])},
        blobs=(blobs_of_bytes(b"abc", b"", b"\xff\x00"),),
    ),
    "binary BYTES comma sizes (seed 003 images)": DecodeCase(
        {"inputs": [_binp("img", "BYTES", [2], "3,2")]},
        {"img": arr("BYTES", [b"\xff\xd8\xff", b"\x89P"])},
        blobs=(b"\xff\xd8\xff\x89P",),
    ),
    "binary BYTES single comma size": DecodeCase(
        {"inputs": [_binp("img", "BYTES", [1], " 4 ")]},
        {"img": arr("BYTES", [b"JPEG"])},
        blobs=(b"JPEG",),
    ),
    "binary BOOL nonzero bytes normalised": DecodeCase(
        {"inputs": [_binp("b", "BOOL", [3], 3)]},
        {"b": arr("BOOL", [True, False, True])},
        blobs=(b"\x02\x00\x01",),
    ),
    "binary and json inputs mixed, blobs in input order": DecodeCase(
        {
            "inputs": [
                _binp("a", "UINT8", [2], 2),
                _inp("j", "INT16", [1], data=[7]),
                _binp("c", "FP64", [1], 8),
            ]
        },
        {"a": arr("UINT8", [1, 2]), "j": arr("INT16", [7]), "c": arr("FP64", [0.5])},
        blobs=(b"\x01\x02", struct.pack("<d", 0.5)),
    ),
    "binary size omitted: size from shape (OVMS)": DecodeCase(
        {"inputs": [_inp("a", "UINT16", [2]), _inp("b", "INT8", [1])]},
        {"a": arr("UINT16", [1, 256]), "b": arr("INT8", [-1])},
        blobs=(b"\x01\x00\x00\x01", b"\xff"),
    ),
    "binary size omitted: single BYTES input owns the rest, unprefixed (OVMS curl)": DecodeCase(
        {"inputs": [_inp("0", "BYTES", [1])]},
        {"0": arr("BYTES", [b"\xff\xd8\xff\xe0JFIF"])},
        blobs=(b"\xff\xd8\xff\xe0JFIF",),
    ),
    "binary size omitted: single BYTES input owns the rest, prefixed": DecodeCase(
        {"inputs": [_inp("0", "BYTES", [2])]},
        {"0": arr("BYTES", [b"ab", b"c"])},
        blobs=(blobs_of_bytes(b"ab", b"c"),),
    ),
    "binary empty tensor": DecodeCase(
        {"inputs": [_binp("x", "FP32", [2, 0], 0), _binp("s", "BYTES", [0], 0)]},
        {"x": np.zeros((2, 0), dtype="<f4"), "s": np.empty((0,), dtype=object)},
        header=True,
    ),
    "header given, no binary at all": DecodeCase(
        {"inputs": [_inp("x", "UINT32", [1], data=[4])]},
        {"x": arr("UINT32", [4])},
        header=True,
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_decode_cases(case: DecodeCase) -> None:
    body, json_length = body_of(case.doc, *case.blobs)
    send_header = bool(case.blobs) if case.header is None else case.header
    request = decode(body, json_length if send_header else None)
    assert [t.name for t in request.inputs] == list(case.expected)
    for tensor in request.inputs:
        assert tensor.datatype.numpy == tensor.data.dtype
        assert_tensor_equal(tensor.data, case.expected[tensor.name])


def test_decode_request_fields() -> None:
    doc = {
        "id": "r-1",
        "parameters": {"binary_data_output": True, "custom": 3},
        "inputs": [_inp("x", "FP32", [1], data=[1])],
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}],
    }
    body, _ = body_of(doc)
    request = decode_infer_request(body, None, model_name="resnet", model_version=3)
    assert request.model_name == "resnet"
    assert request.model_version == 3
    assert request.id == "r-1"
    assert request.parameters == {"binary_data_output": True, "custom": 3}
    assert request.outputs == [RequestedOutput("y", {"binary_data": False}), RequestedOutput("z")]

    bare = decode(body_of({"inputs": [_inp("x", "FP32", [1], data=[1])]})[0], None)
    assert (bare.id, bare.parameters, bare.outputs) == ("", {}, None)


def test_header_length_as_raw_header_string() -> None:
    body, json_length = body_of({"inputs": [_binp("x", "UINT8", [1], 1)]}, b"\x07")
    for header in (str(json_length), f" {json_length} ", json_length):
        assert_tensor_equal(decode(body, header).inputs[0].data, arr("UINT8", [7]))


def test_binary_inputs_are_zero_copy_views_of_the_body() -> None:
    payload = np.arange(1000, dtype="<f4")
    body, json_length = body_of(
        {"inputs": [_binp("x", "FP32", [10, 100], 4000)]}, payload.tobytes()
    )
    data = decode(body, json_length).inputs[0].data
    assert np.shares_memory(data, np.frombuffer(body, dtype=np.uint8))
    assert_tensor_equal(data, payload.reshape(10, 100))


def test_huge_shape_is_refused_before_allocating() -> None:
    body, json_length = body_of({"inputs": [_binp("x", "FP32", [1, 10**12], 64)]}, b"\0" * 64)
    start = time.perf_counter()
    with pytest.raises(PayloadTooLarge, match=r"at most 2147483648 elements.*input name: x"):
        decode(body, json_length)
    # Above the limit the byte-size check refuses it, still without allocating.
    with pytest.raises(InvalidArgument, match="Expected: 4000000000000 bytes; Actual: 64 bytes"):
        decode(body, json_length, max_elements=10**13)
    body, json_length = body_of({"inputs": [_binp("s", "BYTES", [10**12], 64)]}, b"\0" * 64)
    with pytest.raises(InvalidArgument, match="4-byte length prefix"):
        decode(body, json_length, max_elements=10**13)
    body, _ = body_of({"inputs": [_inp("x", "FP32", [10**9], data=[1.0])]})
    with pytest.raises(PayloadTooLarge):
        decode(body, None, max_elements=1000)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------------------------
# errors: (body, header length, exception class, message substring)
# ---------------------------------------------------------------------------------------------

_X4 = _inp("x", "FP32", [4])


def _err(doc: Any, *blobs: bytes, header: bool | None = None) -> tuple[bytes, int | None]:
    body, json_length = body_of(doc, *blobs)
    return body, json_length if (bool(blobs) if header is None else header) else None


def _one(**input_fields: Any) -> dict[str, Any]:
    return {"inputs": [{**_X4, **input_fields}]}


ERRORS: dict[str, tuple[tuple[bytes, int | str | None], type[Exception], str]] = {
    "not json": ((b"{inputs", None), JsonInvalid, "The file is not valid json - Error: "),
    "empty body": ((b"", None), JsonInvalid, "The file is not valid json - Error: "),
    "json header cut short": ((b'{"inputs": []}', 5), JsonInvalid, "not valid json"),
    "body is a list": ((b"[1]", None), InvalidArgument, "Request body should be JSON object"),
    "header not a number": (
        (b"{}", "abc"),
        InvalidArgument,
        "Inference-Header-Content-Length header is invalid and couldn't be parsed",
    ),
    "header negative": ((b"{}", "-1"), InvalidArgument, "header is invalid"),
    "header negative int": ((b"{}", -1), InvalidArgument, "header is invalid"),
    "header with underscore": ((b"{}", "1_0"), InvalidArgument, "header is invalid"),
    "header beyond body": (
        (b"{}", 3),
        InvalidArgument,
        "Inference-Header-Content-Length header exceeds actual payload length",
    ),
    "header zero (Triton raw binary request)": ((b"\0\0\0\0", 0), InvalidArgument, "not supported"),
    "inputs missing": (
        _err({"id": "a"}),
        InvalidArgument,
        "Invalid JSON structure, missing inputs",
    ),
    "inputs empty": (_err({"inputs": []}), InvalidArgument, "missing inputs"),
    "inputs not a list": (_err({"inputs": {"x": 1}}), InvalidArgument, "missing inputs"),
    "input not an object": (
        _err({"inputs": [3]}),
        InvalidArgument,
        "One of inputs is not a JSON object",
    ),
    "input without name": (
        _err({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}),
        InvalidArgument,
        "input 0 has no 'name'",
    ),
    "datatype missing": (
        _err({"inputs": [{"name": "x", "shape": [1], "data": [1]}]}),
        InvalidArgument,
        "'datatype' must be a string; input name: x",
    ),
    "datatype unknown": (
        _err(_one(datatype="BF16", data=[1, 2, 3, 4])),
        InvalidArgument,
        "Unsupported data precision detected - datatype 'BF16'; input name: x",
    ),
    "shape missing": (
        _err({"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}),
        InvalidArgument,
        "'shape' must be an array",
    ),
    "shape negative": (_err(_one(shape=[-1], data=[])), InvalidArgument, "non-negative integers"),
    "shape float": (_err(_one(shape=[2.0], data=[1, 2])), InvalidArgument, "'shape'"),
    "shape bool": (_err(_one(shape=[True], data=[1])), InvalidArgument, "'shape'"),
    "shape rank 33": (_err(_one(shape=[1] * 33, data=[1])), InvalidArgument, "at most 32"),
    "duplicate input": (
        _err({"inputs": [{**_X4, "data": [1, 2, 3, 4]}, {**_X4, "data": [1, 2, 3, 4]}]}),
        InvalidArgument,
        "duplicate input name: x",
    ),
    "too few values": (
        _err(_one(data=[1, 2, 3])),
        InvalidArgument,
        "Invalid number of values in tensor proto container - Expected: 4 values;"
        " Actual: 3 values; input name: x",
    ),
    "too many values nested": (
        _err(_one(data=[[1, 2, 3], [4, 5, 6]])),
        InvalidArgument,
        "Expected: 4 values; Actual: 6 values",
    ),
    "ragged": (_err(_one(data=[[1, 2, 3], [4]])), InvalidArgument, "ragged"),
    "ragged deeper": (_err(_one(data=[[1, 2], [[3], [4]]])), InvalidArgument, "ragged"),
    "data not a list": (_err(_one(data=5)), InvalidArgument, "'data' must be an array"),
    "string in FP32": (
        _err(_one(data=[1, 2, "3", 4])),
        InvalidArgument,
        "expected numbers for datatype FP32; input name: x",
    ),
    "null in FP32": (_err(_one(data=[1, 2, None, 4])), InvalidArgument, "expected numbers"),
    "object in FP32": (_err(_one(data=[1, 2, {}, 4])), InvalidArgument, "expected numbers"),
    "bools in FP32": (_err(_one(data=[True] * 4)), InvalidArgument, "expected numbers"),
    "FP32 overflow": (
        _err(_one(data=[1e39, 0, 0, 0])),
        InvalidArgument,
        "out of range for datatype FP32",
    ),
    "FP16 overflow": (
        _err(_one(datatype="FP16", data=[70000, 0, 0, 0])),
        InvalidArgument,
        "out of range for datatype FP16",
    ),
    "UINT8 300": (
        _err(_one(datatype="UINT8", data=[1, 300, 2, 3])),
        InvalidArgument,
        "value out of range for datatype UINT8 [0, 255]; input name: x",
    ),
    "UINT32 negative": (
        _err(_one(datatype="UINT32", data=[-1, 0, 0, 0])),
        InvalidArgument,
        "out of range",
    ),
    "INT8 -129": (_err(_one(datatype="INT8", data=[-129, 0, 0, 0])), InvalidArgument, "range"),
    "INT64 2**63": (_err(_one(datatype="INT64", data=[2**63, 0, 0, 0])), InvalidArgument, "range"),
    "UINT64 beyond 64 bits": (
        (
            b'{"inputs":[{"name":"x","datatype":"UINT64","shape":[4],'
            b'"data":[18446744073709551616,0,0,0]}]}',
            None,
        ),
        InvalidArgument,
        "expected integers",
    ),
    "float in INT32": (
        _err(_one(datatype="INT32", data=[1.5, 0, 0, 0])),
        InvalidArgument,
        "expected integers for datatype INT32",
    ),
    "string in INT32": (
        _err(_one(datatype="INT32", data=["1", 0, 0, 0])),
        InvalidArgument,
        "expected integers",
    ),
    "BOOL 2": (_err(_one(datatype="BOOL", data=[0, 1, 2, 1])), InvalidArgument, "true/false"),
    "BOOL string": (
        _err(_one(datatype="BOOL", data=["true", 1, 0, 1])),
        InvalidArgument,
        "datatype BOOL",
    ),
    "number in BYTES": (
        _err(_one(datatype="BYTES", data=["a", 1, "b", "c"])),
        InvalidArgument,
        "expected strings for datatype BYTES",
    ),
    "ragged BYTES": (
        _err(_one(datatype="BYTES", data=[["a", "b"], ["c"], ["d"]])),
        InvalidArgument,
        "ragged",
    ),
    "BYTES count": (
        _err(_one(datatype="BYTES", data=["a"])),
        InvalidArgument,
        "Expected: 4 values; Actual: 1 values",
    ),
    "data and binary_data_size": (
        _err(_one(data=[1, 2, 3, 4], parameters={"binary_data_size": 16}), b"\0" * 16),
        InvalidArgument,
        "Request contains values both in binary data and in content value",
    ),
    "no data, no binary": (_err(_one()), InvalidArgument, "neither 'data' nor"),
    "binary_data_size negative": (
        _err(_one(parameters={"binary_data_size": -1}), header=True),
        InvalidArgument,
        "binary_data_size parameter is invalid and cannot be parsed",
    ),
    "binary_data_size float": (
        _err(_one(parameters={"binary_data_size": 16.0}), b"\0" * 16),
        InvalidArgument,
        "binary_data_size parameter is invalid",
    ),
    "binary_data_size bool": (
        _err(_one(parameters={"binary_data_size": True}), b"\0"),
        InvalidArgument,
        "binary_data_size parameter is invalid",
    ),
    "binary_data_size null": (
        _err(_one(parameters={"binary_data_size": None}), b"\0"),
        InvalidArgument,
        "binary_data_size parameter is invalid",
    ),
    "binary_data_size bad string": (
        _err(_one(datatype="BYTES", parameters={"binary_data_size": "3,,1"}), b"\0" * 4),
        InvalidArgument,
        "binary_data_size parameter is invalid",
    ),
    "binary beyond body": (
        _err(_one(parameters={"binary_data_size": 16}), b"\0" * 12),
        InvalidArgument,
        "Received buffer size is smaller than binary_data_size parameter indicates"
        " - Expected: 16 bytes; Actual: 12 bytes left; input name: x",
    ),
    "second binary beyond body": (
        _err(
            {
                "inputs": [
                    {**_X4, "parameters": {"binary_data_size": 16}},
                    {**_X4, "name": "y", "parameters": {"binary_data_size": 16}},
                ]
            },
            b"\0" * 20,
        ),
        InvalidArgument,
        "Actual: 4 bytes left; input name: y",
    ),
    "binary without header": (
        _err(_one(parameters={"binary_data_size": 16}), b"\0" * 16, header=False),
        JsonInvalid,  # the blob is then parsed as part of the JSON
        "not valid json",
    ),
    "binary_data_size but no binary part": (
        _err(_one(parameters={"binary_data_size": 16})),
        InvalidArgument,
        f"no {HEADER_LENGTH} header was sent",
    ),
    "leftover bytes": (
        _err(_one(parameters={"binary_data_size": 16}), b"\0" * 17),
        InvalidArgument,
        "1 bytes follow the last input's binary data",
    ),
    "leftover bytes, no binary inputs": (
        _err(_one(data=[1, 2, 3, 4]), b"\0"),
        InvalidArgument,
        "follow the last input's binary data",
    ),
    "numeric size mismatch": (
        _err(_one(parameters={"binary_data_size": 12}), b"\0" * 12),
        InvalidArgument,
        "Invalid content size of tensor proto - Expected: 16 bytes; Actual: 12 bytes;"
        " input name: x",
    ),
    "omitted size, numeric body too short": (
        _err(_one(), b"\0" * 15),
        InvalidArgument,
        "Expected: 16 bytes; Actual: 15 bytes left",
    ),
    "omitted size, BYTES among several inputs": (
        _err({"inputs": [{**_X4, "data": [1, 2, 3, 4]}, _inp("s", "BYTES", [1])]}, b"abc"),
        InvalidArgument,
        "needs binary_data_size unless it is the only input; input name: s",
    ),
    "BYTES fewer bytes than prefixes": (
        _err(_one(datatype="BYTES", parameters={"binary_data_size": 12}), b"\0" * 12),
        InvalidArgument,
        "Expected: at least 16 bytes",
    ),
    "BYTES element overruns": (
        _err(
            {"inputs": [_binp("s", "BYTES", [2], 9)]},
            struct.pack("<I", 1) + b"a" + struct.pack("<I", 5) + b"\0" * 0,
        ),
        InvalidArgument,
        "BYTES element 1 declares 5 bytes but only 0 remain",
    ),
    "BYTES elements run out": (
        _err({"inputs": [_binp("s", "BYTES", [2], 9)]}, struct.pack("<I", 5) + b"abcde"),
        InvalidArgument,
        "BYTES data ends after element 1 of 2",
    ),
    "BYTES leftover inside blob": (
        _err({"inputs": [_binp("s", "BYTES", [1], 7)]}, blobs_of_bytes(b"ab") + b"z"),
        InvalidArgument,
        "1 bytes of binary_data_size remain after the 1 BYTES elements",
    ),
    "BYTES comma sizes vs shape": (
        _err({"inputs": [_binp("s", "BYTES", [3], "1,2")]}, b"abc"),
        InvalidArgument,
        "Expected: 3 values; Actual: 2 values (sizes in binary_data_size)",
    ),
    "parameters not an object": (
        _err({"inputs": [{**_X4, "data": [1, 2, 3, 4]}], "parameters": [1]}),
        InvalidArgument,
        "Could not parse request parameters",
    ),
    "input parameters not an object": (
        _err(_one(data=[1, 2, 3, 4], parameters=1)),
        InvalidArgument,
        "'parameters' of the input x must be an object",
    ),
    "binary_data_output not bool": (
        _err({"inputs": [{**_X4, "data": [1, 2, 3, 4]}], "parameters": {"binary_data_output": 1}}),
        InvalidArgument,
        "'binary_data_output' must be true or false",
    ),
    "id not a string": (
        _err({"id": 5, "inputs": [{**_X4, "data": [1, 2, 3, 4]}]}),
        InvalidArgument,
        "'id' must be a string",
    ),
    "outputs not a list": (
        _err({"inputs": [{**_X4, "data": [1, 2, 3, 4]}], "outputs": {"name": "y"}}),
        InvalidArgument,
        "Could not parse output content. - 'outputs' must be an array",
    ),
    "output without name": (
        _err({"inputs": [{**_X4, "data": [1, 2, 3, 4]}], "outputs": [{}]}),
        InvalidArgument,
        "with a 'name'",
    ),
    "output binary_data not bool": (
        _err(
            {
                "inputs": [{**_X4, "data": [1, 2, 3, 4]}],
                "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}],
            }
        ),
        InvalidArgument,
        "'binary_data' must be true or false; output name: y",
    ),
    "duplicate output": (
        _err({"inputs": [{**_X4, "data": [1, 2, 3, 4]}], "outputs": [{"name": "y"}] * 2}),
        InvalidArgument,
        "duplicate output name: y",
    ),
}


@pytest.mark.parametrize(("request_body", "error", "message"), ERRORS.values(), ids=list(ERRORS))
def test_decode_errors(
    request_body: tuple[bytes, int | str | None], error: type[Exception], message: str
) -> None:
    body, header_length = request_body
    with pytest.raises(error) as info:
        decode(body, header_length)
    assert type(info.value) is error
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        ("abc", '"abc"'),
        ("16 bytes", '"16 bytes"'),
        ("", '""'),
        (16.0, "16.0"),
        (16.5, "16.5"),
        (-1, "-1"),
        (-16, "-16"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ([16], "[16]"),
        ({"size": 16}, '{"size":16}'),
        ("x" * 100, '"' + "x" * 36 + "..."),
    ],
)
def test_binary_data_size_not_an_integer(size: Any, shown: str) -> None:
    """Anything but a non-negative JSON integer (or OVMS' comma-separated sizes string) is
    OVMS' REST_BINARY_DATA_SIZE_PARAMETER_INVALID: 400 with its message."""
    body, header_length = _err(_one(parameters={"binary_data_size": size}), b"\0" * 16)
    with pytest.raises(InvalidArgument) as info:
        decode(body, header_length)
    assert type(info.value) is InvalidArgument
    assert info.value.http_status == 400
    assert info.value.message == (
        "binary_data_size parameter is invalid and cannot be parsed - expected a non-negative"
        f" integer (or a string of comma-separated sizes), got {shown}; input name: x"
    )


def test_error_classes_carry_http_status() -> None:
    with pytest.raises(JsonInvalid) as not_json:
        decode(b"nope", None)
    assert not_json.value.http_status == 412
    with pytest.raises(InvalidArgument) as bad:
        decode(b"[]", None)
    assert bad.value.http_status == 400


# ---------------------------------------------------------------------------------------------
# encode: table of (request flags) -> which outputs are binary
# ---------------------------------------------------------------------------------------------

_OUT_X = Tensor("x", datatype("FP32"), arr("FP32", [1, 2, 3, 4], (2, 2)))
_OUT_Y = Tensor("y", datatype("BYTES"), arr("BYTES", [b"a", b"bc"]))


@dataclass(frozen=True)
class EncodeCase:
    outputs: list[RequestedOutput] | None
    parameters: dict[str, Any] = field(default_factory=dict)
    binary: tuple[str, ...] = ()


ENCODE_CASES: dict[str, EncodeCase] = {
    "no flags: all JSON": EncodeCase(None),
    "binary_data_output, no outputs: all binary": EncodeCase(
        None, {"binary_data_output": True}, ("x", "y")
    ),
    "binary_data_output false": EncodeCase(None, {"binary_data_output": False}),
    "per-output binary_data": EncodeCase(
        [RequestedOutput("y", {"binary_data": True})], binary=("y",)
    ),
    "per-output flag overrides request flag": EncodeCase(
        [RequestedOutput("y", {"binary_data": False})], {"binary_data_output": True}, ("x",)
    ),
    "listed without flag takes request flag": EncodeCase(
        [RequestedOutput("y"), RequestedOutput("x", {"binary_data": False})],
        {"binary_data_output": True},
        ("y",),
    ),
    "tritonclient default InferRequestedOutput": EncodeCase(
        [RequestedOutput("x", {"binary_data": True}), RequestedOutput("y", {"binary_data": True})],
        binary=("x", "y"),
    ),
}


@pytest.mark.parametrize("case", list(ENCODE_CASES.values()), ids=list(ENCODE_CASES))
def test_encode_cases(case: EncodeCase) -> None:
    request = InferRequest("m", None, [], outputs=case.outputs, parameters=case.parameters)
    response = InferResponse("m", 2, [_OUT_X, _OUT_Y])
    body, header_length = encode_infer_response(response, request)

    if case.binary:
        assert header_length is not None
        header = orjson.loads(body[:header_length])
    else:
        assert header_length is None
        header = orjson.loads(body)
    assert header["model_name"] == "m"
    assert header["model_version"] == "2"
    assert "id" not in header
    entries = {e["name"]: e for e in header["outputs"]}
    assert list(entries) == ["x", "y"]
    assert entries["x"]["shape"] == [2, 2]
    assert entries["x"]["datatype"] == "FP32"
    assert entries["y"]["datatype"] == "BYTES"
    for name, entry in entries.items():
        if name in case.binary:
            assert "data" not in entry
            assert set(entry["parameters"]) == {"binary_data_size"}
        else:
            assert "parameters" not in entry
    if "x" not in case.binary:
        assert entries["x"]["data"] == [1.0, 2.0, 3.0, 4.0]  # flat, row-major
    if "y" not in case.binary:
        assert entries["y"]["data"] == ["a", "bc"]
    expected_blob = b""
    for name in ("x", "y"):
        if name in case.binary:
            expected_blob += _OUT_X.data.tobytes() if name == "x" else blobs_of_bytes(b"a", b"bc")
            assert entries[name]["parameters"]["binary_data_size"] == (16 if name == "x" else 11)
    assert body[header_length or len(body) :] == expected_blob

    result = httpclient.InferResult.from_response_body(body, header_length=header_length)
    assert_tensor_equal(result.as_numpy("x"), _OUT_X.data)
    y = result.as_numpy("y")
    if "y" in case.binary:
        assert_tensor_equal(y, _OUT_Y.data)
    else:  # tritonclient leaves JSON strings as str
        assert y.tolist() == ["a", "bc"]


def test_encode_id_and_parameters() -> None:
    request = InferRequest("m", 1, [], id="req-7")
    body, _ = encode_infer_response(InferResponse("m", 1, [_OUT_X]), request)
    assert orjson.loads(body)["id"] == "req-7"
    response = InferResponse("m", 1, [_OUT_X], id="resp", parameters={"k": "v"})
    doc = orjson.loads(encode_infer_response(response, request)[0])
    assert list(doc) == ["model_name", "model_version", "id", "parameters", "outputs"]
    assert (doc["id"], doc["parameters"]) == ("resp", {"k": "v"})


def test_encode_non_utf8_bytes_as_json_asks_for_binary() -> None:
    response = InferResponse("m", 1, [Tensor("s", datatype("BYTES"), arr("BYTES", [b"\xff"]))])
    with pytest.raises(InvalidArgument, match="binary_data"):
        encode_infer_response(response, InferRequest("m", None, []))
    binary = InferRequest("m", None, [], parameters={"binary_data_output": True})
    body, header_length = encode_infer_response(response, binary)
    assert header_length is not None
    assert body[header_length:] == blobs_of_bytes(b"\xff")


def test_encode_odd_arrays() -> None:
    """Non-contiguous, big-endian, str and numpy-bytes outputs are normalised."""
    transposed = np.arange(6, dtype="<i4").reshape(2, 3).T
    big_endian = np.array([1.5, -2.0], dtype=">f8")
    strings = np.array(["h\u00e9", "x"])
    fixed = np.array([b"ab", b"c"], dtype="S2")
    outputs = [
        Tensor("t", datatype("INT32"), transposed),
        Tensor("b", datatype("FP64"), big_endian),
        Tensor("u", datatype("BYTES"), strings),
        Tensor("f", datatype("BYTES"), fixed),
    ]
    for binary in (False, True):
        request = InferRequest("m", None, [], parameters={"binary_data_output": binary})
        body, header_length = encode_infer_response(InferResponse("m", 1, outputs), request)
        result = httpclient.InferResult.from_response_body(body, header_length=header_length)
        assert_tensor_equal(result.as_numpy("t"), np.ascontiguousarray(transposed))
        assert_tensor_equal(result.as_numpy("b"), big_endian.astype("<f8"))
        expected_u = ["h\u00e9".encode(), b"x"] if binary else ["h\u00e9", "x"]
        assert result.as_numpy("u").tolist() == expected_u
        assert result.as_numpy("f").tolist() == ([b"ab", b"c"] if binary else ["ab", "c"])


def test_encode_rejects_non_bytes_elements() -> None:
    bad = np.array([1, b"x"], dtype=object)
    response = InferResponse("m", 1, [Tensor("s", datatype("BYTES"), bad)])
    with pytest.raises(OvtrioError, match="holds a int"):
        encode_infer_response(response, InferRequest("m", None, []))


def test_encode_error() -> None:
    assert orjson.loads(encode_error('bad "thing"')) == {"error": 'bad "thing"'}


# ---------------------------------------------------------------------------------------------
# every datatype, both forms, both directions
# ---------------------------------------------------------------------------------------------


def _response_as_request(body: bytes, header_length: int | None) -> tuple[bytes, int | None]:
    """A response body re-labelled as a request body: same tensor encoding, same blob order."""
    json_end = len(body) if header_length is None else header_length
    doc = orjson.loads(body[:json_end])
    header = orjson.dumps({"inputs": doc["outputs"]})
    new_length = None if header_length is None else len(header)
    return header + body[json_end:], new_length


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("kserve", ALL_TYPES)
def test_every_datatype_round_trips_through_our_codec(kserve: str, binary: bool) -> None:
    sample = SAMPLES[kserve]
    scalar = sample.reshape(-1)[:1].reshape(())
    empty = sample.reshape(-1)[:0].reshape(0, 2)
    outputs = [Tensor(f"o{i}", datatype(kserve), a) for i, a in enumerate((sample, scalar, empty))]
    request = InferRequest("m", None, [], parameters={"binary_data_output": binary})
    body, header_length = encode_infer_response(InferResponse("m", 1, outputs), request)
    assert (header_length is not None) is binary

    decoded = decode(*_response_as_request(body, header_length))
    for tensor, original in zip(decoded.inputs, outputs, strict=True):
        assert tensor.datatype.kserve == kserve
        assert_tensor_equal(tensor.data, original.data)


def _triton_request(
    inputs: list[httpclient.InferInput], outputs: list[httpclient.InferRequestedOutput] | None
) -> tuple[bytes, int | None]:
    body, json_size = _get_inference_request(
        inputs=inputs,
        request_id="abc",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters=None,
    )
    return body, json_size


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("kserve", ALL_TYPES)
def test_tritonclient_requests_decode(kserve: str, binary: bool) -> None:
    sample = SAMPLES[kserve]
    first = httpclient.InferInput("first", list(sample.shape), kserve)
    first.set_data_from_numpy(sample, binary_data=binary)
    # a second input in the other form, to exercise blob ordering around JSON inputs
    other = SAMPLES["INT16"]
    second = httpclient.InferInput("second", list(other.shape), "INT16")
    second.set_data_from_numpy(other, binary_data=not binary)
    body, json_size = _triton_request([first, second], None)

    request = decode(body, json_size)
    assert request.id == "abc"
    assert request.parameters == {"binary_data_output": True}
    assert request.outputs is None
    assert [t.name for t in request.inputs] == ["first", "second"]
    assert_tensor_equal(request.inputs[0].data, sample)
    assert_tensor_equal(request.inputs[1].data, other)


def test_tritonclient_binary_only_bytes_and_requested_outputs() -> None:
    raw = arr("BYTES", [b"\xff\xfe", b"", b"\x00" * 5])
    tensor = httpclient.InferInput("s", [3], "BYTES")
    tensor.set_data_from_numpy(raw)
    outputs = [
        httpclient.InferRequestedOutput("y"),
        httpclient.InferRequestedOutput("z", binary_data=False),
    ]
    request = decode(*_triton_request([tensor], outputs))
    assert_tensor_equal(request.inputs[0].data, raw)
    assert request.outputs == [
        RequestedOutput("y", {"binary_data": True}),
        RequestedOutput("z", {"binary_data": False}),
    ]
    assert request.parameters == {}

    response = InferResponse(
        "m",
        1,
        [
            Tensor("y", datatype("BYTES"), raw),
            Tensor("z", datatype("FP16"), SAMPLES["FP16"]),
        ],
    )
    body, header_length = encode_infer_response(response, request)
    result = httpclient.InferResult.from_response_body(body, header_length=header_length)
    assert_tensor_equal(result.as_numpy("y"), raw)
    assert_tensor_equal(result.as_numpy("z"), SAMPLES["FP16"])
    assert "data" in result.get_output("z")
    assert "data" not in result.get_output("y")


def test_tritonclient_request_with_empty_tensor() -> None:
    empty = np.zeros((0, 4), dtype=np.float32)
    tensor = httpclient.InferInput("e", [0, 4], "FP32")
    tensor.set_data_from_numpy(empty)
    body, json_size = _triton_request([tensor], None)
    assert json_size is not None
    assert_tensor_equal(decode(body, json_size).inputs[0].data, empty)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("kserve", ALL_TYPES)
def test_tritonclient_parses_our_responses(kserve: str, binary: bool) -> None:
    sample = SAMPLES[kserve]
    scalar = sample.reshape(-1)[-1:].reshape(())
    response = InferResponse(
        "m",
        4,
        [Tensor("out", datatype(kserve), sample), Tensor("scalar", datatype(kserve), scalar)],
        id="abc",
    )
    request = InferRequest("m", None, [], parameters={"binary_data_output": binary})
    body, header_length = encode_infer_response(response, request)
    result = httpclient.InferResult.from_response_body(body, header_length=header_length)
    assert result.get_response()["model_version"] == "4"
    assert result.get_response()["id"] == "abc"
    for name, expected in (("out", sample), ("scalar", scalar)):
        got = result.as_numpy(name)
        if kserve == "BYTES" and not binary:  # tritonclient keeps JSON strings as str
            assert got.tolist() == np.vectorize(bytes.decode, otypes=[object])(expected).tolist()
        else:
            assert_tensor_equal(got, expected)


def test_non_ascii_names_and_strings_both_ways() -> None:
    """The JSON header length is counted in bytes (orjson writes raw UTF-8)."""
    text = httpclient.InferInput("\u00e9", [1], "BYTES")
    text.set_data_from_numpy(np.array(["\u00fc"], dtype=object), binary_data=False)
    raw = httpclient.InferInput("x", [1], "FP32")
    raw.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    request = decode(*_triton_request([text, raw], None))
    assert [t.name for t in request.inputs] == ["\u00e9", "x"]
    assert request.inputs[0].data.tolist() == ["\u00fc".encode()]

    outputs = [Tensor("\u00e9", datatype("BYTES"), arr("BYTES", ["\u00fc"])), request.inputs[1]]
    request.outputs = [RequestedOutput("\u00e9", {"binary_data": False})]
    body, header_length = encode_infer_response(InferResponse("m", 1, outputs), request)
    assert header_length is not None
    assert "\u00fc".encode() in body[:header_length]
    result = httpclient.InferResult.from_response_body(body, header_length=header_length)
    assert result.as_numpy("\u00e9").tolist() == ["\u00fc"]
    assert_tensor_equal(result.as_numpy("x"), np.array([1.0], dtype=np.float32))
