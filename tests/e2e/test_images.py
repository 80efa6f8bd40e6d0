"""Encoded images (JPEG, PNG) as model inputs, on both APIs and every client the seeds show.

Each answer is compared with the same image decoded by OpenCV in the test and fed as a tensor.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator

import cv2
import grpc
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.e2e.conftest import Server, ovms_client, serve_models

pytestmark = pytest.mark.e2e

H = W = 32


def _identity(shape: list[int]) -> ov.Model:
    x = ops.parameter(ov.PartialShape(shape), ov.Type.f32, name="in")
    y = ops.multiply(x, ops.constant(np.float32(1)))
    y.output(0).get_tensor().set_names({"out"})
    return ov.Model([y.output(0)], [x], "identity")


@pytest.fixture(
    scope="module",
    params=[(), ("--rest_workers", "2", "--grpc_workers", "2")],
    ids=["one-process", "workers"],
)
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """Every test runs against one process and against front-end workers, which decode the
    images themselves (the engine receives the decoded tensor)."""
    root = tmp_path_factory.mktemp("images")
    for name, shape in (
        ("nhwc", [-1, H, W, 3]),
        ("nchw", [-1, 3, H, W]),
        ("dyn", [-1, -1, -1, 3]),
        ("one", [1, H, W, 3]),
    ):
        (root / name / "1").mkdir(parents=True)
        ov.save_model(_identity(shape), str(root / name / "1" / "model.xml"))
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    entries = [
        {"name": "nhwc", "base_path": "nhwc", "layout": "NHWC", "plugin_config": f32},
        {"name": "nchw", "base_path": "nchw", "layout": "NHWC:NCHW", "plugin_config": f32},
        {"name": "nchw_plain", "base_path": "nchw", "plugin_config": f32},
        {"name": "dyn", "base_path": "dyn", "plugin_config": f32},
        {"name": "one", "base_path": "one", "plugin_config": f32},
    ]
    with serve_models(root, entries, request.param) as srv:
        yield srv


def image(seed: int, h: int = 48, w: int = 40, ext: str = ".png", channels: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, pixels)
    assert ok
    return buf.tobytes()


def expected(data: bytes, size: tuple[int, int] | None = (W, H)) -> np.ndarray:
    """What the server must compute: OpenCV decode (BGR), resize, float32."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if size is not None and pixels.shape[1::-1] != size:
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR)
    return pixels.astype(np.float32)


IMAGES = [image(1), image(2, 20, 30), image(3, 32, 32, ".jpg")]


def test_tritonclient_grpc_and_http_batch_of_images(server: Server) -> None:
    want = np.stack([expected(b) for b in IMAGES])
    batch = np.array(IMAGES, dtype=object)
    g = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("in", [len(IMAGES)], "BYTES")
    inp.set_data_from_numpy(batch)
    np.testing.assert_array_equal(g.infer("nhwc", [inp]).as_numpy("out"), want)
    h = httpclient.InferenceServerClient(server.rest_url)
    hin = httpclient.InferInput("in", [len(IMAGES)], "BYTES")
    hin.set_data_from_numpy(batch, binary_data=True)
    np.testing.assert_array_equal(h.infer("nhwc", [hin]).as_numpy("out"), want)


def test_nchw_model_with_layout_setting_takes_images(server: Server) -> None:
    g = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("in", [1], "BYTES")
    inp.set_data_from_numpy(np.array([IMAGES[0]], dtype=object))
    out = g.infer("nchw", [inp]).as_numpy("out")
    # the input is served as NHWC (the transposition is inside the model); the output stays NCHW
    np.testing.assert_array_equal(out, expected(IMAGES[0])[None].transpose(0, 3, 1, 2))
    meta = g.get_model_metadata("nchw", as_json=True)
    assert meta["inputs"][0]["shape"] == ["-1", str(H), str(W), "3"]


def test_seed_rest_example_without_binary_data_size(server: Server) -> None:
    header = json.dumps({"inputs": [{"name": "in", "shape": [1], "datatype": "BYTES"}]}).encode()
    r = requests.post(
        f"{server.http}/v2/models/nhwc/versions/0/infer",
        data=header + IMAGES[2],
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["shape"] == [1, H, W, 3]
    np.testing.assert_array_equal(
        np.array(out["data"], np.float32).reshape(1, H, W, 3), expected(IMAGES[2])[None]
    )


def test_seed_rest_example_with_comma_sizes(server: Server) -> None:
    sizes = ",".join(str(len(b)) for b in IMAGES[:2])
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "in",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": sizes},
                }
            ]
        }
    ).encode()
    r = requests.post(
        f"{server.http}/v2/models/nhwc/infer",
        data=header + IMAGES[0] + IMAGES[1],
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"] == [2, H, W, 3]


def test_seed_grpc_bytes_contents_and_unprefixed_raw(server: Server) -> None:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
    req = service_pb2.ModelInferRequest(model_name="nhwc")
    t = req.inputs.add(name="in", datatype="BYTES", shape=[1])
    t.contents.bytes_contents.append(IMAGES[0])
    resp = stub.ModelInfer(req)
    np.testing.assert_array_equal(
        np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(1, H, W, 3),
        expected(IMAGES[0])[None],
    )
    # Java/Go examples: the file's bytes as the only raw_input_contents entry, no length prefix
    req = service_pb2.ModelInferRequest(model_name="nhwc")
    req.inputs.add(name="in", datatype="BYTES", shape=[1])
    req.raw_input_contents.append(IMAGES[1])
    resp = stub.ModelInfer(req)
    np.testing.assert_array_equal(
        np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(1, H, W, 3),
        expected(IMAGES[1])[None],
    )
    # tritonclient's framing: length-prefixed
    req = service_pb2.ModelInferRequest(model_name="nhwc")
    req.inputs.add(name="in", datatype="BYTES", shape=[2])
    req.raw_input_contents.append(b"".join(struct.pack("<I", len(b)) + b for b in IMAGES[:2]))
    assert stub.ModelInfer(req).outputs[0].shape == [2, H, W, 3]


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_ovmsclient_binary_input(server: Server, transport: str) -> None:
    client = ovms_client(server, transport)
    out = client.predict(inputs={"in": IMAGES[0]}, model_name="nhwc")
    np.testing.assert_array_equal(out, expected(IMAGES[0])[None])


def test_tfs_rest_b64(server: Server) -> None:
    body = {"instances": [{"in": {"b64": base64.b64encode(b).decode()}} for b in IMAGES[:2]]}
    r = requests.post(f"{server.http}/v1/models/nhwc:predict", json=body)
    assert r.status_code == 200, r.text
    preds = np.array(r.json()["predictions"], np.float32)
    np.testing.assert_array_equal(preds, np.stack([expected(b) for b in IMAGES[:2]]))


def test_dynamic_hw_keeps_size_and_requires_equal_resolutions(server: Server) -> None:
    g = grpcclient.InferenceServerClient(server.grpc_url)
    same = np.array([image(7, 20, 24), image(8, 20, 24, ".jpg")], dtype=object)
    inp = grpcclient.InferInput("in", [2], "BYTES")
    inp.set_data_from_numpy(same)
    out = g.infer("dyn", [inp]).as_numpy("out")
    assert out.shape == (2, 20, 24, 3)
    np.testing.assert_array_equal(out[0], expected(same[0], None))


ERRORS = [
    ("corrupt", "nhwc", [b"\xff\xd8\xff\xe0garbage"], "not a valid JPEG or PNG"),
    ("text", "nhwc", [b"hello"], "not a valid JPEG or PNG"),
    ("gray to 3 channels", "nhwc", [image(4, channels=1)], "Invalid number of channels"),
    ("rgba to 3 channels", "nhwc", [image(5, channels=4)], "Invalid number of channels"),
    ("mixed resolutions", "dyn", [image(6, 20, 24), image(6, 21, 24)], "different resolutions"),
    ("wrong number of images", "one", IMAGES[:2], "batch size"),
    ("nchw without layout", "nchw_plain", IMAGES[:1], "NHWC"),
]


@pytest.mark.parametrize(
    ("model", "items", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_bad_images_are_client_errors(
    server: Server, model: str, items: list[bytes], message: str
) -> None:
    g = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("in", [len(items)], "BYTES")
    inp.set_data_from_numpy(np.array(items, dtype=object))
    with pytest.raises(InferenceServerException) as info:
        g.infer(model, [inp])
    assert "INVALID_ARGUMENT" in str(info.value)
    assert message in str(info.value)
    h = httpclient.InferenceServerClient(server.rest_url)
    hin = httpclient.InferInput("in", [len(items)], "BYTES")
    hin.set_data_from_numpy(np.array(items, dtype=object), binary_data=True)
    r = requests.post(
        f"{server.http}/v2/models/{model}/infer",
        data=json.dumps(
            {
                "inputs": [
                    {
                        "name": "in",
                        "shape": [len(items)],
                        "datatype": "BYTES",
                        "data": [base64.b64encode(b).decode() for b in items],
                    }
                ]
            }
        ),
    )
    assert r.status_code == 400  # base64 text is not an image either: still a client error
    with pytest.raises(InferenceServerException, match=message):
        h.infer(model, [hin])


def test_decompression_bomb_refused(server: Server) -> None:
    # a PNG header claiming 100000 x 100000 pixels, no pixel data
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    )
    g = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("in", [1], "BYTES")
    inp.set_data_from_numpy(np.array([bomb], dtype=object))
    with pytest.raises(InferenceServerException, match=r"RESOURCE_EXHAUSTED|pixels"):
        g.infer("nhwc", [inp])
    assert requests.get(f"{server.http}/v2/health/ready").status_code == 200


def test_a_scalar_is_one_image(server: Server) -> None:
    """TensorFlow's ``make_tensor_proto(data)`` of one encoded image has no shape; a KServe
    BYTES tensor of shape [] is the same: one image, a batch of 1."""
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
    req = service_pb2.ModelInferRequest(model_name="nhwc")
    req.inputs.add(name="in", datatype="BYTES", shape=[]).contents.bytes_contents.append(IMAGES[0])
    resp = stub.ModelInfer(req)
    assert list(resp.outputs[0].shape) == [1, H, W, 3]
    np.testing.assert_array_equal(
        np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(1, H, W, 3),
        expected(IMAGES[0])[None],
    )
    from ovmsclient.tfs_compat.protos.tensorflow.core.framework import tensor_pb2, types_pb2
    from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    tfs = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc_url))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "one"
    request.inputs["in"].CopyFrom(
        tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[IMAGES[1]])
    )
    out = tfs.Predict(request, 10.0).outputs["out"]
    assert [d.size for d in out.tensor_shape.dim] == [1, H, W, 3]
    np.testing.assert_array_equal(
        np.frombuffer(out.tensor_content, "<f4").reshape(1, H, W, 3), expected(IMAGES[1])[None]
    )
