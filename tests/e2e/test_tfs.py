"""TensorFlow Serving API end to end: ovmsclient (gRPC and REST), raw gRPC with the TF Serving
protos (the compiled ones ovmsclient ships, used through grpcio exactly as
tensorflow-serving-api's stubs are; TensorFlow itself is too heavy for CI), and curl-style REST.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import requests
from ovmsclient import make_grpc_client, make_http_client
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import tensor_pb2, types_pb2
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests import models
from tests.e2e.conftest import F32_EXACT, Server, ovms_client, serve_models

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("tfs")
    repo = root / "models"
    models.add_model(repo / "dummy")
    for v, addend in ((1, 1.0), (2, 2.0)):
        models.add_model(repo / "versioned", version=v, addend=addend)
    models.identity_model(repo / "strings", "BYTES", shape=(-1,))
    models.identity_model(repo / "halves", "FP16", shape=(-1, 3))
    models.identity_model(repo / "ints", "INT32", shape=(-1, 3))
    models.multi_model(repo / "multi")
    entries = [
        {"name": "dummy", "base_path": "models/dummy", "plugin_config": F32_EXACT},
        {
            "name": "versioned",
            "base_path": "models/versioned",
            "plugin_config": F32_EXACT,
            "model_version_policy": {"all": {}},
            "version_labels": {"stable": 1, "canary": 2},
        },
        {"name": "strings", "base_path": "models/strings"},
        {"name": "halves", "base_path": "models/halves"},
        {"name": "ints", "base_path": "models/ints"},
        {"name": "multi", "base_path": "models/multi", "plugin_config": F32_EXACT},
    ]
    with serve_models(root, entries) as srv:
        yield srv


@pytest.fixture(scope="module")
def stubs(
    server: Server,
) -> tuple[
    prediction_service_pb2_grpc.PredictionServiceStub, model_service_pb2_grpc.ModelServiceStub
]:
    channel = grpc.insecure_channel(server.grpc_url)
    return (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )


# -- ovmsclient ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_ovmsclient_status_metadata_predict(server: Server, transport: str) -> None:
    client = ovms_client(server, transport)
    status = client.get_model_status(model_name="dummy")
    assert list(status) == [1]
    assert status[1]["state"] == "AVAILABLE"
    assert status[1]["error_code"] == 0
    versions = client.get_model_status(model_name="versioned")
    assert sorted(versions) == [1, 2]
    assert (
        client.get_model_status(model_name="versioned", model_version=1)[1]["state"] == "AVAILABLE"
    )
    meta = client.get_model_metadata(model_name="dummy")
    assert meta["model_version"] == 1
    assert meta["inputs"] == {"b": {"shape": [-1, 10], "dtype": "DT_FLOAT"}}
    assert meta["outputs"] == {"a": {"shape": [-1, 10], "dtype": "DT_FLOAT"}}
    data = np.arange(20, dtype=np.float32).reshape(2, 10)
    np.testing.assert_array_equal(client.predict(inputs={"b": data}, model_name="dummy"), data + 1)
    v1 = client.predict(inputs={"b": data}, model_name="versioned", model_version=1)
    np.testing.assert_array_equal(v1, data + 1)
    latest = client.predict(inputs={"b": data}, model_name="versioned")
    np.testing.assert_array_equal(latest, data + 2)
    out = client.predict(
        inputs={"x": np.ones((1, 4), np.float32), "y": np.ones((1, 4), np.float32)},
        model_name="multi",
    )
    assert set(out) == {"sum", "diff"}
    np.testing.assert_array_equal(out["sum"], np.full((1, 4), 2.0))


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_ovmsclient_strings_and_fp16(server: Server, transport: str) -> None:
    client = ovms_client(server, transport)
    out = client.predict(inputs={"in": ["<string>", "zażółć"]}, model_name="strings")
    assert [x if isinstance(x, bytes) else str(x).encode() for x in out] == [
        b"<string>",
        "zażółć".encode(),
    ]
    if transport == "grpc":  # TF Serving's REST API has no FP16 numbers; gRPC carries them
        halves = np.array([[0.5, -1.5, 2.0]], np.float16)
        np.testing.assert_array_equal(
            client.predict(inputs={"in": halves}, model_name="halves"), halves
        )


def test_ovmsclient_errors(server: Server) -> None:
    from ovmsclient.tfs_compat.base.errors import ModelNotFoundError

    for client in (make_grpc_client(server.grpc_url), make_http_client(server.rest_url)):
        with pytest.raises(ModelNotFoundError):
            client.get_model_status(model_name="nope")


# -- tensorflow-serving-api style (grpcio + the TF Serving protos) ---------------------------


def _request(model: str, **spec: object) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            req.model_spec.version.value = value  # type: ignore[assignment]
        else:
            setattr(req.model_spec, key, value)
    return req


def test_seed_status_and_metadata(stubs) -> None:
    prediction, model_service = stubs
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "versioned"
    response = model_service.GetModelStatus(status_request, 10.0)
    states = {
        v.version: get_model_status_pb2.ModelVersionStatus.State.Name(v.state)
        for v in response.model_version_status
    }
    assert states == {1: "AVAILABLE", 2: "AVAILABLE"}
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata_request.model_spec.name = "dummy"
    metadata_request.metadata_field.append("signature_def")
    meta = prediction.GetModelMetadata(metadata_request, 10.0)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    signature_map.ParseFromString(meta.metadata["signature_def"].value)
    sig = signature_map.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert [d.size for d in sig.inputs["b"].tensor_shape.dim] == [-1, 10]
    assert types_pb2.DataType.Name(sig.inputs["b"].dtype) == "DT_FLOAT"
    assert meta.model_spec.version.value == 1


TENSOR_ENCODINGS = [
    (
        "tensor_content",
        lambda t: setattr(t, "tensor_content", np.arange(10, dtype="<f4").tobytes()),
    ),
    ("float_val", lambda t: t.float_val.extend(range(10))),
    ("float_val repeated last", lambda t: t.float_val.extend([0.0])),
]


@pytest.mark.parametrize(
    "fill", [e[1] for e in TENSOR_ENCODINGS], ids=[e[0] for e in TENSOR_ENCODINGS]
)
def test_predict_every_encoding(stubs, fill) -> None:
    prediction, _ = stubs
    req = _request("dummy")
    tensor = req.inputs["b"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=1)
    tensor.tensor_shape.dim.add(size=10)
    fill(tensor)
    resp = prediction.Predict(req, 10.0)
    out = resp.outputs["a"]
    values = np.frombuffer(out.tensor_content, "<f4").reshape(1, 10)
    sent = (
        np.frombuffer(tensor.tensor_content, "<f4")
        if tensor.tensor_content
        else (np.resize(np.array(tensor.float_val, np.float32), 10))
    )
    np.testing.assert_array_equal(values, sent.reshape(1, 10) + 1)
    assert resp.model_spec.name == "dummy"


def test_predict_half_val_and_int_val(stubs) -> None:
    prediction, _ = stubs
    req = _request("halves")
    t = req.inputs["in"]
    t.dtype = types_pb2.DT_HALF
    t.tensor_shape.dim.add(size=1)
    t.tensor_shape.dim.add(size=3)
    halves = np.array([0.5, -1.0, 3.0], np.float16)
    t.half_val.extend(int(x) for x in halves.view(np.uint16))
    out = prediction.Predict(req, 10.0).outputs["out"]
    np.testing.assert_array_equal(np.frombuffer(out.tensor_content, "<f2"), halves)
    req = _request("ints")
    t = req.inputs["in"]
    t.dtype = types_pb2.DT_INT32
    t.tensor_shape.dim.add(size=1)
    t.tensor_shape.dim.add(size=3)
    t.int_val.extend([7, -8, 9])
    out = prediction.Predict(req, 10.0).outputs["out"]
    np.testing.assert_array_equal(np.frombuffer(out.tensor_content, "<i4"), [7, -8, 9])


def test_versions_and_labels(stubs) -> None:
    prediction, _ = stubs

    def call(**spec: object) -> float:
        req = _request("versioned", **spec)
        t = req.inputs["b"]
        t.CopyFrom(
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT, tensor_content=np.zeros(10, "<f4").tobytes()
            )
        )
        t.tensor_shape.dim.add(size=1)
        t.tensor_shape.dim.add(size=10)
        return float(
            np.frombuffer(prediction.Predict(req, 10.0).outputs["a"].tensor_content, "<f4")[0]
        )

    assert call() == 2.0
    assert call(version=0) == 2.0
    assert call(version=1) == 1.0
    assert call(version_label="stable") == 1.0
    assert call(version_label="canary") == 2.0
    with pytest.raises(grpc.RpcError) as info:
        call(version_label="nightly")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nightly" in info.value.details()


def test_grpc_errors(stubs) -> None:
    prediction, model_service = stubs
    req = _request("dummy", signature_name="other")
    req.inputs["b"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT))
    with pytest.raises(grpc.RpcError) as info:
        prediction.Predict(req, 10.0)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    meta = get_model_metadata_pb2.GetModelMetadataRequest()
    meta.model_spec.name = "dummy"
    meta.metadata_field.append("other")
    with pytest.raises(grpc.RpcError) as info:
        prediction.GetModelMetadata(meta, 10.0)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        prediction.Predict(predict_pb2.PredictRequest(), 10.0)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "model_spec missing in request"
    with pytest.raises(grpc.RpcError) as info:
        prediction.Classify(
            __import__(
                "ovmsclient.tfs_compat.protos.tensorflow_serving.apis.classification_pb2",
                fromlist=["x"],
            ).ClassificationRequest(),
            10.0,
        )
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
        model_service.GetModelStatus(status, 10.0)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


# -- curl-style REST (seed 004) ----------------------------------------------------------------


def test_rest_status_and_metadata(server: Server) -> None:
    r = requests.get(f"{server.http}/v1/models/versioned")
    assert r.status_code == 200
    assert r.json() == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
            {
                "version": "2",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
        ]
    }
    assert requests.get(f"{server.http}/v1/models/versioned/versions/0").json() == r.json()
    assert (
        requests.get(f"{server.http}/v1/models/versioned/labels/stable").json()[
            "model_version_status"
        ][0]["version"]
        == "1"
    )
    meta = requests.get(f"{server.http}/v1/models/dummy/metadata").json()
    assert meta["modelSpec"]["version"] == "1"
    sig = meta["metadata"]["signature_def"]["signatureDef"]["serving_default"]
    assert sig["inputs"]["b"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["b"]["tensorShape"]["dim"]] == ["-1", "10"]


def test_rest_predict_row_and_column(server: Server) -> None:
    url = f"{server.http}/v1/models/dummy:predict"
    r = requests.post(url, json={"instances": [{"b": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}]})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]]}
    r = requests.post(url, json={"instances": [[0] * 10, [1] * 10]})
    assert r.json() == {"predictions": [[1.0] * 10, [2.0] * 10]}
    r = requests.post(url, json={"inputs": {"b": [[0] * 10]}})
    assert r.json() == {"outputs": [[1.0] * 10]}
    r = requests.post(
        f"{server.http}/v1/models/versioned/labels/stable:predict", json={"inputs": [[0] * 10]}
    )
    assert r.json() == {"outputs": [[1.0] * 10]}
    r = requests.post(
        f"{server.http}/v1/models/multi/versions/1:predict",
        json={"inputs": {"x": [[1, 2, 3, 4]], "y": [[1, 1, 1, 1]]}},
    )
    assert r.json() == {"outputs": {"sum": [[2.0, 3.0, 4.0, 5.0]], "diff": [[0.0, 1.0, 2.0, 3.0]]}}
    r = requests.post(
        f"{server.http}/v1/models/strings:predict",
        json={"instances": [{"in": "<string>"}, {"in": {"b64": "YXdlc29tZSBpbWFnZSBieXRlcw=="}}]},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": ["<string>", "awesome image bytes"]}


REST_ERRORS = [
    ("/v1/models/dummy:predict", b"{bad", 412, "The file is not valid json"),
    ("/v1/models/dummy:predict", b"[]", 400, "Request body should be JSON object"),
    (
        "/v1/models/dummy:predict",
        b'{"instances": [], "inputs": []}',
        400,
        "Could not detect row or column format",
    ),
    ("/v1/models/dummy:predict", b'{"instances": [[1, 2], [3]]}', 400, "Not valid ndarray"),
    (
        "/v1/models/dummy:predict",
        b'{"inputs": {"b": [[0,0,0,0,0,0,0,0,0,0,0]]}}',
        400,
        "Invalid input shape",
    ),
    ("/v1/models/strings:predict", b'{"instances": [{"in": {"b64": "***"}}]}', 400, "Base64"),
    (
        "/v1/models/nope:predict",
        b'{"instances": [1]}',
        404,
        "Model with requested name is not found",
    ),
    (
        "/v1/models/dummy/versions/9:predict",
        b'{"instances": [1]}',
        404,
        "Model with requested version is not found",
    ),
    (
        "/v1/models/dummy:predict",
        b'{"signature_name": "x", "instances": [1]}',
        400,
        "Serving signature key",
    ),
    # OVMS answers these before looking the model up: the resource is what is not found
    ("/v1/models/dummy:classify", b'{"examples": []}', 404, "Requested REST resource not found"),
    ("/v1/models/dummy:regress", b'{"examples": []}', 404, "Requested REST resource not found"),
    ("/v1/models/nope:classify", b"{}", 404, "Requested REST resource not found"),
    ("/v1/models/dummy/versions/9:regress", b"{}", 404, "Requested REST resource not found"),
    ("/v1/models/dummy/labels/x:classify", b"{}", 404, "Requested REST resource not found"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), REST_ERRORS)
def test_rest_errors(server: Server, path: str, body: bytes, status: int, message: str) -> None:
    r = requests.post(server.http + path, data=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    if "REST resource" in message:
        assert r.json() == {"error": message}


def test_same_numbers_over_kserve_and_tfs(server: Server) -> None:
    data = np.random.default_rng(3).random((3, 10), dtype=np.float32)
    tfs = make_grpc_client(server.grpc_url).predict(inputs={"b": data}, model_name="dummy")
    body = {
        "inputs": [
            {"name": "b", "shape": [3, 10], "datatype": "FP32", "data": data.ravel().tolist()}
        ]
    }
    kserve = requests.post(f"{server.http}/v2/models/dummy/infer", json=body).json()
    np.testing.assert_array_equal(
        tfs, np.array(kserve["outputs"][0]["data"], np.float32).reshape(3, 10)
    )


def test_rest_predict_large_json_body(server: Server) -> None:
    """A JSON body larger than one read reaches the Quart routes whole (read into one buffer)."""
    rows = np.random.default_rng(5).integers(0, 1000, (12_000, 10)).astype(np.float32)
    r = requests.post(
        f"{server.http}/v1/models/dummy:predict", json={"instances": rows.tolist()}, timeout=60
    )
    assert r.status_code == 200, r.text[:300]
    np.testing.assert_array_equal(np.array(r.json()["predictions"], np.float32), rows + 1)
