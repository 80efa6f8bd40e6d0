"""DAG pipelines end to end: OpenVINO models and the C test libraries (built with gcc) in one
config.json, driven by tritonclient, ovmsclient and raw HTTP. Batching and cancellation are
shown by the counters the server reports (statistics extension), never by timing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from ovmsclient import make_grpc_client, make_http_client
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests import models
from tests.e2e.conftest import Server, start_server
from tests.e2e.test_batching import stats, wait_for
from tests.pipelines.conftest import node_libs  # noqa: F401  (the gcc fixture)

pytestmark = pytest.mark.e2e

F32 = {"INFERENCE_PRECISION_HINT": "f32"}
SLOW = 64


def src(node: str, alias: str) -> dict[str, str]:
    return {"node_name": node, "data_item": alias}


def tiny_node(name: str, source: dict[str, str], model: str = "tiny") -> dict[str, Any]:
    return {
        "name": name,
        "type": "DL model",
        "model_name": model,
        "inputs": [{"b": source}],
        "outputs": [{"data_item": "a", "alias": "sum"}],
    }


def custom(name: str, library: str, source: dict[str, str], **kw: Any) -> dict[str, Any]:
    outputs = kw.pop("outputs", [{"data_item": "out", "alias": "out"}])
    return {
        "name": name,
        "type": "custom",
        "library_name": library,
        "inputs": [{"in": source}],
        "outputs": outputs,
        **kw,
    }


def pipeline(name: str, nodes: list[dict[str, Any]], outputs: dict[str, Any], **kw: Any) -> Any:
    return {
        "name": name,
        "inputs": ["x"],
        "nodes": nodes,
        "outputs": [{k: v} for k, v in outputs.items()],
        **kw,
    }


X = src("request", "x")


def splitter(count: int) -> dict[str, Any]:
    """The demux library as a dynamic demultiplexer making ``count`` shards of the request."""
    outputs = [{"data_item": "out", "alias": "crops"}, {"data_item": "index", "alias": "index"}]
    return custom(
        "split", "demux", X, params={"count": str(count)}, demultiply_count=-1, outputs=outputs
    )


def image_pipeline(name: str, **kw: Any) -> Any:
    """The image_id model (UINT8 [-1,2,2,3]) alone: images in, pixels out."""
    node = {
        "name": "id",
        "type": "DL model",
        "model_name": "image_id",
        "inputs": [{"in": X}],
        "outputs": [{"data_item": "out", "alias": "pixels"}],
    }
    return pipeline(name, [node], {"y": src("id", "pixels")}, **kw)


PIPELINES = [
    pipeline(
        "chain",
        [
            tiny_node("t", X),
            custom("plus10", "add_const", src("t", "sum"), params={"add_value": "10"}),
        ],
        {"y": src("plus10", "out")},
    ),
    pipeline("any_batch", [tiny_node("t", X)], {"y": src("t", "sum")}, demultiply_count=-1),
    pipeline(
        "crops",
        [splitter(4), tiny_node("t", src("split", "crops"))],
        {"y": src("t", "sum"), "index": src("split", "index")},
    ),
    pipeline("empty", [splitter(0), tiny_node("t", src("split", "crops"))], {"y": src("t", "sum")}),
    pipeline(
        "py_chain",
        [
            tiny_node("t", X),
            {
                "name": "plus5",
                "type": "python",
                "callable": "tests.pipelines.pynodes:add",
                "params": {"add_value": "5"},
                "inputs": [{"in": src("t", "sum")}],
                "outputs": [{"data_item": "out", "alias": "out"}],
            },
        ],
        {"y": src("plus5", "out")},
    ),
    image_pipeline("images"),
    image_pipeline("images_any", demultiply_count=-1),
    pipeline("missing_model", [tiny_node("t", X, model="nope")], {"y": src("t", "sum")}),
    pipeline(
        "fails", [custom("bad", "broken", X, params={"mode": "fail"})], {"y": src("bad", "out")}
    ),
    pipeline(
        "slow_any",
        [
            {
                "name": "s",
                "type": "DL model",
                "model_name": "slow",
                "inputs": [{"x": X}],
                "outputs": [{"data_item": "y", "alias": "y"}],
            }
        ],
        {"y": src("s", "y")},
        demultiply_count=-1,
    ),
]


def write_config(root: Path, pipelines: list[Any], libs: dict[str, Path]) -> Path:
    entries = [
        {
            "name": "tiny",
            "base_path": "models/tiny",
            "plugin_config": F32,
            "dynamic_batching": {"mode": "on", "max_batch_size": 32, "max_delay_us": 20000},
        },
        {"name": "image_id", "base_path": "models/image_id", "plugin_config": F32},
        {
            "name": "slow",
            "base_path": "models/slow",
            "nireq": 1,
            "plugin_config": {"NUM_STREAMS": 1, **F32},
            "dynamic_batching": {"mode": "on", "max_batch_size": 2, "max_queue_size": 16},
        },
    ]
    cfg = {
        "model_config_list": [{"config": e} for e in entries],
        "custom_node_library_config_list": [
            {"name": name, "base_path": str(libs[name])}
            for name in ("add_const", "demux", "broken")
        ],
        "pipeline_config_list": pipelines,
    }
    path = root / "config.json"
    tmp = root / "config.json.tmp"
    tmp.write_text(json.dumps(cfg, indent=1))
    tmp.replace(path)
    return path


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    node_libs: dict[str, Path],  # noqa: F811
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("pipelines")
    models.add_model(root / "models" / "tiny")
    models.slow_model(root / "models" / "slow", channels=SLOW)
    models.identity_model(root / "models" / "image_id", "UINT8", shape=(-1, 2, 2, 3))
    cfg = write_config(root, PIPELINES, node_libs)
    srv = start_server(
        root,
        ["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0", "--metrics_enable"],
    )
    yield srv
    assert srv.stop() == 0, srv.log()
    assert "Traceback" not in srv.log(), srv.log()


def rows(n: int, width: int = 10) -> np.ndarray[Any, Any]:
    return np.arange(n * width, dtype=np.float32).reshape(n, width)


# -- every API --------------------------------------------------------------------------------


def test_chain_over_kserve_grpc_and_rest(server: Server) -> None:
    data = rows(2)
    inp = grpcclient.InferInput("x", [2, 10], "FP32")
    inp.set_data_from_numpy(data)
    result = grpcclient.InferenceServerClient(server.grpc_url).infer("chain", [inp])
    np.testing.assert_array_equal(result.as_numpy("y"), data + 11)
    assert result.get_response().model_version == "1"

    hinp = httpclient.InferInput("x", [2, 10], "FP32")
    hinp.set_data_from_numpy(data, binary_data=True)
    out = httpclient.InferenceServerClient(server.rest_url).infer(
        "chain", [hinp], outputs=[httpclient.InferRequestedOutput("y", binary_data=True)]
    )
    np.testing.assert_array_equal(out.as_numpy("y"), data + 11)

    body = {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [1.0] * 10}]}
    r = requests.post(f"{server.http}/v2/models/chain/versions/7/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model_name"] == "chain"
    assert r.json()["model_version"] == "1"
    assert r.json()["outputs"][0]["data"] == [12.0] * 10


def test_python_node(server: Server) -> None:
    """The server runs from the repository's root, so the test module is importable."""
    data = rows(3)
    inp = grpcclient.InferInput("x", [3, 10], "FP32")
    inp.set_data_from_numpy(data)
    result = grpcclient.InferenceServerClient(server.grpc_url).infer("py_chain", [inp])
    np.testing.assert_array_equal(result.as_numpy("y"), data + 6)


def test_encoded_images_into_a_pipeline(server: Server) -> None:
    """A BYTES input aimed at a 4-D pipeline input (NHWC-like) is decoded, as for a model."""
    pixels = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    ok, png = cv2.imencode(".png", pixels)
    assert ok
    inp = grpcclient.InferInput("x", [1], "BYTES")
    inp.set_data_from_numpy(np.array([png.tobytes()], dtype=np.object_))
    result = grpcclient.InferenceServerClient(server.grpc_url).infer("images", [inp])
    y = result.as_numpy("y")
    assert y.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(y[0], pixels)  # BGR in, BGR out (OVMS' default order)


def test_encoded_images_into_a_request_demultiplexer(server: Server) -> None:
    """A [N] BYTES batch aimed at the 5-D input of a pipeline demultiplexing the request
    becomes [N, 1, H, W, C] (OVMS' rule): one image per shard, gathered in order."""
    images = [np.full((2, 2, 3), 10 * (i + 1), dtype=np.uint8) for i in range(3)]
    images[1][0, 0] = (1, 2, 3)
    encoded = [cv2.imencode(".png", image)[1].tobytes() for image in images]
    meta = requests.get(f"{server.http}/v2/models/images_any", timeout=10).json()
    assert meta["inputs"][0]["shape"] == [-1, -1, 2, 2, 3]
    inp = grpcclient.InferInput("x", [3], "BYTES")
    inp.set_data_from_numpy(np.array(encoded, dtype=np.object_))
    result = grpcclient.InferenceServerClient(server.grpc_url).infer("images_any", [inp])
    y = result.as_numpy("y")
    assert y.shape == (3, 1, 2, 2, 3)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(y[i, 0], image)

    hinp = httpclient.InferInput("x", [3], "BYTES")
    hinp.set_data_from_numpy(np.array(encoded, dtype=np.object_), binary_data=True)
    out = httpclient.InferenceServerClient(server.rest_url).infer("images_any", [hinp])
    np.testing.assert_array_equal(out.as_numpy("y"), y)


def test_metadata_and_readiness(server: Server) -> None:
    meta = requests.get(f"{server.http}/v2/models/any_batch", timeout=10).json()
    assert meta["name"] == "any_batch"
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, -1, 10]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, -1, 10]}]
    assert requests.get(f"{server.http}/v2/models/chain/ready", timeout=10).status_code == 200
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert client.is_model_ready("chain", "3")
    assert not client.is_model_ready("missing_model")
    crops = client.get_model_metadata("crops")
    assert {o.name: list(o.shape) for o in crops.outputs} == {
        "index": [-1, 1, 1],
        "y": [-1, -1, 10],  # the model's batch is dynamic (OVMS: the same)
    }


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_ovmsclient_status_metadata_predict(server: Server, transport: str) -> None:
    client = (
        make_grpc_client(server.grpc_url)
        if transport == "grpc"
        else make_http_client(server.rest_url)
    )
    status = client.get_model_status(model_name="chain", model_version=5)
    assert list(status) == [1]
    assert status[1]["state"] == "AVAILABLE"
    meta = client.get_model_metadata(model_name="chain")
    assert meta["model_version"] == 1
    assert meta["inputs"] == {"x": {"shape": [-1, 10], "dtype": "DT_FLOAT"}}
    data = rows(3)
    np.testing.assert_array_equal(client.predict(inputs={"x": data}, model_name="chain"), data + 11)


def test_v1_config_lists_pipelines(server: Server) -> None:
    config = requests.get(f"{server.http}/v1/config", timeout=10).json()
    assert config["chain"]["model_version_status"][0]["state"] == "AVAILABLE"
    failed = config["missing_model"]["model_version_status"][0]
    assert failed["version"] == "1"
    assert failed["state"] == "LOADING"
    assert failed["status"]["error_code"] == "FAILED_PRECONDITION"
    assert "Pipeline definition has reference to missing model" in failed["status"]["error_message"]


def test_metrics_count_the_pipeline_and_its_node_runs(server: Server) -> None:
    def counts() -> dict[tuple[str, str, str], float]:
        text = requests.get(f"{server.http}/metrics", timeout=10).text
        found: dict[tuple[str, str, str], float] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "ovms_requests_success":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["interface"] == "REST":
                    key = (sample.labels["name"], sample.labels["version"], sample.labels["method"])
                    found[key] = found.get(key, 0) + sample.value
        return found

    before = counts()
    body = {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [1.0] * 10}]}
    r = requests.post(f"{server.http}/v2/models/chain/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    after = counts()
    for key in (("chain", "1", "ModelInfer"), ("tiny", "1", "ModelInfer")):
        assert after.get(key, 0) - before.get(key, 0) == 1, (key, before, after)


# -- demultiplexing ---------------------------------------------------------------------------


def test_request_level_demultiplexer_batches_the_shards(server: Server) -> None:
    """The common pattern: one model behind a dynamic demultiplexer on the request. Its 32
    shards reach the model's batcher together: fewer, larger batches than 32 inferences."""
    before = stats(server, "tiny")
    data = rows(32).reshape(32, 1, 10)
    inp = grpcclient.InferInput("x", [32, 1, 10], "FP32")
    inp.set_data_from_numpy(data)
    out = grpcclient.InferenceServerClient(server.grpc_url).infer("any_batch", [inp])
    np.testing.assert_array_equal(out.as_numpy("y"), data + 1)
    after = stats(server, "tiny")
    assert after["inference_count"] - before["inference_count"] == 32  # one per shard
    batches = after["ovtrio"]["batches"] - before["ovtrio"]["batches"]
    assert batches < 32, (before["batch_stats"], after["batch_stats"])
    assert max(b["batch_size"] for b in after["batch_stats"]) > 1


def test_custom_dynamic_demultiplexer_gathered_at_the_response(server: Server) -> None:
    data = rows(1)
    inp = grpcclient.InferInput("x", [1, 10], "FP32")
    inp.set_data_from_numpy(data)
    out = grpcclient.InferenceServerClient(server.grpc_url).infer("crops", [inp])
    y = out.as_numpy("y")
    assert y.shape == (4, 1, 10)
    for i in range(4):  # shard order, not completion order
        np.testing.assert_array_equal(y[i], data + i + 1)
    np.testing.assert_array_equal(out.as_numpy("index").ravel(), [0, 1, 2, 3])


def test_zero_results(server: Server) -> None:
    inp = grpcclient.InferInput("x", [1, 10], "FP32")
    inp.set_data_from_numpy(rows(1))
    with pytest.raises(InferenceServerException) as caught:
        grpcclient.InferenceServerClient(server.grpc_url).infer("empty", [inp])
    assert "ABORTED" in str(caught.value.status())
    assert "no content from custom node" in str(caught.value)
    body = {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
    r = requests.post(f"{server.http}/v2/models/empty/infer", json=body, timeout=30)
    assert r.status_code == 204
    assert r.content == b""
    tfs = {"inputs": {"x": [[0.0] * 10]}}
    r = requests.post(f"{server.http}/v1/models/empty:predict", json=tfs, timeout=30)
    assert r.status_code == 204
    assert r.content == b""


# -- failures ---------------------------------------------------------------------------------


def test_invalid_pipeline_is_reported_and_the_rest_serves(server: Server) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
    r = requests.post(f"{server.http}/v2/models/missing_model/infer", json=body, timeout=30)
    assert r.status_code == 404
    assert r.json()["error"] == "Pipeline is not loaded yet"
    inp = grpcclient.InferInput("x", [1, 10], "FP32")
    inp.set_data_from_numpy(rows(1))
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("missing_model", [inp])
    assert "UNAVAILABLE" in str(caught.value.status())
    status = requests.get(f"{server.http}/v1/models/missing_model", timeout=10).json()
    assert status["model_version_status"][0]["state"] == "LOADING"
    np.testing.assert_array_equal(client.infer("chain", [inp]).as_numpy("y"), rows(1) + 11)


def test_failing_node_fails_only_its_request(server: Server) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
    r = requests.post(f"{server.http}/v2/models/fails/infer", json=body, timeout=30)
    assert r.status_code == 500
    assert r.json()["error"].startswith("Custom node failed during execution")
    bad = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1.0] * 3}]}
    r = requests.post(f"{server.http}/v2/models/fails/infer", json=bad, timeout=30)
    assert r.status_code == 400
    assert r.json()["error"].startswith("Invalid input shape")
    assert requests.get(f"{server.http}/v2/health/ready", timeout=10).status_code == 200


def samples_run(st: dict[str, Any]) -> int:
    return sum(b["batch_size"] * b["compute_infer"]["count"] for b in st["batch_stats"])


def test_cancelled_pipeline_request_leaves_no_work_behind(server: Server) -> None:
    """Four shards of the slow model (batches of at most 2, one infer request): the first runs,
    the others wait in the batcher's queue. Cancelling the request takes the queued shards out
    of the queue, and they are never computed."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    settle = grpcclient.InferInput("x", [1, 1, SLOW], "FP32")
    settle.set_data_from_numpy(np.ones((1, 1, SLOW), np.float32))
    client.infer("slow_any", [settle])
    before = stats(server, "slow")
    inp = grpcclient.InferInput("x", [4, 1, SLOW], "FP32")
    inp.set_data_from_numpy(np.ones((4, 1, SLOW), np.float32))
    done: list[Any] = []
    ctx = client.async_infer("slow_any", [inp], lambda result, error: done.append(error))

    def some_queued() -> bool:
        st = stats(server, "slow")["ovtrio"]
        return bool(st["running_batches"]) and st["queue_length"] > 0

    wait_for(some_queued, "shards running and queued")
    ctx.cancel()
    wait_for(
        lambda: (
            stats(server, "slow")["ovtrio"]["cancelled_queued"]
            > before["ovtrio"]["cancelled_queued"]
        ),
        "the queued shards to leave the queue",
    )
    wait_for(lambda: stats(server, "slow")["ovtrio"]["running_batches"] == [], "an idle model")
    after = stats(server, "slow")
    assert after["ovtrio"]["queue_length"] == 0
    left = after["ovtrio"]["cancelled_queued"] - before["ovtrio"]["cancelled_queued"]
    computed = samples_run(after) - samples_run(before)
    assert computed + left <= 4, (computed, left)  # no shard both dequeued and computed
    assert computed < 4


# -- live changes -----------------------------------------------------------------------------


def test_pipelines_added_and_removed_by_reload(
    tmp_path: Path,
    node_libs: dict[str, Path],  # noqa: F811
) -> None:
    models.add_model(tmp_path / "models" / "tiny")
    (tmp_path / "models" / "slow").mkdir(parents=True)  # no version yet
    cfg = write_config(tmp_path, [PIPELINES[-1]], node_libs)
    srv = start_server(
        tmp_path, ["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"]
    )
    try:
        body = {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
        r = requests.post(f"{srv.http}/v2/models/chain/infer", json=body, timeout=30)
        assert r.status_code == 404
        assert r.json()["error"] == "Model with requested name is not found"
        status = requests.get(f"{srv.http}/v1/models/slow_any", timeout=10).json()
        assert status["model_version_status"][0]["status"]["error_code"] == "FAILED_PRECONDITION"
        r = requests.post(f"{srv.http}/v1/config/reload", timeout=60)
        assert r.status_code == 500
        assert r.json()["error"] == (
            "Reloading config file failed. Check server logs for more info."
        )
        # the model it needs appears: the pipeline comes back by itself
        models.slow_model(tmp_path / "models" / "slow", channels=SLOW, layers=1)
        requests.post(f"{srv.http}/v1/config/reload", timeout=60)
        status = requests.get(f"{srv.http}/v1/models/slow_any", timeout=10).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE", status
        write_config(tmp_path, PIPELINES[:1], node_libs)
        assert requests.post(f"{srv.http}/v1/config/reload", timeout=60).status_code in (200, 201)
        r = requests.post(f"{srv.http}/v2/models/chain/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [11.0] * 10
        # a changed pipeline: the custom node's params
        changed = json.loads(json.dumps(PIPELINES[:1]))
        changed[0]["nodes"][1]["params"]["add_value"] = "100"
        write_config(tmp_path, changed, node_libs)
        requests.post(f"{srv.http}/v1/config/reload", timeout=60)
        r = requests.post(f"{srv.http}/v2/models/chain/infer", json=body, timeout=30)
        assert r.json()["outputs"][0]["data"] == [101.0] * 10
        write_config(tmp_path, [], node_libs)
        requests.post(f"{srv.http}/v1/config/reload", timeout=60)
        r = requests.post(f"{srv.http}/v2/models/chain/infer", json=body, timeout=30)
        assert r.status_code == 404
        assert r.json()["error"] == "Pipeline is retired"
        status = requests.get(f"{srv.http}/v1/models/chain", timeout=10).json()
        assert status["model_version_status"][0]["state"] == "END"
    finally:
        assert srv.stop() == 0, srv.log()
    assert "Traceback" not in srv.log(), srv.log()


def test_sigterm_deinitializes_the_custom_nodes(
    tmp_path: Path,
    node_libs: dict[str, Path],  # noqa: F811
) -> None:
    """The library appends its count of live internal managers to a file at each
    deinitialize: after SIGTERM the last count is 0 (every node of the server's
    two pipelines deinitialized)."""
    models.add_model(tmp_path / "models" / "tiny")
    (tmp_path / "models" / "slow").mkdir(parents=True)
    (tmp_path / "models" / "image_id").mkdir(parents=True)
    cfg = write_config(tmp_path, PIPELINES[:1] + PIPELINES[2:3], node_libs)
    counts = tmp_path / "deinitialized.txt"
    srv = start_server(
        tmp_path,
        ["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"],
        env={**os.environ, "TESTNODE_DEINIT_FILE": str(counts)},
    )
    try:
        body = {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
        r = requests.post(f"{srv.http}/v2/models/chain/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        r = requests.post(f"{srv.http}/v2/models/crops/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert not counts.exists()
    finally:
        assert srv.stop() == 0, srv.log()
    assert "Traceback" not in srv.log(), srv.log()
    lines = counts.read_text().split()
    assert len(lines) == 2, lines  # one node of each library (add_const, demux)
    assert lines == ["0", "0"], lines
    assert "3 node libraries unloaded" in srv.log(), srv.log()  # broken.so too


# -- statistics extension and repository index ------------------------------------------------


def test_statistics_extension_counts_pipeline_requests(server: Server) -> None:
    """Success and failure counts and durations of a pipeline's requests, over REST and gRPC,
    any version asked reporting version 1."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    before = stats(server, "chain")
    failed_before = stats(server, "fails")["inference_stats"]["fail"]["count"]
    inp = grpcclient.InferInput("x", [2, 10], "FP32")
    inp.set_data_from_numpy(rows(2))
    for _ in range(3):
        client.infer("chain", [inp])
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
    r = requests.post(f"{server.http}/v2/models/fails/infer", json=body, timeout=30)
    assert r.status_code == 500

    after = stats(server, "chain")
    assert (after["name"], after["version"]) == ("chain", "1")
    success = after["inference_stats"]["success"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 3
    assert success["ns"] > before["inference_stats"]["success"]["ns"]
    assert after["inference_count"] - before["inference_count"] == 3
    assert after["last_inference"] > 0
    failed = stats(server, "fails")["inference_stats"]["fail"]
    assert failed["count"] - failed_before == 1
    assert failed["ns"] > 0

    r = requests.get(f"{server.http}/v2/models/chain/versions/3/stats", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["model_stats"][0]["version"] == "1"
    grpc_stats = client.get_inference_statistics("chain", as_json=True)["model_stats"]
    assert [(s["name"], s["version"]) for s in grpc_stats] == [("chain", "1")]
    assert int(grpc_stats[0]["inference_stats"]["success"]["count"]) >= 3
    everything = client.get_inference_statistics(as_json=True)["model_stats"]
    names = [s["name"] for s in everything]
    assert {"tiny", "chain", "crops", "missing_model"} <= set(names)


def test_repository_index_lists_pipelines_with_their_state(server: Server) -> None:
    r = requests.post(f"{server.http}/v2/repository/index", json={}, timeout=10)
    assert r.status_code == 200, r.text
    rows_ = {e["name"]: e for e in r.json()}
    assert rows_["chain"] == {"name": "chain", "version": "1", "state": "READY", "reason": ""}
    missing = rows_["missing_model"]
    assert missing["state"] == "UNAVAILABLE"
    assert missing["reason"].startswith("Pipeline definition has reference to missing model")
    assert rows_["tiny"]["state"] == "READY"

    client = grpcclient.InferenceServerClient(server.grpc_url)
    index = client.get_model_repository_index(as_json=True)["models"]
    states = {e["name"]: e.get("state") for e in index}
    assert states["chain"] == "READY"
    assert states["missing_model"] == "UNAVAILABLE"
    ready = requests.post(f"{server.http}/v2/repository/index", json={"ready": True}, timeout=10)
    names = {e["name"] for e in ready.json()}
    assert "chain" in names
    assert "missing_model" not in names


def test_metrics_count_custom_and_python_node_calls(server: Server) -> None:
    def node_samples() -> dict[tuple[str, str, str], float]:
        text = requests.get(f"{server.http}/metrics", timeout=10).text
        return {
            (sample.name, sample.labels["pipeline"], sample.labels["node"]): sample.value
            for family in text_string_to_metric_families(text)
            if family.name.startswith("ovtrio_node_")
            for sample in family.samples
        }

    before = node_samples()
    body = {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [1.0] * 10}]}
    for name in ("chain", "chain", "py_chain"):
        r = requests.post(f"{server.http}/v2/models/{name}/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
    after = node_samples()

    def grew(sample: str, pipeline: str, node: str) -> float:
        key = (sample, pipeline, node)
        return after[key] - before.get(key, 0)

    assert grew("ovtrio_node_executions_total", "chain", "plus10") == 2
    assert grew("ovtrio_node_executions_total", "py_chain", "plus5") == 1
    assert grew("ovtrio_node_abandoned_total", "chain", "plus10") == 0
    assert after[("ovtrio_node_running", "chain", "plus10")] == 0
    assert ("ovtrio_node_executions_total", "missing_model", "t") not in after  # no definition
