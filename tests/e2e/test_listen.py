"""Listening: every address of a comma-separated bind list, and a busy port named at start-up."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from tests import models
from tests.e2e.conftest import ROOT, free_port, start_server

pytestmark = pytest.mark.e2e


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


ADDRESSES = ["127.0.0.1", "127.0.0.2", *(["::1"] if _ipv6_loopback() else [])]


def _url(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def test_every_bind_address_is_served(tmp_path: Path) -> None:
    models.add_model(tmp_path / "dummy")
    addresses = ",".join(ADDRESSES)
    server = start_server(
        tmp_path,
        [
            "--model_name", "dummy",
            "--model_path", str(tmp_path / "dummy"),
            "--grpc_bind_address", addresses,
            "--rest_bind_address", addresses,
        ],
    )  # fmt: skip
    try:
        data = np.arange(10, dtype=np.float32).reshape(1, 10)
        for host in ADDRESSES:
            rest = f"http://{_url(host, server.rest_port)}"
            assert requests.get(f"{rest}/v2/health/ready", timeout=5).status_code == 200, host
            row = {"name": "b", "shape": [1, 10], "datatype": "FP32", "data": data.ravel().tolist()}
            body: dict[str, Any] = {"inputs": [row]}
            r = requests.post(f"{rest}/v2/models/dummy/infer", json=body, timeout=5)
            assert r.json()["outputs"][0]["data"] == (data + 1).ravel().tolist(), host

            client = grpcclient.InferenceServerClient(_url(host, server.grpc_port))
            inp = grpcclient.InferInput("b", [1, 10], "FP32")
            inp.set_data_from_numpy(data)
            out = client.infer("dummy", [inp]).as_numpy("a")
            np.testing.assert_array_equal(out, data + 1)
            client.close()
        log = server.log()
        for host in ADDRESSES:
            assert f"Running on http://{_url(host, server.rest_port)}" in log
        serving = next(line for line in log.splitlines() if "serving: gRPC" in line)
        assert ", ".join(_url(h, server.grpc_port) for h in ADDRESSES) in serving
    finally:
        assert server.stop() == 0


@contextmanager
def _busy(host: str) -> Iterator[int]:
    """A port held (listening) on ``host`` for the duration."""
    with socket.socket() as busy:
        busy.bind((host, 0))
        busy.listen()
        yield int(busy.getsockname()[1])


def _run(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[bytes]:
    models.add_model(tmp_path / "dummy")
    return subprocess.run(
        [
            sys.executable, "-m", "ovtrio",
            "--model_name", "d",
            "--model_path", str(tmp_path / "dummy"),
            *flags,
        ],
        capture_output=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def _one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    assert proc.returncode == 1, proc.stderr.decode()
    text = proc.stderr.decode()
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, text
    return errors[0]


@pytest.mark.parametrize("server", ["REST", "gRPC"])
def test_busy_port_is_named(tmp_path: Path, server: str) -> None:
    other = str(free_port())
    with _busy("127.0.0.2") as port:
        if server == "REST":
            flags = ["--rest_port", str(port), "--rest_bind_address", "127.0.0.1,127.0.0.2"]
        else:
            flags = ["--port", str(port), "--grpc_bind_address", "127.0.0.1,127.0.0.2"]
            flags += ["--rest_port", other, "--rest_bind_address", "127.0.0.1"]
        proc = _run(tmp_path, *flags)
    line = _one_error_line(proc)
    assert line.endswith(
        f"Failed to start {server} server at 127.0.0.2:{port}: Address already in use"
    )


def test_unresolvable_bind_address_is_named(tmp_path: Path) -> None:
    port = free_port()
    proc = _run(
        tmp_path, "--rest_port", str(port), "--rest_bind_address", "127.0.0.1,no-such-host.invalid"
    )
    line = _one_error_line(proc)
    assert f"Failed to start REST server at no-such-host.invalid:{port}: " in line
