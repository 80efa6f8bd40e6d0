"""Models in object storage, end to end: a server whose config.json names models in S3, Google
Cloud Storage and Azure Blob Storage (moto, gcp-storage-emulator and Azurite on loopback ports)
serves them, follows uploads and removals, and survives the storage going away."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

from tests import models
from tests.e2e.conftest import F32_EXACT, Server, start_server
from tests.e2e.test_live_changes import wait_for
from tests.storage import Backend, azure_server, clear_cloud_env, gcs_server, s3_server

pytestmark = pytest.mark.e2e

PREFIX = "models/dummy"


def name_of(backend: Backend) -> str:
    return f"on_{backend.name}"


MAPPING = {"inputs": {"b": "b"}, "outputs": {"a": "a"}}


def upload(backend: Backend, bucket: str, version: int, tmp: Path) -> None:
    """Version ``version`` of the dummy model (a = b + version), with a mapping_config.json."""
    source = tmp / f"source-{backend.name}-{version}"
    if not source.exists():
        models.add_model(source, version=1, addend=float(version))
        (source / "1" / "mapping_config.json").write_text(json.dumps(MAPPING))
    backend.put_tree(bucket, f"{PREFIX}/{version}/", source / "1")


def fill(backends: list[Backend], bucket: str, tmp: Path) -> None:
    """A new bucket on each backend, holding version 1."""
    for b in backends:
        b.create_bucket(bucket)
        upload(b, bucket, 1, tmp)


def start(
    tmp: Path,
    backends: list[Backend],
    bucket: str,
    *,
    bad: bool = False,
    extra: Sequence[dict[str, Any]] = (),
) -> Server:
    """A server for one model per backend (all versions served), polling every second, with
    the backends' variables (their refused credentials when ``bad``) and its own TMPDIR."""
    entries = [
        {
            "name": name_of(b),
            "base_path": b.url(bucket, PREFIX),
            "model_version_policy": {"all": {}},
            "plugin_config": F32_EXACT,
        }
        for b in backends
    ] + list(extra)
    config = tmp / "config.json"
    config.write_text(json.dumps({"model_config_list": [{"config": e} for e in entries]}))
    env = clear_cloud_env(dict(os.environ))
    for b in backends:
        env.update(b.bad_env if bad else b.env)
    (tmp / "tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp / "tmp")
    args = ["--config_path", str(config), "--file_system_poll_wait_seconds", "1"]
    return start_server(tmp, args, env=env)


def infer(server: Server, name: str, version: int | None = None) -> float:
    """The model's answer for zeros over KServe REST (tritonclient): its version's addend."""
    client = httpclient.InferenceServerClient(server.rest_url)
    try:
        given = httpclient.InferInput("b", [1, 10], "FP32")
        given.set_data_from_numpy(np.zeros((1, 10), np.float32))
        result = client.infer(name, [given], model_version=str(version or ""))
        answer = result.as_numpy("a")
        assert answer is not None
        return float(answer[0, 0])
    finally:
        client.close()


def statuses(server: Server, name: str) -> dict[int, tuple[str, str, str]]:
    """TFS REST status: version -> (state, error code, error message)."""
    got = requests.get(f"{server.http}/v1/models/{name}", timeout=10)
    assert got.status_code == 200, got.text
    return {
        int(s["version"]): (s["state"], s["status"]["error_code"], s["status"]["error_message"])
        for s in got.json()["model_version_status"]
    }


def problem(server: Server, name: str) -> str:
    """The reason of a model without versions: its one status entry, version 0."""
    ((version, (st, code, message)),) = statuses(server, name).items()
    assert (version, st, code) == (0, "LOADING", "UNKNOWN")
    return message


def state(server: Server, name: str, version: int) -> str | None:
    found = statuses(server, name).get(version)
    return found[0] if found else None


def cached(tmp: Path, name: str) -> list[str]:
    """The versions of ``name`` in the server's download cache (under its TMPDIR); each holds
    every file of its version."""
    found = [
        p for p in (tmp / "tmp").glob(f"ovtrio-models-*/{name}.*/*/*") if not p.name.startswith(".")
    ]
    for folder in found:
        assert json.loads((folder / "mapping_config.json").read_text()) == MAPPING
        assert (folder / "model.xml").is_file() and (folder / "model.bin").is_file()
    return sorted(p.name for p in found)


def stop(server: Server, tmp: Path) -> None:
    assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log()
    assert list((tmp / "tmp").glob("ovtrio-models-*")) == []  # the cache goes with the server


@pytest.fixture
def backends(s3_backend: Backend, gcs_backend: Backend, azure_backend: Backend) -> list[Backend]:
    """The session's storage servers (moto checking signatures)."""
    return [s3_backend, gcs_backend, azure_backend]


def test_serves_and_follows_the_buckets(backends: list[Backend], tmp_path: Path) -> None:
    bucket = "e2e-follow"
    fill(backends, bucket, tmp_path)
    missing = {"name": "missing", "base_path": "s3://no-such-bucket/m"}
    server = start(tmp_path, backends, bucket, extra=[missing])
    try:
        for b in backends:
            assert infer(server, name_of(b)) == 1.0
            assert cached(tmp_path, name_of(b)) == ["1"]
        message = problem(server, "missing")
        assert message.startswith("s3://no-such-bucket/m: listing versions: "), message
        assert "does not exist" in message, message

        for b in backends:
            upload(b, bucket, 2, tmp_path)
        for b in backends:
            wait_for(lambda b=b: state(server, name_of(b), 2) == "AVAILABLE", f"{b.name} v2")
            assert infer(server, name_of(b), 2) == 2.0
            assert infer(server, name_of(b)) == 2.0
            assert infer(server, name_of(b), 1) == 1.0
            assert cached(tmp_path, name_of(b)) == ["1", "2"]

        for b in backends:
            b.delete_prefix(bucket, f"{PREFIX}/1/")
        for b in backends:
            wait_for(lambda b=b: state(server, name_of(b), 1) == "END", f"{b.name} v1 unloaded")
            assert cached(tmp_path, name_of(b)) == ["2"]
            assert statuses(server, name_of(b))[2] == ("AVAILABLE", "OK", "")

        # A version listed while its upload is in progress fails, then loads once it is whole.
        s3 = backends[0]
        models.add_model(tmp_path / "partial", version=3, addend=3.0)
        s3.put(bucket, f"{PREFIX}/3/model.xml", (tmp_path / "partial/3/model.xml").read_bytes())
        wait_for(
            lambda: statuses(server, name_of(s3)).get(3, ("", ""))[:2] == ("LOADING", "UNKNOWN"),
            "v3 failed",
        )
        s3.put_tree(bucket, f"{PREFIX}/3/", tmp_path / "partial" / "3")
        wait_for(lambda: state(server, name_of(s3), 3) == "AVAILABLE", "v3 loaded")
        assert infer(server, name_of(s3)) == 3.0
    finally:
        stop(server, tmp_path)


def test_bad_credentials_are_a_status(backends: list[Backend], tmp_path: Path) -> None:
    bucket = "e2e-auth"
    fill(backends, bucket, tmp_path)
    server = start(tmp_path, backends, bucket, bad=True)
    try:
        for b in backends:
            message = problem(server, name_of(b))
            assert message.startswith(f"{b.url(bucket, PREFIX)}: listing versions: "), message
            assert "access denied" in message or "credentials" in message, message
            ready = requests.get(f"{server.http}/v2/models/{name_of(b)}/ready", timeout=10)
            assert ready.status_code == 404
        assert requests.get(f"{server.http}/v2/health/ready", timeout=10).status_code == 200
    finally:
        stop(server, tmp_path)


@pytest.fixture
def private_backends(tmp_path: Path) -> Iterator[list[Backend]]:
    """A server of each kind of the test's own (moto without signature checks: it forgets its
    users when it restarts)."""
    for folder in ("s3", "gcs", "azure"):
        (tmp_path / folder).mkdir()
    servers = [
        s3_server(tmp_path / "s3", auth=False),
        gcs_server(tmp_path / "gcs"),
        azure_server(tmp_path / "azure"),
    ]
    try:
        yield [next(s) for s in servers]
    finally:
        for s in servers:
            s.close()


def test_survives_a_storage_outage(private_backends: list[Backend], tmp_path: Path) -> None:
    backends = private_backends
    bucket = "e2e-outage"
    fill(backends, bucket, tmp_path)
    server = start(tmp_path, backends, bucket)
    try:
        for b in backends:
            assert infer(server, name_of(b)) == 1.0
            b.process.stop()

        def down(b: Backend) -> bool:
            st, code, message = statuses(server, name_of(b))[1]
            return (st, code) == ("AVAILABLE", "OK") and "cannot reach" in message

        for b in backends:
            wait_for(lambda b=b: down(b), f"{b.name}: the outage in the status")
            assert infer(server, name_of(b)) == 1.0  # the loaded version keeps serving
            assert cached(tmp_path, name_of(b)) == ["1"]

        for b in backends:
            b.process.start()
            if b.name != "azure":  # moto and the GCS emulator keep their objects in memory
                b.create_bucket(bucket)
                upload(b, bucket, 1, tmp_path)
            upload(b, bucket, 2, tmp_path)
        for b in backends:
            wait_for(lambda b=b: state(server, name_of(b), 2) == "AVAILABLE", f"{b.name} v2")
            wait_for(
                lambda b=b: statuses(server, name_of(b))[1] == ("AVAILABLE", "OK", ""),
                f"{b.name}: v1 serving, no storage error",
            )
            assert infer(server, name_of(b)) == 2.0
            assert infer(server, name_of(b), 1) == 1.0
    finally:
        stop(server, tmp_path)
