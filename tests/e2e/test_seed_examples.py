"""The client examples of the API documents the project was made from, run as they are written.

Each test runs one example with the same calls and argument forms; only host, port, model and
file names are adapted, against a model of the matching signature. Where an example cannot run
as printed, the test says why and the one change made:

* KServe Python numpy examples: ``np.array([1.0, 2.0, ..., 1000.0])`` is float64, which
  tritonclient refuses to send as ``FP32`` before any request; the data is made float32.
* curl examples printed over several lines without ``\\`` are joined into one command; the
  encoded-image curl example's mangled quote (``"inputsâ€ ``) is a plain ``"``.
* TF Serving examples that use ``np`` or ``make_ndarray`` without importing them get the import.
* The binary-input curl example's b64 text ("awesome image bytes") is not an image; sent to an
  image input, a real PNG takes its place (sent to a string input, the text goes as it is).

The Go and Java examples are built from ``seed_clients/`` with Debian's toolchains and run when
those are installed (skipped otherwise); the C++ examples need Triton's C++ client library, which
Debian does not package, so they are not built: the messages they send (FP32 as raw bytes, an
encoded image) are sent from Python here.

The tensorflow-serving-api examples run in a child interpreter, as written, when TensorFlow and
tensorflow-serving-api are importable (they are large and not in the project's environment);
the same messages are always sent with the TF Serving protos ovmsclient ships, through grpcio.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from ovmsclient import make_grpc_client, make_http_client
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import (
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests import models
from tests.e2e.conftest import F32_EXACT, Server, serve_models

pytestmark = pytest.mark.e2e

H = W = 32
DATA_1000 = np.arange(1.0, 1001.0)
"""``np.array([1.0, 2.0, ..., 1000.0])``"""


def _model(name: str, dtype: ov.Type, shape: list[int], out: str = "output_name") -> ov.Model:
    """``out`` = ``name`` + 1 (numbers) or ``name`` unchanged (strings)."""
    x = ops.parameter(ov.PartialShape(shape), dtype, name=name)
    if dtype == ov.Type.string:
        y = ops.reshape(x, ops.shape_of(x), False)
    else:
        y = ops.add(x, ops.constant(np.array(1, dtype=dtype.to_dtype())))
    y.output(0).get_tensor().set_names({out})
    return ov.Model([y.output(0)], [x], name)


def _image_model(name: str) -> ov.Model:
    x = ops.parameter(ov.PartialShape([-1, H, W, 3]), ov.Type.f32, name=name)
    y = ops.multiply(x, ops.constant(np.float32(1)))
    y.output(0).get_tensor().set_names({"output_name"})
    return ov.Model([y.output(0)], [x], "image")


def _image(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


def _decoded(data: bytes) -> np.ndarray:
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.resize(pixels, (W, H), interpolation=cv2.INTER_LINEAR).astype(np.float32)[None]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("seeds")
    built = {
        "model_name": _model("input_name", ov.Type.f32, [-1, 10]),
        "vector": _model("input_name", ov.Type.f32, [-1]),
        "my_model": _model("input_name", ov.Type.f64, [-1]),
        "my_model_rows": _model("input_name", ov.Type.f64, [-1, 10]),
        "my_model_strings": _model("input_name", ov.Type.string, [-1]),
        "image": _image_model("input_name"),
        "resnet": _image_model("0"),
    }
    entries = []
    for name, model in built.items():
        (root / name / "1").mkdir(parents=True)
        ov.save_model(model, str(root / name / "1" / "model.xml"))
        entry: dict[str, Any] = {"name": name, "base_path": name, "plugin_config": F32_EXACT}
        if name in ("image", "resnet"):
            entry["layout"] = "NHWC"
        entries.append(entry)
    models.text_model(root / "my_model_text", in_name="input_name")
    entries.append({"name": "my_model_text", "base_path": "my_model_text"})
    with serve_models(root, entries) as srv:
        yield srv


def _curl(script: str, cwd: Path) -> str:
    done = subprocess.run(
        ["bash", "-ec", textwrap.dedent(script)], cwd=cwd, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


# -- KServe API clients (003) -------------------------------------------------------------------


def test_kserve_health_python(server: Server) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    server_live = client.is_server_live()
    server_ready = client.is_server_ready()
    model_ready = client.is_model_ready("model_name")
    assert server_live and server_ready and model_ready
    rest = httpclient.InferenceServerClient(server.rest_url)
    server_live = rest.is_server_live()
    server_ready = rest.is_server_ready()
    model_ready = rest.is_model_ready("model_name")
    assert server_live and server_ready and model_ready


def test_kserve_metadata_python(server: Server) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    server_metadata = client.get_server_metadata()
    model_metadata = client.get_model_metadata("model_name")
    assert server_metadata.name == "ovtrio"
    assert [(i.name, i.datatype, list(i.shape)) for i in model_metadata.inputs] == [
        ("input_name", "FP32", [-1, 10])
    ]
    rest = httpclient.InferenceServerClient(server.rest_url)
    server_metadata = rest.get_server_metadata()
    model_metadata = rest.get_model_metadata("model_name")
    assert server_metadata["name"] == "ovtrio"
    assert model_metadata["outputs"] == [
        {"name": "output_name", "datatype": "FP32", "shape": [-1, 10]}
    ]


def test_kserve_curl_health_and_metadata(server: Server, tmp_path: Path) -> None:
    out = _curl(
        f"""
        curl -sf http://{server.rest_url}/v2/health/live
        curl -sf http://{server.rest_url}/v2/health/ready
        curl -sf http://{server.rest_url}/v2/models/model_name/ready
        echo
        curl -sf http://{server.rest_url}/v2
        echo
        curl -sf http://{server.rest_url}/v2/models/model_name
        """,
        tmp_path,
    )
    server_meta, model_meta = (json.loads(line) for line in out.splitlines()[-2:])
    assert server_meta["name"] == "ovtrio"
    assert model_meta["inputs"] == [{"name": "input_name", "datatype": "FP32", "shape": [-1, 10]}]
    # the REST document's own (curl -i) examples: a status line and a JSON body
    head = _curl(f"curl -si http://{server.rest_url}/v2/models/resnet/ready", tmp_path)
    assert head.startswith("HTTP/1.1 200")


def test_kserve_encoded_image_grpc_request_object(server: Server) -> None:
    """The gRPC example builds a ModelInferRequest with bytes_contents (and stops there);
    sent as built, with the model name's stray quote taken out."""
    image_data = [_image(1)]
    inputs = []
    inputs.append(service_pb2.ModelInferRequest().InferInputTensor())
    inputs[0].name = "input_name"
    inputs[0].datatype = "BYTES"
    inputs[0].shape.extend([1])
    inputs[0].contents.bytes_contents.append(image_data[0])

    outputs = []
    outputs.append(service_pb2.ModelInferRequest().InferRequestedOutputTensor())
    outputs[0].name = "output_name"

    request = service_pb2.ModelInferRequest()
    request.model_name = "image"
    request.inputs.extend(inputs)
    request.outputs.extend(outputs)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
    response = stub.ModelInfer(request)
    got = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(1, H, W, 3)
    np.testing.assert_array_equal(got, _decoded(image_data[0]))


def test_kserve_encoded_image_rest_requests(server: Server, tmp_path: Path) -> None:
    (tmp_path / "image_path").write_bytes(_image(2))
    address, model_name, input_name, batch_i = server.rest_url, "image", "input_name", 1

    url = f"http://{address}/v2/models/{model_name}/infer"
    http_session = requests.session()

    image_data = []
    image_binary_size = []
    with open(tmp_path / "image_path", "rb") as f:
        image_data.append(f.read())
        image_binary_size.append(len(image_data[-1]))
    image_binary_size_str = ",".join(map(str, image_binary_size))
    inference_header = {
        "inputs": [
            {
                "name": input_name,
                "shape": [batch_i],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": image_binary_size_str},
            }
        ]
    }
    inference_header_binary = json.dumps(inference_header).encode()

    results = http_session.post(
        url,
        inference_header_binary + b"".join(image_data),
        headers={"Inference-Header-Content-Length": str(len(inference_header_binary))},
    )
    assert results.status_code == 200, results.text
    out = results.json()["outputs"][0]
    np.testing.assert_array_equal(
        np.array(out["data"], np.float32).reshape(out["shape"]), _decoded(image_data[0])
    )


def test_kserve_encoded_image_curl(server: Server, tmp_path: Path) -> None:
    (tmp_path / "image.jpeg").write_bytes(_image(3))
    out = _curl(
        f"""
        echo -n '{{"inputs" : [{{"name" : "0", "shape" : [1], "datatype" : "BYTES"}}]}}' > request.json
        stat --format=%s request.json
        cat ./image.jpeg >> request.json
        curl -sf --data-binary "@./request.json" -X POST http://{server.rest_url}/v2/models/resnet/versions/0/infer -H "Inference-Header-Content-Length: 66"
        """,
        tmp_path,
    )
    size, body = out.split("\n", 1)
    assert size == "66"
    result = json.loads(body)["outputs"][0]
    np.testing.assert_array_equal(
        np.array(result["data"], np.float32).reshape(result["shape"]), _decoded(_image(3))
    )


def test_kserve_encoded_image_java_go_messages(server: Server) -> None:
    """Java and Go: shape [1], BYTES, the file's bytes as the one raw_input_contents entry."""
    data = _image(4)
    request = service_pb2.ModelInferRequest(model_name="image")
    request.inputs.add(name="input_name", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(data)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
    response = stub.ModelInfer(request)
    got = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(1, H, W, 3)
    np.testing.assert_array_equal(got, _decoded(data))


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_kserve_numpy_python(server: Server, transport: str) -> None:
    clientlib = grpcclient if transport == "grpc" else httpclient
    url = server.grpc_url if transport == "grpc" else server.rest_url
    client = clientlib.InferenceServerClient(url)
    data = DATA_1000.astype(np.float32)  # as printed: float64, refused by the client as FP32
    infer_input = clientlib.InferInput("input_name", data.shape, "FP32")
    infer_input.set_data_from_numpy(data)
    results = client.infer("vector", [infer_input])
    np.testing.assert_array_equal(results.as_numpy("output_name"), data + 1)


def test_kserve_numpy_cpp_java_go_messages(server: Server) -> None:
    """C++: shape {1, 10}, ten floats as raw bytes; Java/Go: the same in fp32_contents."""
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
    values = [float(i) for i in range(10)]
    request = service_pb2.ModelInferRequest(model_name="model_name")
    request.inputs.add(name="input_name", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(np.array(values, "<f4").tobytes())
    got = np.frombuffer(stub.ModelInfer(request).raw_output_contents[0], "<f4")
    np.testing.assert_array_equal(got, np.array(values, np.float32) + 1)
    request = service_pb2.ModelInferRequest(model_name="model_name", model_version="1")
    tensor = request.inputs.add(name="input_name", datatype="FP32", shape=[1, 10])
    tensor.contents.fp32_contents.extend(values)
    got = np.frombuffer(stub.ModelInfer(request).raw_output_contents[0], "<f4")
    np.testing.assert_array_equal(got, np.array(values, np.float32) + 1)


def test_kserve_numpy_curl(server: Server, tmp_path: Path) -> None:
    out = _curl(
        f"""
        curl -sf -X POST http://{server.rest_url}/v2/models/model_name/infer -H 'Content-Type: application/json' -d '{{"inputs" : [ {{"name" : "input_name", "shape" : [ 1, 10 ], "datatype"  : "FP32", "data" : [1,2,3,4,5,6,7,8,9,10]}} ]}}'
        """,
        tmp_path,
    )
    assert json.loads(out)["outputs"][0]["data"] == [float(i) for i in range(2, 12)]


# -- TF Serving API clients (004): ovmsclient and curl ------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_tfs_ovmsclient_every_example(server: Server, transport: str, tmp_path: Path) -> None:
    if transport == "grpc":
        client = make_grpc_client(server.grpc_url)
    else:
        client = make_http_client(server.rest_url)
    status = client.get_model_status(model_name="my_model")
    assert status[1]["state"] == "AVAILABLE"
    model_metadata = client.get_model_metadata(model_name="my_model")
    assert model_metadata["inputs"] == {"input_name": {"shape": [-1], "dtype": "DT_DOUBLE"}}

    (tmp_path / "img.jpeg").write_bytes(_image(5))
    with open(tmp_path / "img.jpeg", "rb") as f:
        data = f.read()
    inputs = {"input_name": data}
    results = client.predict(inputs=inputs, model_name="image")
    np.testing.assert_array_equal(results, _decoded(data))

    data = DATA_1000
    inputs = {"input_name": data}
    results = client.predict(inputs=inputs, model_name="my_model")
    np.testing.assert_array_equal(results, DATA_1000 + 1)

    data = ["<string>"]
    inputs = {"input_name": data}
    results = client.predict(inputs=inputs, model_name="my_model_strings")
    assert [r if isinstance(r, bytes) else str(r).encode() for r in results] == [b"<string>"]
    results = client.predict(inputs=inputs, model_name="my_model_text")
    assert list(results["echo_string"]) in ([b"<string>"], ["<string>"])


def test_tfs_curl_every_example(server: Server, tmp_path: Path) -> None:
    url = server.rest_url
    b64_image = __import__("base64").b64encode(_image(6)).decode()
    out = _curl(
        f"""
        curl -sf http://{url}/v1/models/my_model
        echo
        curl -sf http://{url}/v1/models/my_model/metadata
        echo
        curl -sf -X POST http://{url}/v1/models/my_model_strings:predict -H 'Content-Type: application/json' -d '{{"instances": [{{"input_name": {{"b64":"YXdlc29tZSBpbWFnZSBieXRlcw=="}}}}]}}'
        echo
        curl -sf -X POST http://{url}/v1/models/image:predict -H 'Content-Type: application/json' -d '{{"instances": [{{"input_name": {{"b64":"{b64_image}"}}}}]}}'
        echo
        curl -sf -X POST http://{url}/v1/models/my_model_rows:predict -H 'Content-Type: application/json' -d '{{"instances": [{{"input_name": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}}]}}'
        echo
        curl -sf -X POST http://{url}/v1/models/my_model_strings:predict -H 'Content-Type: application/json' -d '{{"instances": [{{"input_name": "<string>"}}]}}'
        echo
        curl -sf -X POST http://{url}/v1/models/my_model_text:predict -H 'Content-Type: application/json' -d '{{"instances": [{{"input_name": "<string>"}}]}}'
        """,
        tmp_path,
    )
    status, metadata, b64_text, image, numbers, strings, text = map(json.loads, out.splitlines())
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert "serving_default" in metadata["metadata"]["signature_def"]["signatureDef"]
    assert b64_text == {"predictions": ["awesome image bytes"]}
    np.testing.assert_array_equal(np.array(image["predictions"], np.float32), _decoded(_image(6)))
    assert numbers == {"predictions": [[float(i) for i in range(2, 12)]]}
    assert strings == {"predictions": ["<string>"]}
    assert text["predictions"][0]["echo_string"] == "<string>"


# -- TF Serving API clients (004): tensorflow-serving-api ---------------------------------------
# The same messages through grpcio and the TF Serving protos ovmsclient ships.


def _stubs(
    server: Server,
) -> tuple[
    prediction_service_pb2_grpc.PredictionServiceStub, model_service_pb2_grpc.ModelServiceStub
]:
    channel = grpc.insecure_channel(server.grpc_url)
    return (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )


def _tensor(dtype: int, dims: list[int], **values: Any) -> tensor_pb2.TensorProto:
    """What ``tensorflow.make_tensor_proto`` makes: no ``dim`` at all for a scalar."""
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
    )
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)


def test_tfs_api_status_and_metadata_messages(server: Server) -> None:
    prediction_service_stub, model_service_stub = _stubs(server)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "my_model"
    status_response = model_service_stub.GetModelStatus(status_request, 10.0)
    states = [
        get_model_status_pb2.ModelVersionStatus.State.Name(v.state)
        for v in status_response.model_version_status
    ]
    assert states == ["AVAILABLE"]
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata_request.model_spec.name = "my_model"  # no metadata_field, as the example
    metadata_response = prediction_service_stub.GetModelMetadata(metadata_request, 10.0)
    signature_def = metadata_response.metadata["signature_def"]
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    signature_map.ParseFromString(signature_def.value)
    model_signature = signature_map.ListFields()[0][1]["serving_default"]
    shape = [d.size for d in model_signature.inputs["input_name"].tensor_shape.dim]
    assert shape == [-1]
    assert types_pb2.DataType.Name(model_signature.inputs["input_name"].dtype) == "DT_DOUBLE"
    assert metadata_response.model_spec.version.value == 1


def test_tfs_api_predict_messages(server: Server) -> None:
    prediction_service_stub, _ = _stubs(server)
    data = _image(7)
    predict_request = predict_pb2.PredictRequest()
    predict_request.model_spec.name = "image"
    # make_tensor_proto(data) of one bytes object: a scalar DT_STRING, one image
    predict_request.inputs["input_name"].CopyFrom(
        _tensor(types_pb2.DT_STRING, [], string_val=[data])
    )
    predict_response = prediction_service_stub.Predict(predict_request, 10.0)
    out = predict_response.outputs["output_name"]
    got = np.frombuffer(out.tensor_content, "<f4").reshape([d.size for d in out.tensor_shape.dim])
    np.testing.assert_array_equal(got, _decoded(data))

    predict_request = predict_pb2.PredictRequest()
    predict_request.model_spec.name = "my_model"
    predict_request.inputs["input_name"].CopyFrom(
        _tensor(types_pb2.DT_DOUBLE, [1000], tensor_content=DATA_1000.astype("<f8").tobytes())
    )
    predict_response = prediction_service_stub.Predict(predict_request, 10.0)
    out = predict_response.outputs["output_name"]
    np.testing.assert_array_equal(np.frombuffer(out.tensor_content, "<f8"), DATA_1000 + 1)

    for model in ("my_model_strings", "my_model_text"):
        predict_request = predict_pb2.PredictRequest()
        predict_request.model_spec.name = model
        predict_request.inputs["input_name"].CopyFrom(
            _tensor(types_pb2.DT_STRING, [1], string_val=[b"<string>"])
        )
        predict_response = prediction_service_stub.Predict(predict_request, 1)
        name = "output_name" if model == "my_model_strings" else "echo_string"
        assert list(predict_response.outputs[name].string_val) == [b"<string>"]


# The examples as printed, in a child interpreter with TensorFlow.

_TF_EXAMPLES = {
    "status": """
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, get_model_status_pb2
        from tensorflow_serving.apis.get_model_status_pb2 import ModelVersionStatus

        channel = grpc.insecure_channel("localhost:9000")
        model_service_stub = model_service_pb2_grpc.ModelServiceStub(channel)

        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "my_model"
        status_response = model_service_stub.GetModelStatus(status_request, 10.0)

        model_status = {}
        model_version_status = status_response.model_version_status
        for model_version in model_version_status:
            model_status[model_version.version] = dict([
                ('state', ModelVersionStatus.State.Name(model_version.state)),
                ('error_code', model_version.status.error_code),
                ('error_message', model_version.status.error_message),
            ])
        RESULT = model_status
    """,
    "metadata": """
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc, get_model_metadata_pb2
        from tensorflow.core.framework.types_pb2 import DataType

        channel = grpc.insecure_channel("localhost:9000")
        prediction_service_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
        metadata_request.model_spec.name = "my_model"
        metadata_response = prediction_service_stub.GetModelMetadata(metadata_request, 10.0)

        model_metadata = {}

        signature_def = metadata_response.metadata['signature_def']
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        signature_map.ParseFromString(signature_def.value)
        model_signature = signature_map.ListFields()[0][1]['serving_default']

        inputs_metadata = {}
        for input_name, input_info in model_signature.inputs.items():
            input_shape = [d.size for d in input_info.tensor_shape.dim]
            inputs_metadata[input_name] = dict([
                ("shape", input_shape),
                ("dtype", DataType.Name(input_info.dtype))
            ])

        outputs_metadata = {}
        for output_name, output_info in model_signature.outputs.items():
            output_shape = [d.size for d in output_info.tensor_shape.dim]
            outputs_metadata[output_name] = dict([
                ("shape", output_shape),
                ("dtype", DataType.Name(output_info.dtype))
            ])

        version = metadata_response.model_spec.version.value
        model_metadata = dict([
            ("model_version", version),
            ("inputs", inputs_metadata),
            ("outputs", outputs_metadata)
        ])
        RESULT = model_metadata
    """,
    "binary": """
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc, predict_pb2
        from tensorflow import make_tensor_proto, make_ndarray

        channel = grpc.insecure_channel("localhost:9000")
        prediction_service_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        with open("img.jpeg", "rb") as f:
            data = f.read()
        predict_request = predict_pb2.PredictRequest()
        predict_request.model_spec.name = "image"
        predict_request.inputs["input_name"].CopyFrom(make_tensor_proto(data))
        predict_response = prediction_service_stub.Predict(predict_request, 10.0)
        results = make_ndarray(predict_response.outputs["output_name"])
        RESULT = results
    """,
    "numpy": """
        import numpy as np  # added: the example uses np without importing it
        from tensorflow import make_ndarray  # added, likewise
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc, predict_pb2
        from tensorflow import make_tensor_proto

        channel = grpc.insecure_channel("localhost:9000")
        prediction_service_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        data = np.arange(1.0, 1001.0)  # np.array([1.0, 2.0, ..., 1000.0])
        predict_request = predict_pb2.PredictRequest()
        predict_request.model_spec.name = "my_model"
        predict_request.inputs["input_name"].CopyFrom(make_tensor_proto(data))
        predict_response = prediction_service_stub.Predict(predict_request, 10.0)
        results = make_ndarray(predict_response.outputs["output_name"])
        RESULT = results
    """,
    "string": """
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc, predict_pb2
        from tensorflow import make_tensor_proto

        channel = grpc.insecure_channel("localhost:9000")
        prediction_service_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        data = ["<string>"]
        predict_request = predict_pb2.PredictRequest()
        predict_request.model_spec.name = "my_model_strings"
        predict_request.inputs["input_name"].CopyFrom(make_tensor_proto(data))
        predict_response = prediction_service_stub.Predict(predict_request, 1)
        results = predict_response.outputs["output_name"]
        RESULT = list(results.string_val)
    """,
}


# scripts/test installs TensorFlow into its own directory (its pins clash with the project's)
TF_SITE = Path(sys.prefix) / "tf-site"


def _tf_env() -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if TF_SITE.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TF_SITE), env.get("PYTHONPATH")) if p)
    return env


def _tensorflow_available() -> bool:
    probe = "import tensorflow, tensorflow_serving.apis.predict_pb2"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, timeout=300, env=_tf_env()
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def tensorflow_python() -> str:
    if not _tensorflow_available():
        pytest.skip("tensorflow and tensorflow-serving-api are not installed")
    return sys.executable


@pytest.mark.parametrize("example", sorted(_TF_EXAMPLES))
def test_tensorflow_serving_api_as_printed(
    server: Server, tensorflow_python: str, example: str, tmp_path: Path
) -> None:
    (tmp_path / "img.jpeg").write_bytes(_image(8))
    code = textwrap.dedent(_TF_EXAMPLES[example]).replace("localhost:9000", server.grpc_url)
    code += "\nimport pickle\nwith open('result.pickle', 'wb') as f:\n    pickle.dump(RESULT, f)\n"
    env = _tf_env()
    done = subprocess.run(
        [tensorflow_python, "-c", code], cwd=tmp_path, capture_output=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = pickle.loads((tmp_path / "result.pickle").read_bytes())
    if example == "status":
        assert result == {1: {"state": "AVAILABLE", "error_code": 0, "error_message": ""}}
    elif example == "metadata":
        assert result == {
            "model_version": 1,
            "inputs": {"input_name": {"shape": [-1], "dtype": "DT_DOUBLE"}},
            "outputs": {"output_name": {"shape": [-1], "dtype": "DT_DOUBLE"}},
        }
    elif example == "binary":
        np.testing.assert_array_equal(result, _decoded(_image(8)))
    elif example == "numpy":
        np.testing.assert_array_equal(result, DATA_1000 + 1)
    else:
        assert result == [b"<string>"]


# -- KServe API clients (003): Go and Java, built with Debian's toolchains when present -------

SEED_CLIENTS = Path(__file__).parent / "seed_clients"
PROTOS = Path(__file__).resolve().parents[2] / "protos"
KSERVE_PROTOS = ["inference/grpc_service.proto", "inference/model_config.proto"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout, env=env)
    assert done.returncode == 0, (cmd, done.stderr.decode()[-3000:])
    return done.stdout.decode()


def _tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def test_kserve_go_examples(server: Server, tmp_path: Path) -> None:
    """Debian: golang-go, golang-google-grpc-dev, golang-goprotobuf-dev, protobuf-compiler."""
    _tools("go", "protoc", "protoc-gen-go")
    gocode = Path("/usr/share/gocode")
    if not (gocode / "src/google.golang.org/grpc").is_dir():
        pytest.skip("grpc-go (golang-google-grpc-dev) is not installed")
    src = tmp_path / "src"
    (src / "seedclient").mkdir(parents=True)
    _run(["protoc", "-I", str(PROTOS), f"--go_out=plugins=grpc:{src}", *KSERVE_PROTOS], tmp_path)
    shutil.copy(SEED_CLIENTS / "kserve_client.go", src / "seedclient" / "main.go")
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{tmp_path}:{gocode}")
    env.setdefault("GOCACHE", str(tmp_path / "cache"))
    _run(["go", "build", "-o", "client", "seedclient"], tmp_path, env)
    (tmp_path / "image.png").write_bytes(_image(9))
    out = json.loads(_run([str(tmp_path / "client"), server.grpc_url, "image.png"], tmp_path))
    assert out["health"] == {"live": True, "ready": True, "model_ready": True}
    assert out["server_name"] == "ovtrio"
    assert out["inputs"] == ["input_name FP32"]
    assert out["image_shape"] == [1, H, W, 3]
    raw = __import__("base64").b64decode(out["numpy_raw"])
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4"), np.arange(10, dtype=np.float32) + 1)


def test_kserve_java_examples(server: Server, tmp_path: Path) -> None:
    """Debian: default-jdk, libgrpc-java, libnetty-java, libperfmark-java,
    protobuf-compiler-grpc-java-plugin (a missing jar shows as a call that never ends)."""
    _tools("javac", "java", "protoc", "grpc_java_plugin")
    gen, classes = tmp_path / "gen", tmp_path / "classes"
    gen.mkdir()
    plugin = f"--plugin=protoc-gen-grpc-java={shutil.which('grpc_java_plugin')}"
    _run(
        [
            "protoc",
            "-I",
            str(PROTOS),
            f"--java_out={gen}",
            plugin,
            f"--grpc-java_out={gen}",
            *KSERVE_PROTOS,
        ],
        tmp_path,
    )
    shutil.copy(SEED_CLIENTS / "KServeClient.java", gen)
    classpath = "/usr/share/java/*"
    sources = [str(p) for p in gen.rglob("*.java")]
    _run(["javac", "-nowarn", "-cp", classpath, "-d", str(classes), *sources], tmp_path)
    (tmp_path / "image.png").write_bytes(_image(10))
    out = _run(
        [
            "java",
            "-cp",
            f"{classes}:{classpath}",
            "KServeClient",
            "127.0.0.1",
            str(server.grpc_port),
            "image.png",
        ],
        tmp_path,
        timeout=120,
    ).splitlines()
    assert out == [
        "health true true true",
        "server ovtrio",
        "model input_name FP32",
        f"image [1, {H}, {W}, 3]",
        "numpy " + " ".join(f"{float(i)}" for i in range(1, 11)),
    ]
