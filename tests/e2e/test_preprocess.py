"""--mean, --scale, --color_format, --precision on a real server: the numbers OVMS gives."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
import requests

from tests import models
from tests.e2e.conftest import ROOT, Server, start_server

MEAN = np.array([1.0, 2.0, 3.0], np.float32)
SCALE = np.array([2.0, 4.0, 8.0], np.float32)


def nchw_identity(base: Path) -> Path:
    """out = in, FP32 [-1, 3, 2, 2] (NCHW)."""
    x = ops.parameter(ov.PartialShape([-1, 3, 2, 2]), ov.Type.f32, name="in")
    y = models._named(ops.add(x, ops.constant(np.float32(0))), "out")
    return models._save(ov.Model([y], [x], "nchw_identity"), base)


def infer(server: Server, data: np.ndarray, datatype: str) -> np.ndarray:
    body = {
        "inputs": [
            {"name": "in", "shape": list(data.shape), "datatype": datatype, "data": data.tolist()}
        ]
    }
    reply = requests.post(f"{server.http}/v2/models/m/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    out = reply.json()["outputs"][0]
    return np.array(out["data"], np.float32).reshape(out["shape"])


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nchw_identity(tmp_path_factory.mktemp("preprocess") / "m")


@pytest.fixture
def serve() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def test_mean_and_scale_per_channel(serve: list[Server], model_path: Path, tmp_path: Path) -> None:
    flags = ["--layout", "NCHW", "--mean", "[1,2,3]", "--scale", "[2,4,8]"]
    server = start_server(tmp_path, ["--model_name", "m", "--model_path", str(model_path), *flags])
    serve.append(server)
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) * 3
    expected = (data - MEAN[None, :, None, None]) / SCALE[None, :, None, None]
    np.testing.assert_allclose(infer(server, data, "FP32"), expected, rtol=1e-6, atol=1e-6)


def test_nhwc_uint8_clients_with_one_mean_and_scale(
    serve: list[Server], model_path: Path, tmp_path: Path
) -> None:
    """OVMS' classic image setup: clients send NHWC UINT8, the model gets (x - 127.5) / 127.5
    in NCHW FP32; the metadata shows what clients send."""
    flags = [
        "--layout", "NHWC:NCHW",
        "--precision", "UINT8:FP32",
        "--mean", "127.5",
        "--scale", "127.5",
    ]  # fmt: skip
    server = start_server(tmp_path, ["--model_name", "m", "--model_path", str(model_path), *flags])
    serve.append(server)
    meta = requests.get(f"{server.http}/v2/models/m", timeout=10).json()
    assert meta["inputs"] == [{"name": "in", "datatype": "UINT8", "shape": [-1, 2, 2, 3]}]
    data = np.array([0, 51, 127, 255] * 3, np.uint8).reshape(1, 2, 2, 3)
    expected = ((data.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(infer(server, data, "UINT8"), expected, rtol=1e-6, atol=1e-6)


def test_color_format_swaps_the_channels(
    serve: list[Server], model_path: Path, tmp_path: Path
) -> None:
    """``BGR:RGB``: clients send RGB (NHWC), the model gets BGR."""
    flags = ["--layout", "NHWC:NCHW", "--color_format", "BGR:RGB"]
    server = start_server(tmp_path, ["--model_name", "m", "--model_path", str(model_path), *flags])
    serve.append(server)
    rgb = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(infer(server, rgb, "FP32"), rgb[..., ::-1].transpose(0, 3, 1, 2))


def run_ovtrio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ovtrio", "--rest_port", "0", "--port", "1", *args],
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--layout", "NCHW", "--mean", "[1,2,x]"],
            "ovtrio: error: --mean: couldn't parse mean parameter: The provided float is in "
            'wrong format: "[1,2,x]" (a number, or one per channel like '
            '"[123.675,116.28,103.53]")',
        ),
        (["--scale", "2"], "ovtrio: error: --scale parameter requires --layout to be set"),
    ],
)
def test_bad_value_exits_1_with_one_line(model_path: Path, flags: list[str], message: str) -> None:
    result = run_ovtrio("--model_name", "m", "--model_path", str(model_path), *flags)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [message]


def test_flags_refused_with_config_path(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"model_config_list": []}')
    result = run_ovtrio("--config_path", str(path), "--mean", "1")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "ovtrio: error: --mean cannot be used with --config_path (model parameters on the "
        "command line are exclusive with the config file)"
    ]


def test_a_per_channel_mean_without_channels_fails_the_load(
    serve: list[Server], model_path: Path, tmp_path: Path
) -> None:
    """The layout has no ``C``: OpenVINO refuses the step; the version is not AVAILABLE and its
    status says why."""
    flags = ["--layout", "N...", "--mean", "[1,2,3]"]
    server = start_server(
        tmp_path,
        ["--model_name", "m", "--model_path", str(model_path), *flags],
        wait_ready=False,
    )
    serve.append(server)
    for _ in range(600):
        try:
            reply = requests.get(f"{server.http}/v1/models/m", timeout=1)
        except requests.ConnectionError:
            reply = None
        if reply is not None and reply.status_code == 200:
            status = reply.json()["model_version_status"][0]
            if status["status"]["error_code"] != "OK":
                break
        time.sleep(0.1)
    else:
        pytest.fail(f"no load failure reported:\n{server.log()}")
    assert "preprocessing cannot be applied" in server.log()
    assert "channels" in server.log()
