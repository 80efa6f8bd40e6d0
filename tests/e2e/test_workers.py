"""``--rest_workers`` / ``--grpc_workers``: front-end processes around one engine process.

Real processes, sockets and clients. Every assertion is on answers, counters the server
reports, exit codes and the process table, never on timing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from tests import models
from tests.e2e import test_batching
from tests.e2e.conftest import Server, binary_infer_body, start_server
from tests.e2e.test_batching import SLOW, Call, stats, wait_for

pytestmark = pytest.mark.e2e

WORKERS = ["--rest_workers", "2", "--grpc_workers", "2"]


def write_config(root: Path) -> Path:
    models.slow_model(root / "models" / "slow", channels=SLOW)
    models.add_model(root / "models" / "dummy")
    one_stream = {"NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    entries = [
        {
            "name": "slow_batched",
            "base_path": "models/slow",
            "nireq": 1,
            "plugin_config": one_stream,
            "dynamic_batching": {"mode": "on", "max_batch_size": 2, "max_queue_size": 4},
        },
        {
            "name": "dummy",
            "base_path": "models/dummy",
            "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"},
        },
    ]
    cfg = root / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "model_config_list": [{"config": e} for e in entries],
                "monitoring": {"metrics": {"enable": True}},
            }
        )
    )
    return cfg


def start(root: Path, *extra: str) -> Server:
    return start_server(root, ["--config_path", str(write_config(root)), *WORKERS, *extra])


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(p) for p in f.read().split()]
    return sorted(out)


def frontends(server: Server) -> dict[str, int]:
    """The live front-ends by name (``rest-0``, ``grpc-1``, ...), from their command lines."""
    out = {}
    for pid in children(server.proc.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except FileNotFoundError:
            continue
        if b"ovtrio.workers._frontend" in cmd and alive(pid):
            out[cmd[cmd.index(b"ovtrio.workers._frontend") + 1].decode()] = pid
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def sockets_of(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            pass
    return n


def shm_names() -> set[str]:
    return set(os.listdir("/dev/shm"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start(tmp_path_factory.mktemp("workers"))
    wait_for(lambda: len(frontends(srv)) == 4, "four front-ends")
    yield srv
    assert srv.stop() == 0, srv.log()
    assert "Traceback" not in srv.log()


def rest_infer_json(server: Server, session: requests.Session) -> Any:
    body = {
        "inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))}]
    }
    r = session.post(f"{server.http}/v2/models/dummy/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def rest_infer_binary(server: Server, session: requests.Session) -> bytes:
    body, header_length = binary_infer_body("b", np.arange(10, dtype=np.float32)[None])
    r = session.post(
        f"{server.http}/v2/models/dummy/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(header_length)},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.content


def grpc_infer(server: Server) -> np.ndarray[Any, Any]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("b", [1, 10], "FP32")
    inp.set_data_from_numpy(np.arange(10, dtype=np.float32)[None])
    out = client.infer("dummy", [inp]).as_numpy("a")
    client.close()
    return out


def slow_rest_call(server: Server, value: float, status: list[int]) -> threading.Thread:
    """A REST inference of ``slow_batched`` on a thread; its HTTP status goes to ``status``."""
    body = {
        "inputs": [{"name": "x", "shape": [1, SLOW], "datatype": "FP32", "data": [value] * SLOW}]
    }

    def run() -> None:
        r = requests.post(f"{server.http}/v2/models/slow_batched/infer", json=body, timeout=60)
        status.append(r.status_code)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_connections_spread_over_the_front_ends(server: Server) -> None:
    rest = [pid for name, pid in frontends(server).items() if name.startswith("rest")]
    assert len(rest) == 2, frontends(server)
    before = {pid: sockets_of(pid) for pid in rest}
    conns = [socket.create_connection(("127.0.0.1", server.rest_port)) for _ in range(16)]
    try:
        for c in conns:  # one request each: the connection is accepted by then
            c.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            assert b" 200 " in c.recv(4096)
        gained = {pid: sockets_of(pid) - before[pid] for pid in rest}
    finally:
        for c in conns:
            c.close()
    assert all(n > 0 for n in gained.values()), gained


def test_every_answer_is_the_same_whichever_front_end_serves_it(server: Server) -> None:
    expected = [[float(i + 1) for i in range(10)]]
    before = stats(server, "dummy")["inference_count"]
    answers: dict[str, set[str]] = {}

    def note(what: str, value: Any) -> None:
        answers.setdefault(what, set()).add(json.dumps(value, sort_keys=True))

    for _ in range(8):  # a new connection each time: the kernel picks the front-end
        with requests.Session() as s:
            out = rest_infer_json(server, s)
            assert out["outputs"][0]["data"] == [v for row in expected for v in row]
            note("json", out)
            note("binary", rest_infer_binary(server, s).hex())
            note("metadata", s.get(f"{server.http}/v2/models/dummy", timeout=10).json())
            note("status", s.get(f"{server.http}/v1/models/dummy", timeout=10).json())
            note("config", s.get(f"{server.http}/v2/models/dummy/config", timeout=10).json())
            note("index", s.post(f"{server.http}/v2/repository/index", timeout=10).json())
            note("ready", s.get(f"{server.http}/v2/health/ready", timeout=10).status_code)
        assert grpc_infer(server).tolist() == expected
        client = grpcclient.InferenceServerClient(server.grpc_url)
        note("grpc metadata", client.get_model_metadata("dummy", as_json=True))
        client.close()
    assert all(len(v) == 1 for v in answers.values()), answers
    # statistics and /metrics count every front-end's requests in one place
    assert stats(server, "dummy")["inference_count"] == before + 24
    metrics = requests.get(f"{server.http}/metrics", timeout=10).text
    grpc_ok = re.search(
        r'ovms_requests_success_total\{api="KServe",interface="gRPC",method="ModelInfer",'
        r'name="dummy",version="default"\} (\S+)',
        metrics,
    )
    assert grpc_ok is not None and float(grpc_ok.group(1)) >= 8, metrics


def test_batches_form_across_front_ends(server: Server) -> None:
    before = stats(server, "slow_batched")["ovtrio"]
    first = Call(server, "slow_batched", 1.0)
    wait_for(lambda: stats(server, "slow_batched")["ovtrio"]["running_batches"] == [1], "A")
    by_grpc = Call(server, "slow_batched", 2.0)
    wait_for(lambda: stats(server, "slow_batched")["ovtrio"]["queue_length"] == 1, "B queued")
    by_rest: list[int] = []
    t = slow_rest_call(server, 3.0, by_rest)
    assert isinstance(first.join(), np.ndarray)
    assert isinstance(by_grpc.join(), np.ndarray)
    t.join(60)
    assert by_rest == [200]
    after = stats(server, "slow_batched")["ovtrio"]
    # three requests, two batches: B (gRPC front-end) and C (REST front-end) ran together
    assert after["batches"] == before["batches"] + 2, (before, after)


def test_cancel_at_a_front_end_leaves_the_engine_queue(server: Server) -> None:
    """The single-process test, through a front-end: the client's cancel reaches the
    engine's queue (counters, not timing)."""
    test_batching.test_queued_request_cancelled_is_never_computed(server)


def test_killed_front_end_is_restarted_and_others_are_untouched(tmp_path: Path) -> None:
    shm_before = shm_names()
    srv = start(tmp_path)
    try:
        # ready (REST, answered by one front-end) only once every front-end serves its port
        assert len(frontends(srv)) == 4
        assert grpc_infer(srv).shape == (1, 10)
        first = frontends(srv)
        # a slow gRPC call in flight on another front-end is not disturbed
        call = Call(srv, "slow_batched", 1.0)
        wait_for(lambda: stats(srv, "slow_batched")["ovtrio"]["running_batches"] == [1], "A")
        os.kill(first["rest-0"], signal.SIGKILL)
        assert isinstance(call.join(), np.ndarray)
        wait_for(
            lambda: (
                len(frontends(srv)) == 4 and set(frontends(srv).values()) != set(first.values())
            ),
            "rest-0 started again",
        )
        assert "front-end rest-0 exited with -9: starting it again" in srv.log()
        assert grpc_infer(srv).shape == (1, 10)
        for _ in range(4):
            with requests.Session() as s:
                rest_infer_json(srv, s)
        # SIGTERM: every process drains (the slow call in flight finishes) and exits 0
        pids = list(frontends(srv).values())
        draining = Call(srv, "slow_batched", 1.0)
        wait_for(lambda: stats(srv, "slow_batched")["ovtrio"]["running_batches"] == [1], "B")
        assert srv.stop(signal.SIGTERM) == 0, srv.log()
        assert isinstance(draining.join(), np.ndarray), draining.result
        wait_for(lambda: not any(alive(p) for p in pids), "front-ends to exit", timeout=10)
        assert "exited with" not in srv.log().split("shutting down")[-1], srv.log()
    finally:
        if srv.proc.poll() is None:
            srv.stop(signal.SIGKILL)
    assert "Traceback" not in srv.log()
    assert shm_names() <= shm_before


def test_engine_killed_front_ends_answer_503_and_exit(tmp_path: Path) -> None:
    shm_before = shm_names()
    srv = start(tmp_path)
    wait_for(lambda: len(frontends(srv)) == 4, "four front-ends")
    pids = list(frontends(srv).values())
    status: list[int] = []
    t = slow_rest_call(srv, 1.0, status)
    wait_for(lambda: stats(srv, "slow_batched")["ovtrio"]["running_batches"] == [1], "A")
    os.kill(srv.proc.pid, signal.SIGKILL)
    t.join(60)
    assert status == [503]
    assert srv.proc.wait(10) == -signal.SIGKILL
    wait_for(lambda: not any(alive(p) for p in pids), "front-ends to exit", timeout=15)
    assert "the engine is gone" in srv.log()
    assert shm_names() <= shm_before


def test_one_worker_is_one_process(tmp_path: Path) -> None:
    root = tmp_path
    srv = start_server(
        root,
        ["--config_path", str(write_config(root)), "--rest_workers", "1", "--grpc_workers", "1"],
    )
    try:
        assert children(srv.proc.pid) == []
        with requests.Session() as s:
            rest_infer_json(srv, s)
    finally:
        assert srv.stop() == 0, srv.log()


def test_a_port_held_by_another_program_stops_the_start(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        srv = start_server(
            tmp_path,
            ["--config_path", str(write_config(tmp_path)), *WORKERS, "--port", str(port)],
            wait_ready=False,
        )
        assert srv.proc.wait(60) == 1
        assert (
            f"Failed to start gRPC server at 127.0.0.1:{port}: Address already in use" in srv.log()
        ), srv.log()
    finally:
        holder.close()


def test_demo_with_workers_prints_a_hint_that_works(tmp_path: Path) -> None:
    """``--demo`` with front-ends: the hint is printed once the model is loaded, and the REST
    call it prints answers 2x+1 whichever front-end takes it."""
    srv = start_server(tmp_path, ["--demo", *WORKERS])
    try:
        wait_for(lambda: "is ready: input_name" in srv.log(), "the demo hint")
        assert srv.log().count("is ready: input_name") == 1
        curl = next(line for line in srv.log().splitlines() if "curl -s -X POST" in line)
        assert f"localhost:{srv.rest_port}/v2/models/" in curl
        body = {
            "inputs": [
                {
                    "name": "input_name",
                    "shape": [1, 10],
                    "datatype": "FP32",
                    "data": list(range(10)),
                }
            ]
        }
        name = curl.split("/v2/models/")[1].split("/")[0]
        for _ in range(4):
            r = requests.post(f"{srv.http}/v2/models/{name}/infer", json=body, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"] == [2 * x + 1 for x in range(10)]
    finally:
        assert srv.stop() == 0, srv.log()
