"""``mapping_config.json`` end to end: the aliases on every API (tritonclient over KServe gRPC
and REST, ovmsclient over TF Serving gRPC and REST), ``shape`` and ``layout`` keyed by alias,
each mapping ovtrio cannot honour refused at load with the reason in the version's status, and
a changed mapping taking effect when the model reloads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests import models
from tests.e2e.conftest import F32_EXACT, Server, ovms_client, serve_models

pytestmark = pytest.mark.e2e

MAPPING = {"inputs": {"x": "first", "y": "second"}, "outputs": {"sum": "plus"}}
"""multi_model (x, y -> sum, diff) with three of its four tensors renamed."""

REFUSED: dict[str, tuple[Any, dict[str, Any], str]] = {
    # model name: (mapping_config.json content, config.json settings, the status' reason)
    "clash": ({"inputs": {"x": "y"}}, {}, "inputs 'x' and 'y' would both be named 'y'"),
    "twice": (
        {"outputs": {"sum": "out", "diff": "out"}},
        {},
        "outputs 'sum' and 'diff' would both be named 'out'",
    ),
    "unknown_tensor": ({"inputs": {"z": "zed"}}, {}, "'z' is not an input of the model"),
    "output_as_input": ({"inputs": {"sum": "s"}}, {}, "'sum' is not an input of the model"),
    "not_json": ("{'inputs': {}}", {}, "mapping_config.json: invalid JSON"),
    "unknown_key": (
        {"inputs": {"x": "first"}, "input": {}},
        {},
        "mapping_config.json: unknown key 'input'",
    ),
    "not_a_string": ({"inputs": {"x": 1}}, {}, "mapping_config.json: inputs.x: expected"),
    "not_an_object": ({"inputs": ["x", "first"]}, {}, "inputs: expected an object"),
    "shape_own_name": (
        {"inputs": {"x": "first"}},
        {"shape": {"x": "(2,4)"}},
        "shape names 'x', which mapping_config.json renames to 'first'",
    ),
    "layout_own_name": (
        {"outputs": {"sum": "plus"}},
        {"layout": {"sum": "NC"}},
        "layout names 'sum', which mapping_config.json renames to 'plus'",
    ),
}


def _write_mapping(base: Path, content: Any, version: int = 1) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (base / str(version) / "mapping_config.json").write_text(text)


def _entries(reload_addend: float = 0.0) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = [
        {"name": "mapped", "base_path": "models/mapped", "plugin_config": F32_EXACT},
        {
            # shape and layout keyed by the aliases: "first" static (2,4); "second" sent
            # transposed (clients send CN, the model gets NC)
            "name": "shaped",
            "base_path": "models/mapped",
            "plugin_config": F32_EXACT,
            "shape": {"first": "(2,4)"},
            "layout": {"second": "CN:NC"},
        },
        {
            "name": "reloaded",
            "base_path": "models/reloaded",
            "plugin_config": {**F32_EXACT, "INFERENCE_NUM_THREADS": 1 + int(reload_addend)},
        },
    ]
    for name, (_, settings, _) in REFUSED.items():
        entries.append({"name": name, "base_path": f"models/{name}", **settings})
    return entries


def _rewrite_config(root: Path, reload_addend: float) -> None:
    """Replace ``root/config.json`` in one step, so the polling server never reads half of it."""
    entries = _entries(reload_addend)
    cfg = root / "config.json"
    tmp = root / "config.json.tmp"
    tmp.write_text(json.dumps({"model_config_list": [{"config": e} for e in entries]}))
    tmp.replace(cfg)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("mapping")
    repo = root / "models"
    models.multi_model(repo / "mapped")
    _write_mapping(repo / "mapped", MAPPING)
    models.add_model(repo / "reloaded")
    _write_mapping(repo / "reloaded", {"inputs": {"b": "before"}})
    for name, (content, _, _) in REFUSED.items():
        models.multi_model(repo / name)
        _write_mapping(repo / name, content)
    with serve_models(root, _entries(), ["--file_system_poll_wait_seconds", "1"]) as srv:
        yield srv


def _ones(shape: tuple[int, ...], value: float = 1.0) -> np.ndarray:
    return np.full(shape, value, np.float32)


# -- KServe ----------------------------------------------------------------------------------


def test_kserve_metadata_uses_the_aliases(server: Server) -> None:
    expected_inputs = [
        {"name": "first", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "second", "datatype": "FP32", "shape": [-1, 4]},
    ]
    expected_outputs = [
        {"name": "plus", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "diff", "datatype": "FP32", "shape": [-1, 4]},
    ]
    meta = httpclient.InferenceServerClient(server.rest_url).get_model_metadata("mapped")
    assert meta["inputs"] == expected_inputs
    assert meta["outputs"] == expected_outputs
    g = grpcclient.InferenceServerClient(server.grpc_url).get_model_metadata("mapped", as_json=True)
    assert [(t["name"], t["datatype"]) for t in g["inputs"]] == [
        ("first", "FP32"),
        ("second", "FP32"),
    ]
    assert [t["name"] for t in g["outputs"]] == ["plus", "diff"]


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_kserve_infer_with_aliases(server: Server, transport: str) -> None:
    client: Any = grpcclient if transport == "grpc" else httpclient
    url = server.grpc_url if transport == "grpc" else server.rest_url
    conn = client.InferenceServerClient(url)
    x, y = _ones((3, 4), 5.0), _ones((3, 4), 2.0)
    inputs = [
        client.InferInput("first", [3, 4], "FP32"),
        client.InferInput("second", [3, 4], "FP32"),
    ]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(y)
    result = conn.infer("mapped", inputs)
    np.testing.assert_array_equal(result.as_numpy("plus"), x + y)
    np.testing.assert_array_equal(result.as_numpy("diff"), x - y)
    requested = [client.InferRequestedOutput("plus")]
    only = conn.infer("mapped", inputs, outputs=requested)
    np.testing.assert_array_equal(only.as_numpy("plus"), x + y)
    assert only.as_numpy("diff") is None
    # the model's own names are not the public ones any more
    own = [client.InferInput("x", [3, 4], "FP32"), client.InferInput("y", [3, 4], "FP32")]
    own[0].set_data_from_numpy(x)
    own[1].set_data_from_numpy(y)
    with pytest.raises(InferenceServerException, match="Missing input"):
        conn.infer("mapped", own)


def test_shape_and_layout_keyed_by_alias(server: Server) -> None:
    meta = httpclient.InferenceServerClient(server.rest_url).get_model_metadata("shaped")
    assert meta["inputs"] == [
        {"name": "first", "datatype": "FP32", "shape": [2, 4]},
        {"name": "second", "datatype": "FP32", "shape": [4, -1]},
    ]
    conn = grpcclient.InferenceServerClient(server.grpc_url)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y = np.arange(8, dtype=np.float32).reshape(2, 4) * 10
    inputs = [
        grpcclient.InferInput("first", [2, 4], "FP32"),
        grpcclient.InferInput("second", [4, 2], "FP32"),
    ]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(np.ascontiguousarray(y.T))
    result = conn.infer("shaped", inputs)
    np.testing.assert_array_equal(result.as_numpy("plus"), x + y)


# -- TensorFlow Serving ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_tfs_metadata_and_predict_with_aliases(server: Server, transport: str) -> None:
    client = ovms_client(server, transport)
    meta = client.get_model_metadata(model_name="mapped")
    assert meta["inputs"] == {
        "first": {"shape": [-1, 4], "dtype": "DT_FLOAT"},
        "second": {"shape": [-1, 4], "dtype": "DT_FLOAT"},
    }
    assert meta["outputs"] == {
        "plus": {"shape": [-1, 4], "dtype": "DT_FLOAT"},
        "diff": {"shape": [-1, 4], "dtype": "DT_FLOAT"},
    }
    x, y = _ones((1, 4), 3.0), _ones((1, 4), 1.0)
    out = client.predict(inputs={"first": x, "second": y}, model_name="mapped")
    assert set(out) == {"plus", "diff"}
    np.testing.assert_array_equal(out["plus"], x + y)
    np.testing.assert_array_equal(out["diff"], x - y)


# -- refusals --------------------------------------------------------------------------------


def _status(server: Server, name: str) -> dict[str, Any]:
    response = requests.get(f"{server.http}/v1/models/{name}", timeout=10)
    assert response.status_code == 200, response.text
    (status,) = response.json()["model_version_status"]
    return status  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_mapping_that_cannot_be_honoured_fails_the_version(server: Server, name: str) -> None:
    reason = REFUSED[name][2]
    status = _status(server, name)
    assert status["state"] == "LOADING"
    assert status["status"]["error_code"] == "UNKNOWN"
    assert reason in status["status"]["error_message"]
    assert f"{name} version 1 failed to load" in server.log()
    with pytest.raises(InferenceServerException):
        grpcclient.InferenceServerClient(server.grpc_url).get_model_metadata(name)


# -- reload ----------------------------------------------------------------------------------


def test_changed_mapping_applies_when_the_model_reloads(server: Server) -> None:
    """As any file inside a version folder, the mapping is read when the version loads: a
    changed mapping_config.json takes effect when the model reloads (here: its settings
    change in config.json)."""
    root = server.log_path.parent
    client = httpclient.InferenceServerClient(server.rest_url)
    assert client.get_model_metadata("reloaded")["inputs"][0]["name"] == "before"
    _write_mapping(root / "models" / "reloaded", {"inputs": {"b": "after"}})
    _rewrite_config(root, reload_addend=1.0)
    deadline = time.monotonic() + 60
    while client.get_model_metadata("reloaded")["inputs"][0]["name"] != "after":
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.2)
    inp = httpclient.InferInput("after", [1, 10], "FP32")
    inp.set_data_from_numpy(_ones((1, 10)))
    np.testing.assert_array_equal(client.infer("reloaded", [inp]).as_numpy("a"), _ones((1, 10), 2))


def test_tfs_rest_row_format_with_aliases(server: Server) -> None:
    body = {"instances": [{"first": [1, 2, 3, 4], "second": [1, 1, 1, 1]}]}
    response = requests.post(f"{server.http}/v1/models/mapped:predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    (row,) = response.json()["predictions"]
    assert row == {"plus": [2, 3, 4, 5], "diff": [0, 1, 2, 3]}
