"""Start a real ovtrio process on free loopback ports, with models built by the tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from ovmsclient import make_grpc_client, make_http_client

from tests import models

ROOT = Path(__file__).resolve().parents[2]


def grpc_request_headers(method: str) -> list[tuple[str, str]]:
    """The HEADERS a gRPC client sends for a call of the KServe service's ``method``."""
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", f"/inference.GRPCInferenceService/{method}"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]


def binary_infer_body(name: str, data: Any) -> tuple[bytes, int]:
    """A KServe REST body with ``data`` (FP32) as the binary input ``name``, binary outputs
    asked for: (body, length of its JSON header)."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(data.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": data.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + data.astype("<f4").tobytes(), len(header)


def binary_infer_request(name: str, data: Any) -> bytes:
    """The whole HTTP/1.1 request (head and ``binary_infer_body``) to the ``dummy`` model,
    for tests that talk to the REST port over a raw socket."""
    body, header_length = binary_infer_body(name, data)
    head = (
        "POST /v2/models/dummy/infer HTTP/1.1\r\nHost: test\r\n"
        f"Inference-Header-Content-Length: {header_length}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: the sockets stay bound until all are chosen (two calls of
    ``free_port`` in a row can return the same port)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    grpc_port: int
    rest_port: int
    log_path: Path

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"127.0.0.1:{self.rest_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_server(
    tmp: Path,
    args: list[str],
    wait_ready: bool = True,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> Server:
    """An ovtrio process with ``args``; ``env`` (default: this process's) is its environment."""
    grpc_port, rest_port = free_ports(2)
    log_path = tmp / f"server-{grpc_port}.log"
    env = dict(os.environ if env is None else env)
    env.update(PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "-m",
        "ovtrio",
        "--port",
        str(grpc_port),
        "--rest_port",
        str(rest_port),
        "--grpc_bind_address",
        "127.0.0.1",
        "--rest_bind_address",
        "127.0.0.1",
        *args,
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(proc, grpc_port, rest_port, log_path)
    if wait_ready:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
            try:
                if requests.get(f"{server.http}/v2/health/ready", timeout=1).status_code == 200:
                    return server
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        server.stop(signal.SIGKILL)
        raise RuntimeError(f"server not ready in {timeout}s:\n{server.log()}")
    return server


def ovms_client(server: Server, transport: str) -> Any:
    """ovmsclient's TF Serving client for ``server`` over ``transport``: "grpc" or "rest"."""
    if transport == "grpc":
        return make_grpc_client(server.grpc_url)
    return make_http_client(server.rest_url)


def run_on_busy_rest_port(tmp: Path, launcher: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run ``python launcher...`` (arguments that start ovtrio's CLI) on the model
    ``tmp/dummy`` with --rest_port set to a port another socket holds; it must exit by itself."""
    models.add_model(tmp / "dummy")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        return subprocess.run(
            [
                sys.executable,
                *launcher,
                "--model_name",
                "d",
                "--model_path",
                str(tmp / "dummy"),
                "--rest_port",
                str(port),
                "--rest_bind_address",
                "127.0.0.1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        )


@contextlib.contextmanager
def running(root: Path, args: list[str]) -> Iterator[Server]:
    """A server with ``args`` (``start_server``); on exit it must stop cleanly, without a
    traceback in its log."""
    server = start_server(root, args)
    yield server
    assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log(), server.log()


@contextlib.contextmanager
def serve_models(
    root: Path, entries: Sequence[dict[str, Any]], args: Sequence[str] = ()
) -> Iterator[Server]:
    """A server on ``root/config.json`` listing ``entries`` (each model's ``config`` object);
    on exit it must stop cleanly, without a traceback in its log."""
    cfg = root / "config.json"
    cfg.write_text(json.dumps({"model_config_list": [{"config": e} for e in entries]}))
    with running(root, ["--config_path", str(cfg), *args]) as server:
        yield server


F32_EXACT = {"INFERENCE_PRECISION_HINT": "f32"}


def build_repository(root: Path) -> Path:
    """Every model the KServe end-to-end tests use, and a config.json naming them."""
    repo = root / "models"
    models.add_model(repo / "dummy")
    for v, addend in ((1, 1.0), (2, 2.0), (3, 3.0)):
        models.add_model(repo / "versioned", version=v, addend=addend)
    models.broken_version(repo / "versioned", 4)
    models.broken_version(repo / "fallback", 2)
    models.add_model(repo / "fallback", version=1, addend=10.0)
    models.multi_model(repo / "multi")
    models.add_model(repo / "static", shape=(1, 10))
    for dt in models.OV_TYPES:
        models.identity_model(repo / f"id_{dt.lower()}", dt)
    entries = [
        {"config": {"name": "dummy", "base_path": "models/dummy", "plugin_config": F32_EXACT}},
        {
            "config": {
                "name": "versioned",
                "base_path": "models/versioned",
                "model_version_policy": {"all": {}},
                "plugin_config": F32_EXACT,
            }
        },
        {
            "config": {
                "name": "fallback",
                "base_path": "models/fallback",
                "model_version_policy": {"latest": {"num_versions": 1}},
            }
        },
        {"config": {"name": "multi", "base_path": "models/multi", "plugin_config": F32_EXACT}},
        {"config": {"name": "static", "base_path": "models/static", "plugin_config": F32_EXACT}},
        {
            "config": {
                "name": "reshaped",
                "base_path": "models/dummy",
                "shape": "(2,10)",
                "plugin_config": F32_EXACT,
            }
        },
        {
            "config": {
                "name": "ranged",
                "base_path": "models/dummy",
                "batch_size": "1:4",
                "plugin_config": F32_EXACT,
            }
        },
    ] + [
        {
            "config": {
                "name": f"id_{dt.lower()}",
                "base_path": f"models/id_{dt.lower()}",
                "plugin_config": F32_EXACT,
            }
        }
        for dt in models.OV_TYPES
    ]
    cfg = root / "config.json"
    cfg.write_text(json.dumps({"model_config_list": entries}, indent=1))
    return cfg


@pytest.fixture(scope="session")
def kserve_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("kserve")
    cfg = build_repository(root)
    with running(root, ["--config_path", str(cfg)]) as server:
        yield server
