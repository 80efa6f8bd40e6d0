"""``--log_level DEBUG``: one line per inference request on every transport, load detail; the
libraries' own debug output only with TRACE; nothing per request at INFO."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from ovmsclient import make_grpc_client

from tests import models
from tests.e2e.conftest import Server, start_server

pytestmark = pytest.mark.e2e

REQUEST_LINE = re.compile(
    r" DEBUG ovtrio\.dataplane: (?P<api>KServe|TensorFlowServing) (?P<transport>REST|gRPC)"
    r" request: model (?P<model>\S+) version (?P<version>\S+): (?P<status>.+) in [0-9.]+ ms$"
)
DATA = np.arange(10, dtype=np.float32).reshape(1, 10)


def _server(tmp_path: Path, level: str) -> Server:
    models.add_model(tmp_path / "dummy")
    return start_server(
        tmp_path,
        ["--model_name", "dummy", "--model_path", str(tmp_path / "dummy"), "--log_level", level],
    )


def _requests(server: Server) -> None:
    """Three REST and three gRPC inference requests; one of each API fails."""
    row = {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": DATA.ravel().tolist()}
    body: dict[str, Any] = {"inputs": [row]}
    assert requests.post(f"{server.http}/v2/models/dummy/infer", json=body).status_code == 200
    wrong: dict[str, Any] = {
        "inputs": [{"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]
    }
    assert requests.post(f"{server.http}/v2/models/dummy/infer", json=wrong).status_code == 400
    tfs = requests.post(f"{server.http}/v1/models/dummy:predict", json={"instances": DATA.tolist()})
    assert tfs.status_code == 200

    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("b", [1, 10], "FP32")
    inp.set_data_from_numpy(DATA)
    client.infer("dummy", [inp])
    with pytest.raises(Exception, match="version is not found"):
        client.infer("dummy", [inp], model_version="7")
    client.close()
    make_grpc_client(server.grpc_url).predict(inputs={"b": DATA}, model_name="dummy")


def _served(tmp_path: Path, level: str) -> tuple[list[dict[str, str]], str]:
    """Serve ``_requests`` at ``level``: the per-request lines and the whole log."""
    server = _server(tmp_path, level)
    try:
        _requests(server)
        time.sleep(0.2)  # the log file is written by the server process
        log = server.log()
    finally:
        assert server.stop() == 0
    return [m.groupdict() for line in log.splitlines() if (m := REQUEST_LINE.search(line))], log


def test_debug_logs_one_line_per_request(tmp_path: Path) -> None:
    lines, log = _served(tmp_path, "DEBUG")
    assert lines == [
        {"api": "KServe", "transport": "REST", "model": "dummy", "version": "1", "status": "200"},
        {
            "api": "KServe",
            "transport": "REST",
            "model": "dummy",
            "version": "1",
            "status": "400 (Invalid input shape - Expected: (-1,10); Actual: (1,2); input name: b)",
        },
        {
            "api": "TensorFlowServing",
            "transport": "REST",
            "model": "dummy",
            "version": "1",
            "status": "200",
        },
        {"api": "KServe", "transport": "gRPC", "model": "dummy", "version": "1", "status": "OK"},
        {
            "api": "KServe",
            "transport": "gRPC",
            "model": "dummy",
            "version": "7",
            "status": "NOT_FOUND (Model with requested version is not found)",
        },
        {
            "api": "TensorFlowServing",
            "transport": "gRPC",
            "model": "dummy",
            "version": "1",
            "status": "OK",
        },
    ]
    assert re.search(
        r"DEBUG ovtrio\.repository\._version: dummy version 1: compiled \S+ for CPU in [0-9.]+ s,"
        r" \d+ infer requests; inputs b FP32 \(-1,10\); outputs a FP32 \(-1,10\)",
        log,
    ), log
    assert " DEBUG hpack" not in log and " DEBUG h2" not in log  # TRACE's, not DEBUG's


def test_info_logs_no_request_lines(tmp_path: Path) -> None:
    lines, log = _served(tmp_path, "INFO")
    assert lines == []
    assert " DEBUG " not in log


def test_trace_adds_the_libraries_debug_output(tmp_path: Path) -> None:
    lines, log = _served(tmp_path, "TRACE")
    assert len(lines) == 6
    assert " DEBUG hpack" in log
