"""The newcomer path: config/config.json runs as shipped on the models scripts/example-models
makes, every model in it AVAILABLE and answering."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import requests

from tests.e2e.conftest import ROOT, start_server

EXAMPLE = ROOT / "config" / "config.json"


def test_example_config_serves_every_model(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "example-models"), str(tmp_path / "models")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert made.stdout.count("created ") == 4, made.stdout
    config_path = tmp_path / "config.json"
    shutil.copy(EXAMPLE, config_path)  # its relative base_paths now point into tmp_path
    example = json.loads(EXAMPLE.read_text())
    server = start_server(tmp_path, ["--config_path", str(config_path)])
    try:
        for entry in example["model_config_list"]:
            name = entry["config"]["name"]
            status = requests.get(f"{server.http}/v1/models/{name}", timeout=10).json()
            states = {s["version"]: s["state"] for s in status["model_version_status"]}
            assert states == {"1": "AVAILABLE", "2": "AVAILABLE"}, (name, status)

        for version, addend in (("1", 1.0), ("2", 2.0)):
            data = list(range(10))
            body = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": data}]}
            url = f"{server.http}/v2/models/dummy/versions/{version}/infer"
            reply = requests.post(url, json=body, timeout=30)
            assert reply.status_code == 200, reply.text
            assert reply.json()["outputs"][0]["data"] == [x + addend for x in data]

        # "layout": "NHWC:NCHW": clients send NHWC images
        meta = requests.get(f"{server.http}/v2/models/resnet", timeout=10).json()
        assert meta["inputs"] == [{"name": "data", "datatype": "FP32", "shape": [-1, 224, 224, 3]}]
        image = np.random.default_rng(0).random((2, 224, 224, 3), dtype=np.float32)
        body = {
            "inputs": [
                {"name": "data", "shape": [2, 224, 224, 3], "datatype": "FP32",
                 "data": image.ravel().tolist()}
            ]
        }  # fmt: skip
        reply = requests.post(f"{server.http}/v2/models/resnet/infer", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        out = reply.json()["outputs"][0]
        assert out["name"] == "prob" and out["shape"] == [2, 1000]
        np.testing.assert_allclose(np.array(out["data"]).reshape(2, 1000).sum(axis=1), 1, 1e-4)

        metrics = requests.get(f"{server.http}/metrics", timeout=10).text
        assert "ovms_requests_success" in metrics
    finally:
        assert server.stop() == 0


def test_the_readme_says_to_make_the_models_first() -> None:
    readme = (ROOT / "config" / "README.md").read_text()
    make = readme.index(".venv/bin/python scripts/example-models")
    assert make < readme.index(".venv/bin/ovtrio --config_path config/config.json")


PIPELINE_EXAMPLE = ROOT / "config" / "pipelines" / "config.json"


def test_example_pipelines_serve(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "example-models"), "--pipelines",
         str(tmp_path / "models")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )  # fmt: skip
    assert made.stdout.count("created ") == 3, made.stdout
    config_path = tmp_path / "config.json"
    shutil.copy(PIPELINE_EXAMPLE, config_path)
    server = start_server(tmp_path, ["--config_path", str(config_path)])
    try:
        meta = requests.get(f"{server.http}/v2/models/any_batch", timeout=10).json()
        assert meta["inputs"] == [
            {"name": "image", "datatype": "FP32", "shape": [-1, -1, 3, 32, 32]}
        ]
        images = np.random.default_rng(0).random((5, 1, 3, 32, 32), dtype=np.float32)
        body = {
            "inputs": [
                {"name": "image", "shape": [5, 1, 3, 32, 32], "datatype": "FP32",
                 "data": images.ravel().tolist()}
            ]
        }  # fmt: skip
        reply = requests.post(f"{server.http}/v2/models/any_batch/infer", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        (scores,) = reply.json()["outputs"]
        assert scores["shape"] == [5, 1, 10]
        assert np.allclose(np.array(scores["data"]).reshape(5, 10).sum(axis=1), 1.0, atol=1e-4)

        body["inputs"][0]["shape"] = [1, 3, 32, 32]
        body["inputs"][0]["data"] = images[0].ravel().tolist()
        reply = requests.post(f"{server.http}/v2/models/ensemble/infer", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        out = {o["name"]: np.array(o["data"]) for o in reply.json()["outputs"]}
        assert set(out) == {"scores", "scores_a"}
        assert np.allclose(out["scores"].sum(), 1.0, atol=1e-4)
    finally:
        assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log()
