"""Live model lifecycle under continuous load: versions and config.json change while clients
call the model; no request may fail, every transition must show in the status APIs, and the
metrics must add up to the requests sent."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from tests import models
from tests.e2e.conftest import Server, running

pytestmark = pytest.mark.e2e


def config(root: Path, entries: list[dict[str, Any]]) -> None:
    tmp = root / "config.json.tmp"
    tmp.write_text(json.dumps({"model_config_list": [{"config": e} for e in entries]}))
    tmp.replace(root / "config.json")  # atomic, as a deployment tool would write it


LIVE = {
    "name": "live",
    "base_path": "models/live",
    "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"},
}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    models.add_model(tmp_path / "models" / "live", version=1, addend=1.0)
    config(tmp_path, [LIVE])
    args = ["--config_path", str(tmp_path / "config.json"), "--file_system_poll_wait_seconds", "1"]
    with running(tmp_path, [*args, "--metrics_enable"]) as server:
        yield server, tmp_path


class Load:
    """Clients calling ``live`` continuously over gRPC and REST; counts answers by value."""

    def __init__(self, server: Server, clients: int = 4) -> None:
        self.server = server
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.seen: set[float] = set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        data = np.zeros((1, 10), np.float32)
        grpc_client = grpcclient.InferenceServerClient(self.server.grpc_url)
        body = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
        while not self.stop.is_set():
            try:
                if i % 2:
                    inp = grpcclient.InferInput("b", [1, 10], "FP32")
                    inp.set_data_from_numpy(data)
                    value = float(grpc_client.infer("live", [inp]).as_numpy("a")[0, 0])
                else:
                    r = requests.post(
                        f"{self.server.http}/v2/models/live/infer", json=body, timeout=30
                    )
                    if r.status_code != 200:
                        raise RuntimeError(f"{r.status_code} {r.text}")
                    value = float(r.json()["outputs"][0]["data"][0])
                with self.lock:
                    self.ok += 1
                    self.seen.add(value)
            except Exception as exc:
                with self.lock:
                    self.failures.append(repr(exc))

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def status(server: Server) -> dict[str, str]:
    body = requests.get(f"{server.http}/v1/models/live", timeout=10).json()
    return {
        s["version"]: f"{s['state']}/{s['status']['error_code']}"
        for s in body["model_version_status"]
    }


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def answers(load: Load, value: float) -> Callable[[], bool]:
    def check() -> bool:
        with load.lock:
            load.seen.clear()
        time.sleep(0.3)
        with load.lock:
            return load.seen == {value}

    return check


def test_changes_under_load_lose_nothing(live: tuple[Server, Path]) -> None:
    server, root = live
    base = root / "models" / "live"
    load = Load(server)
    try:
        wait_for(answers(load, 1.0), "version 1 answering")
        # 1. a new version: loads in the background, then becomes the default
        models.add_model(base, version=2, addend=2.0)
        wait_for(lambda: status(server).get("2") == "AVAILABLE/OK", "v2 AVAILABLE")
        wait_for(lambda: status(server).get("1") == "END/OK", "v1 retired (latest 1)")
        wait_for(answers(load, 2.0), "version 2 answering")
        # 2. a corrupt new version: reported, the previous one keeps serving
        models.broken_version(base, 3)
        wait_for(lambda: status(server).get("3") == "LOADING/UNKNOWN", "v3 reported as failed")
        assert status(server)["2"] == "AVAILABLE/OK"
        shutil.rmtree(base / "3")
        wait_for(lambda: status(server).get("3") == "END/OK", "v3 forgotten")
        # 3. removing the serving version: the policy falls back to version 1 first
        shutil.rmtree(base / "2")
        wait_for(lambda: status(server).get("1") == "AVAILABLE/OK", "v1 back")
        wait_for(lambda: status(server).get("2") == "END/OK", "v2 retired")
        wait_for(answers(load, 1.0), "version 1 answering again")
        # 4. changed settings: the model reloads while its old instance serves
        config(root, [{**LIVE, "nireq": 3}])
        wait_for(
            lambda: (
                requests.get(f"{server.http}/v2/models/live/stats").json()["model_stats"][0][
                    "ovtrio"
                ]["infer_requests"]
                == 3
            ),
            "reload with nireq 3",
        )
        # 5. a broken config.json changes nothing; fixing it (adding a model) applies
        (root / "config.json").write_text("{ not json")
        time.sleep(2.5)
        assert "config not applied" in server.log()
        models.add_model(root / "models" / "extra", addend=5.0)
        config(root, [{**LIVE, "nireq": 3}, {"name": "extra", "base_path": "models/extra"}])
        wait_for(
            lambda: requests.get(f"{server.http}/v2/models/extra/ready").status_code == 200,
            "the added model",
        )
    finally:
        load.finish()
    assert not load.failures, load.failures[:5]
    assert load.ok > 50
    # metrics add up to what the clients sent
    text = requests.get(f"{server.http}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    success = sum(
        s.value
        for s in families["ovms_requests_success"].samples
        if s.name.endswith("_total") and s.labels["name"] == "live"
    )
    fail = sum(s.value for s in families["ovms_requests_fail"].samples if s.name.endswith("_total"))
    assert success == load.ok
    assert fail == 0
    interfaces = {s.labels["interface"] for s in families["ovms_requests_success"].samples}
    assert interfaces == {"gRPC", "REST"}
    assert "ovms_request_time_us" in families
    assert "ovms_inference_time_us" in families
    assert families["ovms_streams"].samples


def test_reload_and_repository_apis(live: tuple[Server, Path]) -> None:
    server, root = live
    r = requests.post(f"{server.http}/v1/config/reload")
    assert r.status_code == 200
    assert r.json()["live"]["model_version_status"][0]["state"] == "AVAILABLE"
    models.add_model(root / "models" / "second")
    config(root, [LIVE, {"name": "second", "base_path": "models/second"}])
    r = requests.post(f"{server.http}/v1/config/reload")
    assert r.status_code in (200, 201)  # 200 if the poller applied it first
    assert (
        requests.get(f"{server.http}/v1/config").json()["second"]["model_version_status"][0][
            "state"
        ]
        == "AVAILABLE"
    )
    (root / "config.json").write_text('{"model_config_list": [{"config": {"name": 1}}]}')
    r = requests.post(f"{server.http}/v1/config/reload")
    assert r.status_code == 400
    assert "Reloading config file failed" in r.json()["error"]
    assert requests.get(f"{server.http}/v2/models/live/ready").status_code == 200
    config(root, [LIVE, {"name": "second", "base_path": "models/second"}])
    # Triton's repository extension, REST and gRPC
    index = requests.post(f"{server.http}/v2/repository/index", json={}).json()
    assert {"name": "live", "version": "1", "state": "READY", "reason": ""} in index
    assert requests.post(f"{server.http}/v2/repository/models/second/unload").status_code == 200
    wait_for(
        lambda: requests.get(f"{server.http}/v2/models/second/ready").status_code == 404,
        "second unloaded",
    )
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.load_model("second")
    assert client.is_model_ready("second")
    names = {m.name for m in client.get_model_repository_index().models}
    assert names == {"live", "second"}
    client.unload_model("second")
    wait_for(lambda: not client.is_model_ready("second"), "second unloaded over gRPC")
    assert requests.post(f"{server.http}/v2/repository/models/nope/load").status_code == 404
