"""Triton tooling: the model configuration extension (checked against Triton's own schema through
tritonclient's protobuf classes) and perf_analyzer driving ovtrio over gRPC and HTTP."""

from __future__ import annotations

import re
import subprocess

import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2

from tests import perf_analyzer
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


def test_model_config_rest(kserve_server: Server) -> None:
    cfg = requests.get(f"{kserve_server.http}/v2/models/dummy/config").json()
    assert cfg["name"] == "dummy"
    assert cfg["platform"] == "openvino"
    assert cfg["max_batch_size"] == 16
    assert cfg["input"] == [
        {
            "name": "b",
            "data_type": "TYPE_FP32",
            "format": "FORMAT_NONE",
            "dims": [10],
            "is_shape_tensor": False,
            "allow_ragged_batch": False,
            "optional": False,
        }
    ]
    assert cfg["output"][0]["dims"] == [10]
    assert cfg["dynamic_batching"]["preferred_batch_size"]
    static = requests.get(f"{kserve_server.http}/v2/models/static/versions/1/config").json()
    assert static["max_batch_size"] == 0
    assert static["input"][0]["dims"] == [1, 10]
    assert "dynamic_batching" not in static
    ranged = requests.get(f"{kserve_server.http}/v2/models/ranged/config").json()
    assert ranged["max_batch_size"] == 4
    assert requests.get(f"{kserve_server.http}/v2/models/nope/config").status_code == 404


def test_model_config_grpc_parses_with_tritons_schema(kserve_server: Server) -> None:
    client = grpcclient.InferenceServerClient(kserve_server.grpc_url)
    response = client.get_model_config("multi")
    config = response.config
    assert isinstance(config, model_config_pb2.ModelConfig)
    assert config.max_batch_size == 16
    assert [i.name for i in config.input] == ["x", "y"]
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert list(config.input[0].dims) == [4]
    assert config.HasField("dynamic_batching")
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert "model_configuration" in client.get_server_metadata().extensions


def test_statistics_grpc_and_rest_agree(kserve_server: Server) -> None:
    client = grpcclient.InferenceServerClient(kserve_server.grpc_url)
    g = client.get_inference_statistics("dummy", as_json=True)["model_stats"][0]
    r = requests.get(f"{kserve_server.http}/v2/models/dummy/stats").json()["model_stats"][0]
    assert g["name"] == r["name"] == "dummy"
    assert int(g.get("inference_count", 0)) <= r["inference_count"]
    assert set(r["inference_stats"]) >= {"success", "fail", "queue", "compute_infer"}


def _perf_analyzer() -> tuple[str, dict[str, str]]:
    binary, env, why = perf_analyzer.find()
    if binary is None:
        pytest.skip(why)
    return binary, env


@pytest.mark.parametrize(
    ("protocol", "model", "extra"),
    [
        ("grpc", "dummy", ["--concurrency-range", "1:4:3"]),
        ("http", "dummy", ["--concurrency-range", "2", "-b", "4"]),
        ("grpc", "static", ["--concurrency-range", "2"]),
    ],
)
def test_perf_analyzer(kserve_server: Server, protocol: str, model: str, extra: list[str]) -> None:
    binary, env = _perf_analyzer()
    url = kserve_server.grpc_url if protocol == "grpc" else kserve_server.rest_url
    proc = subprocess.run(
        [
            binary,
            "-m",
            model,
            "-u",
            url,
            "-i",
            protocol,
            "--measurement-interval",
            "500",
            # a shared CI machine is noisy: accept any stable-enough window rather than fail
            "--stability-percentage",
            "100",
            "--max-trials",
            "20",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rates = [float(x) for x in re.findall(r"throughput: ([0-9.]+) infer/sec", proc.stdout)]
    assert rates, proc.stdout
    assert all(r > 0 for r in rates)
