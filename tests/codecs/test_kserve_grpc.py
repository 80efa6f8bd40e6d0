"""KServe gRPC codec: decode tables through the wire classes tritonclient ships (protobuf)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from ovtrio.codecs import kserve_grpc
from ovtrio.errors import InvalidArgument
from ovtrio.grpc.kserve import InferRequestWire
from ovtrio.tensors import InferResponse, Tensor, datatype

VARINT_CASES = [
    ("INT32", "int_contents", [0, 1, -1, 2**31 - 1, -(2**31)]),
    ("INT8", "int_contents", [-128, 127, 0]),
    ("INT64", "int64_contents", [0, -(2**63), 2**63 - 1, 300]),
    ("UINT32", "uint_contents", [0, 2**32 - 1, 128]),
    ("UINT64", "uint64_contents", [0, 2**64 - 1, 2**63 + 5]),
    ("BOOL", "bool_contents", [True, False, True]),
    ("FP32", "fp32_contents", [0.5, -1.25, 3e38]),
    ("FP64", "fp64_contents", [0.1, -1e300]),
    ("BYTES", "bytes_contents", [b"", b"\x00\xff", b"abc"]),
]


def _request(dt: str, field: str, values: list, shape: list[int] | None = None) -> bytes:
    req = service_pb2.ModelInferRequest(model_name="m", model_version="3", id="x")
    t = req.inputs.add(name="in", datatype=dt, shape=shape or [len(values)])
    getattr(t.contents, field).extend(values)
    req.outputs.add(name="out")
    req.parameters["flag"].bool_param = True
    return req.SerializeToString()


@pytest.mark.parametrize(("dt", "field", "values"), VARINT_CASES, ids=[c[0] for c in VARINT_CASES])
def test_typed_contents_decode(dt: str, field: str, values: list) -> None:
    msg = InferRequestWire.FromString(_request(dt, field, values))
    req = kserve_grpc.decode_infer_request(msg)
    assert (req.model_name, req.model_version, req.id) == ("m", 3, "x")
    assert req.parameters == {"flag": True}
    assert [o.name for o in req.outputs or []] == ["out"]
    arr = req.inputs[0].data
    expected = np.array(values, dtype=datatype(dt).numpy)
    assert arr.dtype == expected.dtype
    np.testing.assert_array_equal(arr, expected)


def test_raw_contents_and_bytes_prefixes() -> None:
    req = service_pb2.ModelInferRequest(model_name="m")
    req.inputs.add(name="a", datatype="FP16", shape=[2])
    req.inputs.add(name="s", datatype="BYTES", shape=[2])
    req.raw_input_contents.append(np.array([1.5, -2], "<f2").tobytes())
    req.raw_input_contents.append(struct.pack("<I", 2) + b"hi" + struct.pack("<I", 0))
    out = kserve_grpc.decode_infer_request(InferRequestWire.FromString(req.SerializeToString()))
    np.testing.assert_array_equal(out.inputs[0].data, np.array([1.5, -2], np.float16))
    assert list(out.inputs[1].data) == [b"hi", b""]


ERRORS = [
    ("count", "FP32", "fp32_contents", [1.0], [2], "Expected: 2 values; Actual: 1"),
    ("range", "INT8", "int_contents", [300], [1], "out of range"),
    ("fp16 typed", "FP16", "int_contents", [1], [1], "raw_input_contents"),
    ("wrong field", "FP32", "int_contents", [1], [1], "expects fp32_contents"),
    ("negative dim", "FP32", "fp32_contents", [1.0], [-1], "negative"),
]


@pytest.mark.parametrize(
    ("dt", "field", "values", "shape", "msg"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_decode_errors(dt: str, field: str, values: list, shape: list[int], msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        kserve_grpc.decode_infer_request(
            InferRequestWire.FromString(_request(dt, field, values, shape))
        )


def test_unpacked_scalars_fall_back_to_typed_parse() -> None:
    def key(f: int, wt: int) -> bytes:
        return bytes([(f << 3) | wt])

    def ld(f: int, b: bytes) -> bytes:
        return key(f, 2) + bytes([len(b)]) + b

    contents = b"".join(key(6, 5) + struct.pack("<f", x) for x in [1.5, 2.5])
    tensor = (
        ld(1, b"b") + ld(2, b"FP32") + key(3, 0) + b"\x01" + key(3, 0) + b"\x02" + ld(5, contents)
    )
    wire = ld(1, b"dummy") + ld(5, tensor)
    assert list(
        service_pb2.ModelInferRequest.FromString(wire).inputs[0].contents.fp32_contents
    ) == [1.5, 2.5]
    req = kserve_grpc.decode_infer_request(InferRequestWire.FromString(wire))
    np.testing.assert_array_equal(req.inputs[0].data, [[1.5, 2.5]])


def test_encode_response_always_raw() -> None:
    resp = InferResponse(
        "m",
        2,
        [
            Tensor("a", datatype("FP32"), np.ones((1, 2), np.float32)),
            Tensor("s", datatype("BYTES"), np.array([b"xy"], dtype=object)),
        ],
        id="r",
    )
    msg = service_pb2.ModelInferResponse.FromString(bytes(kserve_grpc.encode_infer_response(resp)))
    assert (msg.model_name, msg.model_version, msg.id) == ("m", "2", "r")
    assert [o.name for o in msg.outputs] == ["a", "s"]
    assert list(msg.outputs[0].shape) == [1, 2]
    assert msg.raw_output_contents[0] == np.ones(2, "<f4").tobytes()
    assert msg.raw_output_contents[1] == struct.pack("<I", 2) + b"xy"


@pytest.mark.parametrize(("text", "expected"), [("", None), ("0", 0), ("12", 12)])
def test_parse_version(text: str, expected: int | None) -> None:
    assert kserve_grpc.parse_version(text) == expected


@pytest.mark.parametrize("text", ["latest", "-1", "1.0", "١"])
def test_parse_version_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid model version format"):
        kserve_grpc.parse_version(text)
