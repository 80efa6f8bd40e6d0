"""ovtrio started with exactly the arguments the ServingRuntime renders for the example
InferenceService, on a /mnt/models-style directory: the probes, KServe v2 REST and gRPC
inference, the metrics the dashboard reads, the image's health check, and SIGTERM within the
termination grace period."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from tests import models
from tests.deploy.files import DEPLOY, HEALTHCHECK, ROOT, dockerfile, flag_values, yaml_documents
from tests.deploy.kserve_render import render
from tests.deploy.test_grafana import exposed_series, queried_series
from tests.e2e.conftest import free_ports

pytestmark = pytest.mark.e2e

MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts the model
GRACE_S = 30  # the example InferenceService's terminationGracePeriodSeconds


@dataclass
class Pod:
    proc: subprocess.Popen[bytes]
    args: list[str]  # ovtrio's arguments, as run
    container: dict[str, Any]  # the rendered container, ports as in the manifest
    ports: dict[int, int]  # manifest port -> the free port used instead
    name: str
    log_path: Path

    def url(self, port: int, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def rendered_container() -> tuple[dict[str, Any], str]:
    (runtime,) = yaml_documents(DEPLOY / "kserve" / "servingruntime.yaml")
    (isvc,) = yaml_documents(DEPLOY / "kserve" / "inferenceservice.yaml")
    return render(runtime, isvc), isvc["metadata"]["name"]


def test_render_follows_kserve() -> None:
    container, name = rendered_container()
    args = container["args"]
    assert isinstance(args, list)
    assert f"--model_name={name}" in args
    assert args[-2:] == ["--max_batch_size=8", "--max_batch_delay_us=500"]  # the isvc's, appended
    assert "command" not in container, "the image's ENTRYPOINT runs"


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    tmp = tmp_path_factory.mktemp("kserve-pod")
    models.add_model(tmp / "mnt" / "models")  # /mnt/models/1/model.xml: b [-1,10] -> a = b + 1
    container, name = rendered_container()
    args = [str(a) for a in container["args"]]
    flags = flag_values(args)
    grpc_port, rest_port = free_ports(2)
    ports = {int(flags["port"]): grpc_port, int(flags["rest_port"]): rest_port}
    run_args = []
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag in {"--port", "--rest_port"}:
            value = str(ports[int(value)])
        value = value.replace(MODEL_DIR, str(tmp / "mnt" / "models"))
        run_args.append(f"{flag}{eq}{value}")
    entrypoint = next(i for i in dockerfile()[-1] if i.keyword == "ENTRYPOINT").exec_form()
    assert entrypoint == ["ovtrio"]
    cmd = [sys.executable, "-m", "ovtrio", *run_args]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    log_path = tmp / "ovtrio.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    p = Pod(proc, run_args, container, ports, name, log_path)
    try:
        deadline = time.monotonic() + 120
        probe = container["readinessProbe"]["httpGet"]
        while True:
            assert proc.poll() is None, p.log()
            try:
                if requests.get(p.url(probe["port"], probe["path"]), timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, p.log()
            time.sleep(0.1)
        yield p
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def manifest_port(pod: Pod, flag: str) -> int:
    """The port the manifest gives ``--<flag>`` (``pod.ports`` maps it to the one used)."""
    return int(flag_values([str(a) for a in pod.container["args"]])[flag])


def rest_infer(pod: Pod) -> None:
    body = {
        "inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))}]
    }
    url = pod.url(manifest_port(pod, "rest_port"), f"/v2/models/{pod.name}/infer")
    r = requests.post(url, json=body, timeout=10)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["name"] == "a" and out["data"] == [float(x + 1) for x in range(10)]


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_probes_answer(pod: Pod, probe: str) -> None:
    get = pod.container[probe]["httpGet"]
    assert requests.get(pod.url(get["port"], get["path"]), timeout=5).status_code == 200


def test_kserve_v2_rest_inference(pod: Pod) -> None:
    rest_infer(pod)
    rest = manifest_port(pod, "rest_port")
    assert requests.get(pod.url(rest, f"/v2/models/{pod.name}/ready"), timeout=5).status_code == 200


def test_kserve_v2_grpc_inference(pod: Pod) -> None:
    grpc = manifest_port(pod, "port")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{pod.ports[grpc]}")
    try:
        assert client.is_server_ready() and client.is_model_ready(pod.name)
        x = np.arange(20, dtype=np.float32).reshape(2, 10)
        inp = grpcclient.InferInput("b", [2, 10], "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer(pod.name, [inp])
        np.testing.assert_array_equal(result.as_numpy("a"), x + 1)
    finally:
        client.close()


def test_metrics_serve_the_dashboard(pod: Pod) -> None:
    (runtime,) = yaml_documents(DEPLOY / "kserve" / "servingruntime.yaml")
    port = int(runtime["spec"]["annotations"]["prometheus.kserve.io/port"])
    path = runtime["spec"]["annotations"]["prometheus.kserve.io/path"]
    rest_infer(pod)
    r = requests.get(pod.url(port, path), timeout=5)
    assert r.status_code == 200
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in r.text.splitlines()
        if line.startswith("ovms_requests_success_total{") and f'name="{pod.name}"' in line
    ]
    assert sum(counted) >= 1, r.text
    exposed = exposed_series(r.text)
    for title, series in queried_series().items():
        assert series <= exposed, f"{title}: {sorted(series - exposed)} not exposed"


def test_image_healthcheck_passes(pod: Pod) -> None:
    check = [sys.executable, str(HEALTHCHECK), "--", *pod.args]
    assert subprocess.run(check, timeout=30).returncode == 0
    down = [a for a in pod.args if not a.startswith("--rest_port")] + ["--rest_port=1"]
    assert (
        subprocess.run([sys.executable, str(HEALTHCHECK), "--", *down], timeout=30).returncode == 1
    )


def test_sigterm_exits_0_within_the_grace_period(pod: Pod) -> None:
    """Runs last: SIGTERM as the kubelet sends it; ovtrio drains and exits 0 well inside
    terminationGracePeriodSeconds (--graceful_timeout_s bounds the drain below it)."""
    drain = float(flag_values(pod.args)["graceful_timeout_s"])
    assert drain < GRACE_S
    start = time.monotonic()
    pod.proc.send_signal(signal.SIGTERM)
    code = pod.proc.wait(GRACE_S)
    elapsed = time.monotonic() - start
    assert code == 0, pod.log()
    assert elapsed < drain, f"an idle server took {elapsed:.1f} s to stop"
    assert "Traceback" not in pod.log(), pod.log()
