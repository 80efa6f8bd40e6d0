"""KServe v2 end to end: a real server process, tritonclient grpc/http, raw HTTP, raw gRPC."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests import models
from tests.e2e.conftest import Server, binary_infer_request

pytestmark = pytest.mark.e2e

NUMERIC = [dt for dt in models.OV_TYPES if dt != "BYTES"]
NP = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def sample(dt: str, rows: int = 2) -> np.ndarray:
    if dt == "BYTES":
        return np.array(
            [[b"a", b"\x00\xffz", b""], [b"hello", b"x" * 300, b"y"]][:rows], dtype=object
        )
    if dt == "BOOL":
        return (np.arange(rows * 3).reshape(rows, 3) % 2).astype(np.bool_)
    info_max = 100 if dt in ("INT8", "UINT8") else 1000
    arr = np.arange(rows * 3).reshape(rows, 3) * 7 % info_max
    if dt.startswith("INT"):
        arr = arr - 3
    if dt.startswith("FP"):
        arr = arr / 4.0
    return arr.astype(NP[dt])


@pytest.fixture(scope="module")
def gclient(kserve_server: Server) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(kserve_server.grpc_url)


@pytest.fixture(scope="module")
def hclient(kserve_server: Server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(kserve_server.rest_url)


@pytest.fixture(scope="module")
def stub(kserve_server: Server) -> service_pb2_grpc.GRPCInferenceServiceStub:
    channel = grpc.insecure_channel(kserve_server.grpc_url)
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


# -- health and metadata ----------------------------------------------------------------------


def test_health_grpc(gclient: grpcclient.InferenceServerClient) -> None:
    assert gclient.is_server_live()
    assert gclient.is_server_ready()
    assert gclient.is_model_ready("dummy")
    assert gclient.is_model_ready("versioned", "2")
    assert not gclient.is_model_ready("versioned", "4")  # failed to load: exists, not ready


def test_health_http(hclient: httpclient.InferenceServerClient, kserve_server: Server) -> None:
    assert hclient.is_server_live()
    assert hclient.is_server_ready()
    assert hclient.is_model_ready("dummy")
    assert not hclient.is_model_ready("nope")
    assert requests.get(f"{kserve_server.http}/v2/models/dummy/ready").status_code == 200
    assert requests.get(f"{kserve_server.http}/v2/models/nope/ready").status_code == 404
    assert (
        requests.get(f"{kserve_server.http}/v2/models/versioned/versions/4/ready").status_code
        == 404
    )


def test_server_metadata(
    gclient: grpcclient.InferenceServerClient, hclient: httpclient.InferenceServerClient
) -> None:
    g = gclient.get_server_metadata()
    h = hclient.get_server_metadata()
    assert g.name == h["name"] == "ovtrio"
    assert g.version == h["version"]
    assert "binary_tensor_data" in h["extensions"]
    assert list(g.extensions) == h["extensions"]


def test_model_metadata(
    gclient: grpcclient.InferenceServerClient, hclient: httpclient.InferenceServerClient
) -> None:
    h = hclient.get_model_metadata("dummy")
    assert h == {
        "name": "dummy",
        "versions": ["1"],
        "platform": "OpenVINO",
        "inputs": [{"name": "b", "datatype": "FP32", "shape": [-1, 10]}],
        "outputs": [{"name": "a", "datatype": "FP32", "shape": [-1, 10]}],
    }
    g = gclient.get_model_metadata("versioned", as_json=True)
    assert g["versions"] == ["1", "2", "3"]
    assert g["inputs"][0]["shape"] == ["-1", "10"]  # int64 as strings in protobuf JSON
    assert hclient.get_model_metadata("reshaped")["inputs"][0]["shape"] == [2, 10]
    assert hclient.get_model_metadata("ranged")["inputs"][0]["shape"] == [-1, 10]


# -- inference --------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [*NUMERIC, "BYTES"])
def test_every_datatype_grpc(gclient: grpcclient.InferenceServerClient, dt: str) -> None:
    data = sample(dt)
    inp = grpcclient.InferInput("in", list(data.shape), dt)
    inp.set_data_from_numpy(data)
    result = gclient.infer(f"id_{dt.lower()}", [inp])
    out = result.as_numpy("out")
    assert out.shape == data.shape
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("dt", [*NUMERIC, "BYTES"])
def test_every_datatype_http(
    hclient: httpclient.InferenceServerClient, dt: str, binary: bool
) -> None:
    data = sample(dt)
    if dt == "BYTES" and not binary:
        data = np.array([[b"a", b"bc", b""], [b"hello", b"x", b"y"]], dtype=object)  # utf-8 only
    inp = httpclient.InferInput("in", list(data.shape), dt)
    inp.set_data_from_numpy(data, binary_data=binary)
    out_req = httpclient.InferRequestedOutput("out", binary_data=binary)
    result = hclient.infer(f"id_{dt.lower()}", [inp], outputs=[out_req])
    out = result.as_numpy("out")
    if dt == "BYTES" and not binary:  # tritonclient gives JSON strings back as str
        out = np.vectorize(lambda v: v.encode(), otypes=[object])(out)
    np.testing.assert_array_equal(out, data)


def test_fp16_both_ways_binary(hclient: httpclient.InferenceServerClient) -> None:
    data = np.array([[0.5, -2.25, 65504.0]], dtype=np.float16)
    inp = httpclient.InferInput("in", [1, 3], "FP16")
    inp.set_data_from_numpy(data)  # binary by default
    result = hclient.infer("id_fp16", [inp])
    out = result.as_numpy("out")
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, data)


def test_version_routing(
    gclient: grpcclient.InferenceServerClient, hclient: httpclient.InferenceServerClient
) -> None:
    data = np.zeros((1, 10), np.float32)
    for version, expected in (("1", 1.0), ("2", 2.0), ("3", 3.0), ("", 3.0)):
        inp = grpcclient.InferInput("b", [1, 10], "FP32")
        inp.set_data_from_numpy(data)
        r = gclient.infer("versioned", [inp], model_version=version)
        assert r.as_numpy("a")[0, 0] == expected
        assert r.get_response().model_version == (version or "3")
        hin = httpclient.InferInput("b", [1, 10], "FP32")
        hin.set_data_from_numpy(data)
        hr = hclient.infer("versioned", [hin], model_version=version)
        assert hr.as_numpy("a")[0, 0] == expected


def test_failed_version_falls_back(
    gclient: grpcclient.InferenceServerClient, kserve_server: Server
) -> None:
    data = np.zeros((1, 10), np.float32)
    inp = grpcclient.InferInput("b", [1, 10], "FP32")
    inp.set_data_from_numpy(data)
    assert gclient.infer("fallback", [inp]).as_numpy("a")[0, 0] == 10.0
    assert "fallback version 2 failed to load" in kserve_server.log()


def test_request_id_and_outputs_filter(
    gclient: grpcclient.InferenceServerClient, hclient: httpclient.InferenceServerClient
) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y = np.ones((2, 4), np.float32)
    for client, mod in ((gclient, grpcclient), (hclient, httpclient)):
        ins = [mod.InferInput("x", [2, 4], "FP32"), mod.InferInput("y", [2, 4], "FP32")]
        ins[0].set_data_from_numpy(x)
        ins[1].set_data_from_numpy(y)
        r = client.infer(
            "multi", ins, request_id="req-42", outputs=[mod.InferRequestedOutput("diff")]
        )
        np.testing.assert_array_equal(r.as_numpy("diff"), x - y)
        assert r.as_numpy("sum") is None
        resp = r.get_response()
        assert (resp.id if mod is grpcclient else resp["id"]) == "req-42"
        full = client.infer("multi", ins)
        np.testing.assert_array_equal(full.as_numpy("sum"), x + y)


def test_seed_numpy_example_grpc(gclient: grpcclient.InferenceServerClient) -> None:
    data = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]], dtype=np.float32)
    infer_input = grpcclient.InferInput("b", data.shape, "FP32")
    infer_input.set_data_from_numpy(data)
    results = gclient.infer("dummy", [infer_input])
    np.testing.assert_array_equal(results.as_numpy("a"), data + 1)


def test_seed_curl_json(kserve_server: Server) -> None:
    body = {
        "inputs": [
            {
                "name": "b",
                "shape": [1, 10],
                "datatype": "FP32",
                "data": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            }
        ]
    }
    r = requests.post(f"{kserve_server.http}/v2/models/dummy/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "dummy" and out["model_version"] == "1"
    assert out["outputs"][0]["name"] == "a"
    assert out["outputs"][0]["shape"] == [1, 10]
    assert out["outputs"][0]["data"] == [float(i + 1) for i in range(1, 11)]
    nested = {
        "inputs": [
            {
                "name": "b",
                "shape": [2, 10],
                "datatype": "FP32",
                "data": [list(range(10)), list(range(10, 20))],
            }
        ]
    }
    r = requests.post(f"{kserve_server.http}/v2/models/dummy/versions/0/infer", json=nested)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"][:2] == [1.0, 2.0]


def test_raw_http_binary_extension(kserve_server: Server) -> None:
    data = np.arange(20, dtype=np.float32).reshape(2, 10)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "b",
                    "shape": [2, 10],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": data.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    r = requests.post(
        f"{kserve_server.http}/v2/models/dummy/infer",
        data=header + data.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 200, r.text
    json_len = int(r.headers["Inference-Header-Content-Length"])
    meta = json.loads(r.content[:json_len])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == data.nbytes
    out = np.frombuffer(r.content[json_len:], "<f4").reshape(2, 10)
    np.testing.assert_array_equal(out, data + 1)


def _read_one_answer(sock: socket.socket, buffered: bytes) -> tuple[bytes, bytes, bytes]:
    """One HTTP/1.1 answer with a content-length from ``sock``: (head, body, what follows)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        data += sock.recv(1 << 16)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(x for x in lines if x.lower().startswith(b"content-length")).split(b":")[1])
    while len(rest) < length:
        rest += sock.recv(1 << 20)
    return head, rest[:length], rest[length:]


def test_a_large_answer_to_a_stalled_reader_arrives_whole(kserve_server: Server) -> None:
    """An answer larger than the socket's buffers, to a client that stops reading: the part
    the kernel does not take at once waits for room, another client is answered meanwhile,
    and the same connection's next pipelined request is answered after it, in order."""
    big = np.arange(600_000, dtype=np.float32).reshape(60_000, 10)  # JSON answer: ~6 MB
    small = np.ones((1, 10), np.float32)
    header = json.dumps(  # binary input, JSON output
        {
            "inputs": [
                {
                    "name": "b",
                    "shape": list(big.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": big.nbytes},
                }
            ]
        }
    ).encode()
    big_request = (
        (
            "POST /v2/models/dummy/infer HTTP/1.1\r\nHost: test\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\n"
            f"Content-Length: {len(header) + big.nbytes}\r\n\r\n"
        ).encode()
        + header
        + big.tobytes()
    )
    with socket.create_connection(("127.0.0.1", kserve_server.rest_port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.sendall(big_request + binary_infer_request("b", small))
        time.sleep(1.0)  # not reading: the server's write cannot finish
        r = requests.get(f"{kserve_server.http}/v2/health/ready", timeout=10)
        assert r.status_code == 200
        sock.settimeout(30)
        head, answer, rest = _read_one_answer(sock, b"")
        assert head.startswith(b"HTTP/1.1 200"), head
        out = json.loads(answer)["outputs"][0]
        np.testing.assert_array_equal(np.array(out["data"], np.float32), big.ravel() + 1)
        head, answer, _ = _read_one_answer(sock, rest)
        assert head.startswith(b"HTTP/1.1 200"), head
        lines = head.split(b"\r\n")
        json_length = int(
            next(x for x in lines if x.lower().startswith(b"inference-h")).split(b":")[1]
        )
        np.testing.assert_array_equal(np.frombuffer(answer[json_length:], "<f4"), small.ravel() + 1)


def test_raw_http_bytes_binary(kserve_server: Server) -> None:
    items = [b"abc", b"", b"\x00\x01", b"zz", b"q", b"r"]
    blob = b"".join(struct.pack("<I", len(i)) + i for i in items)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "in",
                    "shape": [2, 3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "outputs": [{"name": "out", "parameters": {"binary_data": True}}],
        }
    ).encode()
    r = requests.post(
        f"{kserve_server.http}/v2/models/id_bytes/infer",
        data=header + blob,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 200, r.text
    json_len = int(r.headers["Inference-Header-Content-Length"])
    assert r.content[json_len:] == blob


# -- raw gRPC with typed contents (what the C++/Java/Go examples send) ------------------------


def _typed_request(
    model: str, name: str, dt: str, shape: list[int], field: str, values: list
) -> service_pb2.ModelInferRequest:
    req = service_pb2.ModelInferRequest(model_name=model)
    tensor = req.inputs.add(name=name, datatype=dt, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return req


@pytest.mark.parametrize(
    ("dt", "field"),
    [
        ("BOOL", "bool_contents"),
        ("INT8", "int_contents"),
        ("INT16", "int_contents"),
        ("INT32", "int_contents"),
        ("INT64", "int64_contents"),
        ("UINT8", "uint_contents"),
        ("UINT16", "uint_contents"),
        ("UINT32", "uint_contents"),
        ("UINT64", "uint64_contents"),
        ("FP32", "fp32_contents"),
        ("FP64", "fp64_contents"),
        ("BYTES", "bytes_contents"),
    ],
)
def test_typed_contents(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, dt: str, field: str
) -> None:
    data = sample(dt)
    # Multi-byte varints; OpenVINO's CPU plugin computes 64-bit integers in 32 bits, so the
    # values stay in that range here (the codec's own tests cover the full 64-bit range).
    if dt == "UINT64":
        data[0, 0] = np.uint64(2**31 - 5)
    if dt == "INT64":
        data[0, 0] = -(2**30)
    values = [bytes(v) for v in data.reshape(-1)] if dt == "BYTES" else data.reshape(-1).tolist()
    req = _typed_request(f"id_{dt.lower()}", "in", dt, list(data.shape), field, values)
    resp = stub.ModelInfer(req)
    assert resp.outputs[0].datatype == dt
    raw = resp.raw_output_contents[0]
    if dt == "BYTES":
        expected = b"".join(struct.pack("<I", len(v)) + v for v in values)
        assert raw == expected
    else:
        out = np.frombuffer(raw, np.dtype(NP[dt]).newbyteorder("<")).reshape(data.shape)
        np.testing.assert_array_equal(out, data)


def test_typed_fp32_image_sized(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    data = np.random.default_rng(0).random((150, 10), dtype=np.float32)
    req = _typed_request(
        "dummy", "b", "FP32", [150, 10], "fp32_contents", data.reshape(-1).tolist()
    )
    resp = stub.ModelInfer(req)
    out = np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(150, 10)
    np.testing.assert_allclose(out, data + 1, rtol=1e-6)


# -- errors (reference 1.12) ------------------------------------------------------------------


def _grpc_error(stub, req) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(req)
    return info.value


def _f32_input(
    req: service_pb2.ModelInferRequest, name: str, shape: list[int], dt: str = "FP32"
) -> None:
    t = req.inputs.add(name=name, datatype=dt, shape=shape)
    t.contents.fp32_contents.extend([0.0] * int(np.prod(shape)))


ERROR_CASES = [
    # (id, model, version, inputs [(name, shape, dtype)], grpc code, http status, message)
    (
        "unknown model",
        "nope",
        "",
        [("b", [1, 10], "FP32")],
        grpc.StatusCode.NOT_FOUND,
        404,
        "Model with requested name is not found",
    ),
    (
        "unknown version",
        "dummy",
        "7",
        [("b", [1, 10], "FP32")],
        grpc.StatusCode.NOT_FOUND,
        404,
        "Model with requested version is not found",
    ),
    (
        "failed version",
        "versioned",
        "4",
        [("b", [1, 10], "FP32")],
        grpc.StatusCode.UNAVAILABLE,
        404,
        "Model with requested version is not loaded yet",
    ),
    (
        "too many inputs",
        "dummy",
        "",
        [("b", [1, 10], "FP32"), ("c", [1, 10], "FP32")],
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
        "Invalid number of inputs - Expected: 1; Actual: 2",
    ),
    (
        "wrong name",
        "dummy",
        "",
        [("x", [1, 10], "FP32")],
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
        "Missing input with specific name - Required input: b",
    ),
    (
        "wrong rank",
        "dummy",
        "",
        [("b", [10], "FP32")],
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
        "Invalid number of shape dimensions - Expected: (-1,10); Actual: (10); input name: b",
    ),
    (
        "wrong shape",
        "dummy",
        "",
        [("b", [1, 11], "FP32")],
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
        "Invalid input shape - Expected: (-1,10); Actual: (1,11); input name: b",
    ),
    (
        "wrong batch",
        "static",
        "",
        [("b", [2, 10], "FP32")],
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
        "Invalid input batch size - Expected: 1; Actual: 2; input name: b",
    ),
    (
        "batch out of range",
        "ranged",
        "",
        [("b", [5, 10], "FP32")],
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
        "Invalid input batch size - Expected: 1:4; Actual: 5; input name: b",
    ),
    (
        "wrong precision",
        "dummy",
        "",
        [("b", [1, 10], "FP64")],
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
        "Invalid input precision - Expected: FP32; Actual: FP64; input name: b",
    ),
]


@pytest.mark.parametrize(
    ("model", "version", "inputs", "code", "status", "message"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_errors_both_transports(
    stub, kserve_server: Server, model, version, inputs, code, status, message
) -> None:
    req = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, shape, dt in inputs:
        t = req.inputs.add(name=name, datatype=dt, shape=shape)
        n = int(np.prod(shape))
        (t.contents.fp64_contents if dt == "FP64" else t.contents.fp32_contents).extend([0.0] * n)
    err = _grpc_error(stub, req)
    assert err.code() == code
    assert err.details() == message
    body = {
        "inputs": [
            {"name": n, "shape": s, "datatype": d, "data": [0.0] * int(np.prod(s))}
            for n, s, d in inputs
        ]
    }
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    r = requests.post(kserve_server.http + path, json=body)
    assert r.status_code == status
    assert r.json() == {"error": message}


def test_grpc_content_errors(stub) -> None:
    req = service_pb2.ModelInferRequest(model_name="dummy")
    req.inputs.add(name="b", datatype="FP32", shape=[1, 10])
    req.raw_input_contents.append(b"\x00" * 12)
    err = _grpc_error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 12 bytes; input name: b"
    )
    req = service_pb2.ModelInferRequest(model_name="dummy", model_version="latest")
    _f32_input(req, "b", [1, 10])
    err = _grpc_error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "invalid model version format in request"
    req = service_pb2.ModelInferRequest(model_name="dummy")
    _f32_input(req, "b", [1, 10])
    req.raw_input_contents.append(b"\x00" * 40)
    err = _grpc_error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "both" in err.details()
    req = service_pb2.ModelInferRequest(model_name="dummy")
    req.inputs.add(name="b", datatype="FLOAT", shape=[1, 10])
    err = _grpc_error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_http_errors(kserve_server: Server) -> None:
    url = f"{kserve_server.http}/v2/models/dummy/infer"
    r = requests.post(url, data=b"{not json")
    assert r.status_code == 412 and r.json()["error"].startswith("The file is not valid json")
    r = requests.post(url, data=b"[1, 2]")
    assert r.status_code == 400 and r.json() == {"error": "Request body should be JSON object"}
    r = requests.get(f"{kserve_server.http}/v2/nothing/here")
    assert r.status_code == 400 and r.json() == {"error": "Invalid request URL"}
    r = requests.delete(f"{kserve_server.http}/v2/models/dummy")
    assert r.status_code == 406 and r.json() == {"error": "Unsupported method"}
    # the infer route (served in front of Quart, rest/fast.py) answers the same way
    for method in ("GET", "PUT", "DELETE"):
        r = requests.request(method, url, data=b"{}")
        assert r.status_code == 406 and r.json() == {"error": "Unsupported method"}, method
    assert requests.head(f"{kserve_server.http}/v2/health/live").status_code == 200
    r = requests.post(url.replace("/infer", "/versions/x/infer"), data=b"{}")
    assert r.status_code == 400 and r.json() == {"error": "Invalid request URL"}
    r = requests.post(
        url,
        data=b'{"inputs":[{"name":"b","shape":[1,10],"datatype":"FP32"}]}',
        headers={"Inference-Header-Content-Length": "9999"},
    )
    assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["error"]
    header = b'{"inputs":[{"name":"b","shape":[1,10],"datatype":"FP32","parameters":{"binary_data_size":40}}]}'
    r = requests.post(
        url,
        data=header + b"\x00" * 8,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 400
    huge = b'{"inputs":[{"name":"b","shape":[1,1000000000000],"datatype":"FP32","parameters":{"binary_data_size":64}}]}'
    r = requests.post(
        url, data=huge + b"\x00" * 64, headers={"Inference-Header-Content-Length": str(len(huge))}
    )
    assert r.status_code == 413 and "too large" in r.json()["error"]
    # the server is still serving
    assert requests.get(f"{kserve_server.http}/v2/health/live").status_code == 200


def test_tritonclient_errors(
    gclient: grpcclient.InferenceServerClient, hclient: httpclient.InferenceServerClient
) -> None:
    with pytest.raises(InferenceServerException, match="Model with requested name is not found"):
        gclient.get_model_metadata("nope")
    with pytest.raises(InferenceServerException, match="Model with requested name is not found"):
        hclient.get_model_metadata("nope")
    inp = httpclient.InferInput("b", [1, 11], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 11), np.float32))
    with pytest.raises(InferenceServerException, match="Invalid input shape"):
        hclient.infer("dummy", [inp])


def test_large_messages_both_transports(
    gclient: grpcclient.InferenceServerClient, hclient: httpclient.InferenceServerClient
) -> None:
    data = np.random.default_rng(1).random((2_000_000, 10), dtype=np.float32)  # 80 MB
    inp = grpcclient.InferInput("b", list(data.shape), "FP32")
    inp.set_data_from_numpy(data)
    np.testing.assert_array_equal(gclient.infer("dummy", [inp]).as_numpy("a"), data + 1)
    hin = httpclient.InferInput("b", list(data.shape), "FP32")
    hin.set_data_from_numpy(data)
    np.testing.assert_array_equal(hclient.infer("dummy", [hin]).as_numpy("a"), data + 1)


# -- large REST bodies on raw sockets (read into one buffer: _patches/h11.BodyLane) ------------


def _binary_infer(rows: int, seed: int) -> tuple[bytes, np.ndarray]:
    """A raw HTTP/1.1 KServe binary request to ``dummy`` and the input it carries."""
    data = np.random.default_rng(seed).random((rows, 10), dtype=np.float32)
    return binary_infer_request("b", data), data


def _read_answer(f: Any) -> tuple[int, dict[str, str], bytes]:
    status = int(f.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, f.read(int(headers.get("content-length", "0")))


def _check_answer(answer: tuple[int, dict[str, str], bytes], data: np.ndarray) -> None:
    status, headers, body = answer
    assert status == 200, body[:300]
    json_len = int(headers["inference-header-content-length"])
    out = np.frombuffer(body[json_len:], "<f4").reshape(data.shape)
    np.testing.assert_array_equal(out, data + 1)


def test_large_rest_bodies_keep_alive_pipelined_and_trickled(kserve_server: Server) -> None:
    first, a = _binary_infer(20_000, 1)  # 800 KB: far more than one read
    second, b = _binary_infer(5_000, 2)
    small, c = _binary_infer(2, 3)
    with socket.create_connection(("127.0.0.1", kserve_server.rest_port), timeout=30) as s:
        f = s.makefile("rb")
        s.sendall(first)
        _check_answer(_read_answer(f), a)
        # pipelined: the next requests follow the large body in the same writes; reading the
        # body must stop at its end
        s.sendall(second + small + first)
        _check_answer(_read_answer(f), b)
        _check_answer(_read_answer(f), c)
        _check_answer(_read_answer(f), a)
        # trickled: the body arrives in pieces, with pauses between them
        cut = len(second) // 3
        for piece in (second[:cut], second[cut : 2 * cut], second[2 * cut :]):
            s.sendall(piece)
            time.sleep(0.2)
        _check_answer(_read_answer(f), b)


def test_large_rest_body_cut_short(kserve_server: Server) -> None:
    request, data = _binary_infer(20_000, 4)
    # the client leaves in the middle of the body: nothing is answered, the server goes on
    with socket.create_connection(("127.0.0.1", kserve_server.rest_port), timeout=30) as s:
        s.sendall(request[: len(request) // 2])
        time.sleep(0.2)
    # the client ends its side early: the body is incomplete, h11 says so (400) or the
    # connection just ends
    with socket.create_connection(("127.0.0.1", kserve_server.rest_port), timeout=30) as s:
        s.sendall(request[: len(request) // 2])
        time.sleep(0.2)
        s.shutdown(socket.SHUT_WR)
        answer = s.recv(65536)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    # answered before the body is read (a Quart route): the answer comes, the server goes on
    with socket.create_connection(("127.0.0.1", kserve_server.rest_port), timeout=30) as s:
        body = request.partition(b"\r\n\r\n")[2]
        head = f"POST /v1/models/nosuch:predict HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
        s.sendall(head.encode() + body[:200_000])
        time.sleep(0.2)
        with contextlib.suppress(OSError):  # the server may close before taking the rest
            s.sendall(body[200_000:])
        assert _read_answer(s.makefile("rb"))[0] == 404
    with socket.create_connection(("127.0.0.1", kserve_server.rest_port), timeout=30) as s:
        s.sendall(request)
        _check_answer(_read_answer(s.makefile("rb")), data)
