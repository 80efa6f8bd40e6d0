"""Real storage servers on loopback ports: moto (S3), gcp-storage-emulator (GCS), Azurite (Blob).

Each factory starts a server and yields a :class:`Backend`: the environment variables a model
server would be given, and direct SDK access for the tests to upload and delete objects. The
fixtures are in tests/conftest.py (one server of each kind per session) and
tests/repository/conftest.py (each kind in turn, or a private server a test may stop).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import free_port

#: Where .ci/run installs Azurite from npm when it is missing.
AZURITE_PREFIX = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ovtrio" / "azurite"
)
#: Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

#: Variables that would change how the clients find endpoints or credentials; every test starts
#: without them and gets only its backend's. The metadata lookups stay off so that nothing
#: leaves the machine.
CLOUD_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "S3_ENDPOINT",
    "S3_USE_HTTPS",
    "S3_VERIFY_SSL",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "STORAGE_EMULATOR_HOST",
    "AZURE_STORAGE_CONNECTION_STRING",
)


class Process:
    """A server process on a loopback port; ``stop`` and ``start`` again keep the port."""

    def __init__(self, argv: Callable[[int], list[str]], log: Path, **env: str) -> None:
        self.argv = argv
        self.log = log
        self.env = {**os.environ, **env}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        import socket

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv(self.port), stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.argv(self.port)[0]} exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"{self.argv(self.port)[0]} did not listen in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class Backend:
    """One storage service as a test sees it."""

    name: str
    scheme: str
    process: Process
    #: Variables a model server gets to reach the service with good credentials.
    env: dict[str, str]
    #: The same with credentials the service refuses (or that cannot be loaded).
    bad_env: dict[str, str]
    #: The SDK client the tests upload with (credentials of their own, not from env).
    client: Any
    buckets: set[str] = field(default_factory=set)

    def url(self, bucket: str, path: str) -> str:
        return f"{self.scheme}://{bucket}/{path}"

    def create_bucket(self, bucket: str) -> None:
        if self.name == "s3":
            self.client.create_bucket(Bucket=bucket)
        elif self.name == "gcs":
            self.client.create_bucket(bucket)
        else:
            self.client.create_container(bucket)
        self.buckets.add(bucket)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        if self.name == "s3":
            self.client.put_object(Bucket=bucket, Key=key, Body=data)
        elif self.name == "gcs":
            self.client.bucket(bucket).blob(key).upload_from_string(data)
        else:
            self.client.get_blob_client(bucket, key).upload_blob(data, overwrite=True)

    def put_tree(self, bucket: str, prefix: str, folder: Path) -> dict[str, bytes]:
        """Upload every file under ``folder`` to ``prefix``; returns relative path -> bytes."""
        sent: dict[str, bytes] = {}
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                rel = path.relative_to(folder).as_posix()
                sent[rel] = path.read_bytes()
                self.put(bucket, f"{prefix}{rel}", sent[rel])
        return sent

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        if self.name == "s3":
            listed = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix)
            for obj in listed.get("Contents", ()):
                self.client.delete_object(Bucket=bucket, Key=obj["Key"])
        elif self.name == "gcs":
            for blob in list(self.client.list_blobs(bucket, prefix=prefix)):
                blob.delete()
        else:
            container = self.client.get_container_client(bucket)
            for blob in list(container.list_blobs(name_starts_with=prefix)):
                container.delete_blob(blob.name)


def _azurite_binary(tmp: Path) -> Path:
    found = shutil.which("azurite-blob")
    if found:
        return Path(found)
    binary = AZURITE_PREFIX / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: Azurite (the Azure Storage emulator) needs it")
        AZURITE_PREFIX.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(AZURITE_PREFIX), "azurite"],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm install azurite failed: {done.stderr.decode()[-2000:]}")
    return binary


def s3_server(tmp: Path, auth: bool = True) -> Iterator[Backend]:
    """moto; with ``auth``, it checks signatures once its first three (unauthenticated) actions
    have created the IAM user whose key the tests use. Without, it takes any key, and so still
    takes the tests' key after a restart has emptied it."""
    import boto3

    process = Process(
        lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        tmp / "moto.log",
        **({"INITIAL_NO_AUTH_ACTION_COUNT": "3"} if auth else {}),
    )
    process.start()
    endpoint = f"http://127.0.0.1:{process.port}"
    kw: dict[str, Any] = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    key = {"AccessKeyId": "AKIAOVTRIOTEST", "SecretAccessKey": "ovtrio-test-secret"}
    if auth:
        iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **kw)
        iam.create_user(UserName="ovtrio")
        key = iam.create_access_key(UserName="ovtrio")["AccessKey"]
        iam.put_user_policy(
            UserName="ovtrio",
            PolicyName="s3",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        iam.close()
    client = boto3.client(
        "s3",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        **kw,
    )
    env = {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_REGION": "us-east-1",
        "S3_ENDPOINT": endpoint,
    }
    bad_env = {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    try:
        yield Backend("s3", "s3", process, env, bad_env, client)
    finally:
        client.close()
        process.stop()


def gcs_server(tmp: Path) -> Iterator[Backend]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    binary = Path(sys.executable).with_name("gcp-storage-emulator")
    process = Process(
        lambda port: [str(binary), "start", "--host", "127.0.0.1", "--port", str(port), "-M", "-q"],
        tmp / "gcs.log",
    )
    process.start()
    endpoint = f"http://127.0.0.1:{process.port}"
    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )
    bad_key = tmp / "bad-key.json"
    bad_key.write_text('{"type": "service_account", "project_id": "x"}')
    env = {"STORAGE_EMULATOR_HOST": endpoint}
    bad_env = {**env, "GOOGLE_APPLICATION_CREDENTIALS": str(bad_key)}
    try:
        yield Backend("gcs", "gs", process, env, bad_env, client)
    finally:
        client.close()
        process.stop()


def azurite_connection_string(port: int, key: str = AZURITE_KEY) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


def azure_server(tmp: Path) -> Iterator[Backend]:
    from azure.storage.blob import BlobServiceClient

    binary = _azurite_binary(tmp)
    data = tmp / "azurite"
    data.mkdir(exist_ok=True)
    process = Process(
        lambda port: [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(data),
            "--silent",
            "--skipApiVersionCheck",
        ],
        tmp / "azurite.log",
    )
    process.start()
    good = azurite_connection_string(process.port)
    wrong_key = "A" * 86 + "=="
    client = BlobServiceClient.from_connection_string(good)
    env = {"AZURE_STORAGE_CONNECTION_STRING": good}
    bad_env = {
        "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(process.port, wrong_key)
    }
    try:
        yield Backend("azure", "az", process, env, bad_env, client)
    finally:
        client.close()
        process.stop()


FACTORIES = {"s3": s3_server, "gcs": gcs_server, "azure": azure_server}
BACKENDS = list(FACTORIES)


def clear_cloud_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` without the machine's cloud variables, and with metadata-server lookups off."""
    out = {k: v for k, v in env.items() if k not in CLOUD_VARIABLES}
    out.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return out
