"""Process lifecycle: signals, graceful drain, start-up failures."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests import models
from tests.e2e.conftest import ROOT, Server, run_on_busy_rest_port, start_server

pytestmark = pytest.mark.e2e


def slow_config(tmp: Path) -> Path:
    # ~4x the default work: the tests below signal 0.25-0.35 s into an inference, which must
    # still be running then on a fast, idle machine too (the default model takes ~0.3 s there)
    models.slow_model(tmp / "models" / "slow", layers=96)
    cfg = tmp / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "model_config_list": [
                    {
                        "config": {
                            "name": "slow",
                            "base_path": "models/slow",
                            "dynamic_batching": False,
                            "plugin_config": {"NUM_STREAMS": 1},
                        }
                    },
                ]
            }
        )
    )
    return cfg


def _infer_slow(server: Server, results: list, **kwargs) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("x", [1, 64], "FP32")
    inp.set_data_from_numpy(np.ones((1, 64), np.float32))
    try:
        results.append(client.infer("slow", [inp], **kwargs).as_numpy("y"))
    except Exception as exc:
        results.append(exc)


def test_sigterm_drains_in_flight_then_exits_0(tmp_path: Path) -> None:
    server = start_server(tmp_path, ["--config_path", str(slow_config(tmp_path))])
    results: list = []
    worker = threading.Thread(target=_infer_slow, args=(server, results))
    worker.start()
    time.sleep(0.25)  # the request is in flight (one inference takes over a second)
    server.proc.send_signal(signal.SIGTERM)
    worker.join(60)
    code = server.proc.wait(60)
    log = server.log()
    assert code == 0, log
    assert len(results) == 1 and isinstance(results[0], np.ndarray), (results, log)
    np.testing.assert_array_equal(results[0], np.ones((1, 64)))
    assert "shutting down" in log and "Traceback" not in log


def _rest_infer_in_two_parts(server: Server, after_first: threading.Event) -> tuple[int, dict]:
    """A KServe REST infer of the slow model whose body ends only once ``after_first`` is
    set: the request is open before the drain and reaches the data plane during it."""
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [1.0] * 64}]}
    ).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    conn.putrequest("POST", "/v2/models/slow/infer")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body[:10])
    after_first.wait(30)
    conn.send(body[10:])
    response = conn.getresponse()
    answer = (response.status, json.loads(response.read()))
    conn.close()
    return answer


def test_inference_requests_during_the_drain_are_refused_on_every_route(
    tmp_path: Path,
) -> None:
    """During the drain a new inference is refused with UNAVAILABLE / 503 "Server is shutting
    down", over gRPC (on the connection of the request in flight) and over REST (a request
    whose body completes during the drain), while the request in flight completes."""
    server = start_server(tmp_path, ["--config_path", str(slow_config(tmp_path))])
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert client.is_server_live()
    results: list = []
    worker = threading.Thread(target=_infer_slow, args=(server, results))
    worker.start()
    drain_started = threading.Event()
    rest: list = []
    rest_worker = threading.Thread(
        target=lambda: rest.append(_rest_infer_in_two_parts(server, drain_started))
    )
    rest_worker.start()
    time.sleep(0.25)  # the slow request is in flight (one inference takes over a second)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    drain_started.set()
    inp = grpcclient.InferInput("x", [1, 64], "FP32")
    inp.set_data_from_numpy(np.ones((1, 64), np.float32))
    with pytest.raises(Exception, match="Server is shutting down") as refused:
        client.infer("slow", [inp])
    assert "UNAVAILABLE" in str(refused.value)
    rest_worker.join(60)
    worker.join(60)
    code = server.proc.wait(60)
    log = server.log()
    assert code == 0, log
    assert rest == [(503, {"error": "Server is shutting down"})], log
    assert len(results) == 1 and isinstance(results[0], np.ndarray), (results, log)


def test_sigint_idle_exits_0(tmp_path: Path) -> None:
    root = tmp_path
    models.add_model(root / "models" / "dummy")
    server = start_server(
        root, ["--model_name", "dummy", "--model_path", str(root / "models" / "dummy")]
    )
    assert server.stop(signal.SIGINT, timeout=30) == 0
    assert "Traceback" not in server.log()


def test_port_in_use_exits_1_with_one_line(tmp_path: Path) -> None:
    proc = run_on_busy_rest_port(tmp_path, ["-m", "ovtrio"])
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert (
        "Address already in use" in proc.stderr or "address already in use" in proc.stderr.lower()
    )


def test_cli_contradiction_exits_1() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ovtrio",
            "--port",
            "9000",
            "--rest_port",
            "9000",
            "--config_path",
            "x.json",
        ],
        capture_output=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ovtrio: error:")
