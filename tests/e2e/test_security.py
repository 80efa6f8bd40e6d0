"""TLS, mutual TLS, API keys, limits, and abusive clients, against real server processes."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tritonclient.utils import InferenceServerException

from tests import models
from tests.e2e.conftest import (
    Server,
    binary_infer_body,
    binary_infer_request,
    grpc_request_headers,
    start_server,
)

pytestmark = pytest.mark.e2e

KEY = "s3cret-key"


def _cert(
    subject: str, issuer_key, issuer_name, key, *, ca: bool, server: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key) -> tuple[Path, Path]:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path.with_suffix(".pem"), path.with_suffix(".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    out: dict[str, Path] = {}
    for ca_name in ("ca", "rogue_ca"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
        ca_cert = _cert(ca_name, ca_key, name, ca_key, ca=True, server=False)
        out[ca_name], _ = _write(d / ca_name, ca_cert, ca_key)
        for leaf, is_server in (("server", True), ("client", False)):
            if ca_name == "rogue_ca" and leaf == "server":
                continue
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _cert(leaf, ca_key, name, key, ca=False, server=is_server)
            prefix = "" if ca_name == "ca" else "rogue_"
            out[f"{prefix}{leaf}"], out[f"{prefix}{leaf}_key"] = _write(
                d / f"{prefix}{leaf}", cert, key
            )
    return out


def _dummy_server(root: Path, flags: list[str], **kwargs: Any) -> Server:
    """A server of its own on the dummy model (``root/dummy``), with ``flags``."""
    models.add_model(root / "dummy")
    args = ["--model_name", "dummy", "--model_path", str(root / "dummy"), *flags]
    return start_server(root, args, **kwargs)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("secure")
    keys = root / "keys.txt"
    keys.write_text(f"other-key\n{KEY}\n")
    server = _dummy_server(
        root,
        [
            "--ssl_certificate",
            str(pki["server"]),
            "--ssl_key",
            str(pki["server_key"]),
            "--ssl_ca",
            str(pki["ca"]),
            "--api_key_file",
            str(keys),
        ],
        wait_ready=False,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            r = requests.get(
                f"https://127.0.0.1:{server.rest_port}/v2/health/ready",
                verify=str(pki["ca"]),
                cert=(str(pki["client"]), str(pki["client_key"])),
                timeout=2,
            )
            if r.status_code == 200:
                break
        except requests.exceptions.ConnectionError:
            pass
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.2)
    yield server
    assert server.stop() == 0, server.log()


def _grpc(
    server: Server, pki: dict[str, Path], who: str = "client"
) -> grpcclient.InferenceServerClient:
    prefix = "" if who == "client" else "rogue_"
    return grpcclient.InferenceServerClient(
        f"localhost:{server.grpc_port}",
        ssl=True,
        root_certificates=str(pki["ca"]),
        private_key=str(pki[f"{prefix}client_key"]),
        certificate_chain=str(pki[f"{prefix}client"]),
    )


def _input() -> grpcclient.InferInput:
    inp = grpcclient.InferInput("b", [1, 10], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 10), np.float32))
    return inp


def test_grpc_mtls_and_api_key(secure: Server, pki: dict[str, Path]) -> None:
    client = _grpc(secure, pki)
    assert client.is_server_live()  # health is open
    auth = {"authorization": f"Bearer {KEY}"}
    out = client.infer("dummy", [_input()], headers=auth).as_numpy("a")
    np.testing.assert_array_equal(out, np.ones((1, 10)))
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        client.infer("dummy", [_input()])
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        client.get_model_metadata("dummy", headers={"authorization": "Bearer wrong"})
    rogue = _grpc(secure, pki, "rogue")
    with pytest.raises(InferenceServerException):
        rogue.is_server_live()


def test_rest_mtls_and_api_key(secure: Server, pki: dict[str, Path]) -> None:
    base = f"https://127.0.0.1:{secure.rest_port}"
    cert = (str(pki["client"]), str(pki["client_key"]))
    ca = str(pki["ca"])
    assert requests.get(f"{base}/v2/health/live", verify=ca, cert=cert).status_code == 200
    r = requests.get(f"{base}/v2/models/dummy", verify=ca, cert=cert)
    assert r.status_code == 401
    assert "API key" in r.json()["error"]
    r = requests.get(
        f"{base}/v2/models/dummy", verify=ca, cert=cert, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert r.status_code == 200
    # a body larger than one read, over TLS (the buffer is filled from h11's events)
    data = np.random.default_rng(6).random((20_000, 10), dtype=np.float32)
    body, header_length = binary_infer_body("b", data)
    r = requests.post(
        f"{base}/v2/models/dummy/infer",
        data=body,
        verify=ca,
        cert=cert,
        headers={
            "Authorization": f"Bearer {KEY}",
            "Inference-Header-Content-Length": str(header_length),
        },
    )
    assert r.status_code == 200, r.text[:300]
    json_len = int(r.headers["Inference-Header-Content-Length"])
    out = np.frombuffer(r.content[json_len:], "<f4").reshape(data.shape)
    np.testing.assert_array_equal(out, data + 1)
    # TLS 1.3 reports a refused client certificate after the handshake: a reset connection
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(
            f"{base}/v2/health/live",
            verify=ca,
            cert=(str(pki["rogue_client"]), str(pki["rogue_client_key"])),
        )
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(f"{base}/v2/health/live", verify=ca)  # no client certificate


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = _dummy_server(
        tmp_path_factory.mktemp("limited"),
        [
            "--grpc_max_message_bytes",
            "4096",
            "--rest_max_body_bytes",
            "4096",
            "--max_tensor_elements",
            "1000",
            "--rest_max_json_depth",
            "6",
            "--grpc_max_concurrent_streams",
            "4",
            "--rest_read_timeout_s",
            "2",
            "--rest_idle_timeout_s",
            "1",
        ],
    )
    yield server
    assert server.stop() == 0, server.log()


def test_limits(limited: Server) -> None:
    client = grpcclient.InferenceServerClient(limited.grpc_url)
    big = grpcclient.InferInput("b", [200, 10], "FP32")
    big.set_data_from_numpy(np.zeros((200, 10), np.float32))
    with pytest.raises(
        InferenceServerException, match=r"RESOURCE_EXHAUSTED.*grpc_max_message_bytes"
    ):
        client.infer("dummy", [big])
    r = requests.post(f"{limited.http}/v2/models/dummy/infer", data=b"x" * 5000)
    assert r.status_code == 413
    assert "4096" in r.json()["error"]
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "b",
                    "shape": [1, 10**12],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 64},
                }
            ]
        }
    ).encode()
    r = requests.post(
        f"{limited.http}/v2/models/dummy/infer",
        data=header + b"\0" * 64,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 413
    body = {"inputs": [{"name": "b", "shape": [101, 10], "datatype": "FP32", "data": [0] * 1010}]}
    r = requests.post(f"{limited.http}/v2/models/dummy/infer", json=body)
    assert r.status_code in (413, 400)  # body or element limit, whichever trips first
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(limited.grpc_url))
    req = service_pb2.ModelInferRequest(model_name="dummy")
    req.inputs.add(name="b", datatype="FP32", shape=[1, 10**12])
    req.raw_input_contents.append(b"\0" * 64)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(req)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_tensor_elements" in info.value.details()
    assert client.infer("dummy", [_input()]).as_numpy("a").shape == (1, 10)


def test_json_depth_limit(limited: Server) -> None:
    deep = [[[[[[0.0] * 10]]]]]  # data nested 6 deep: 9 levels with the header
    body = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": deep}]}
    r = requests.post(f"{limited.http}/v2/models/dummy/infer", json=body)
    assert r.status_code == 400, r.text
    assert "--rest_max_json_depth" in r.json()["error"]
    r = requests.post(f"{limited.http}/v1/models/dummy:predict", json={"instances": deep})
    assert r.status_code == 400, r.text
    assert "--rest_max_json_depth" in r.json()["error"]
    body["inputs"][0]["data"] = [[0.0] * 10]  # 5 levels: served
    r = requests.post(f"{limited.http}/v2/models/dummy/infer", json=body)
    assert r.status_code == 200, r.text


def test_connection_limit_per_port(limited: Server) -> None:
    held = []
    try:
        for port in (limited.rest_port, limited.grpc_port):
            for _ in range(450):  # the limit is 400 per port
                held.append(socket.create_connection(("127.0.0.1", port)))
        closed = 0
        for s in held:
            s.settimeout(0.2)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
        assert closed >= 2 * 40, f"only {closed} connections over the limit were closed"
    finally:
        for s in held:
            s.close()
    time.sleep(0.5)  # the server notices the closed connections
    assert requests.get(f"{limited.http}/v2/health/live", timeout=10).status_code == 200
    client = grpcclient.InferenceServerClient(limited.grpc_url)
    assert client.is_server_live()


def _rss_kb(server: Server) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_slow_and_idle_clients_do_not_starve_normal_ones(limited: Server) -> None:
    slow = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", limited.rest_port))
        s.sendall(b"POST /v2/models/dummy/infer HTTP/1.1\r\nHost: x\r\n")  # never finishes
        slow.append(s)
    idle = [socket.create_connection(("127.0.0.1", limited.rest_port)) for _ in range(200)]
    try:
        for _ in range(5):
            r = requests.get(f"{limited.http}/v2/health/ready", timeout=10)
            assert r.status_code == 200
        time.sleep(3)  # past --rest_read_timeout_s: the server closed the silent connections
        closed = 0
        for s in slow:
            s.settimeout(0.5)
            try:
                s.recv(1024)  # an answer (408/400) or the end of the stream: the server let go
                closed += 1
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass  # still held open
        assert closed > 50, f"only {closed} slow connections were closed"
    finally:
        for s in slow + idle:
            s.close()


def test_http2_rapid_reset_on_grpc_port(limited: Server) -> None:
    before = _rss_kb(limited)
    stop = threading.Event()
    sent = [0]

    def attack() -> None:
        sock = socket.create_connection(("127.0.0.1", limited.grpc_port))
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        headers = grpc_request_headers("ModelInfer")
        sock.setblocking(False)
        try:
            while not stop.is_set() and sent[0] < 20000:
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, headers)
                conn.reset_stream(stream_id)
                sent[0] += 1
                try:
                    sock.sendall(conn.data_to_send())
                except BlockingIOError:
                    time.sleep(0.001)
                try:
                    data = sock.recv(65536)
                    if data:
                        conn.receive_data(data)
                except BlockingIOError:
                    pass
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            sock.close()

    attacker = threading.Thread(target=attack)
    attacker.start()
    try:
        client = grpcclient.InferenceServerClient(limited.grpc_url)
        for _ in range(20):
            assert client.infer("dummy", [_input()], client_timeout=30).as_numpy("a").shape == (
                1,
                10,
            )
    finally:
        stop.set()
        attacker.join(30)
    assert sent[0] > 100
    assert _rss_kb(limited) - before < 300_000, "memory grew by more than 300 MB"
    assert requests.get(f"{limited.http}/v2/health/live").status_code == 200


def test_grpc_stream_limit_is_announced_and_clients_queue(limited: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", limited.grpc_port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    first: dict[Any, Any] = {}
    try:
        deadline = time.monotonic() + 10
        while not first and time.monotonic() < deadline:
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.RemoteSettingsChanged) and not first:
                    first = {k: v.new_value for k, v in event.changed_settings.items()}
            sock.sendall(conn.data_to_send())  # ACK the settings
    finally:
        sock.close()
    # In the server's first SETTINGS frame: a grpcio client that queued calls while a later
    # frame lowered h2's default of 100 streams sometimes never opened any (~1 in 50 tries).
    codes = h2.settings.SettingCodes
    assert first[codes.MAX_CONCURRENT_STREAMS] == 4
    assert first[codes.MAX_FRAME_SIZE] == 1 << 20
    # a client with more calls than that on one connection queues them: all are answered
    client = grpcclient.InferenceServerClient(limited.grpc_url)
    results: list[Any] = []
    done = threading.Semaphore(0)

    def callback(result: Any, error: Any) -> None:
        results.append(error if error is not None else result.as_numpy("a").shape)
        done.release()

    for _ in range(16):
        client.async_infer("dummy", [_input()], callback)
    for _ in range(16):
        assert done.acquire(timeout=60)
    assert results == [(1, 10)] * 16


def _get_live(sock: socket.socket) -> bytes:
    """One keep-alive GET /v2/health/live on ``sock``; the answer's bytes."""
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        answer += chunk
    return answer


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True once the server closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_rest_idle_timeout_closes_idle_keep_alive_connections(tmp_path: Path) -> None:
    """--rest_idle_timeout_s closes a connection idle that long (from its start and after an
    answer), and only when idle: requests closer together keep it open. The read timeout is
    far away, so only the idle timer can close these connections."""
    server = _dummy_server(tmp_path, ["--rest_idle_timeout_s", "2", "--rest_read_timeout_s", "60"])
    try:
        fresh = socket.create_connection(("127.0.0.1", server.rest_port))
        used = socket.create_connection(("127.0.0.1", server.rest_port))
        started = time.monotonic()
        for _ in range(8):  # 8 requests 0.5 s apart: 4 s in use, never 2 s idle
            assert _get_live(used).startswith(b"HTTP/1.1 200")
            time.sleep(0.5)
        assert time.monotonic() - started > 3.5
        assert _closed_within(fresh, 30), "an idle connection was never closed"
        assert _closed_within(used, 30), "a connection idle after its answer was never closed"
        for sock in (fresh, used):
            sock.close()
    finally:
        assert server.stop() == 0, server.log()


def test_rest_read_timeout_ends_a_large_body_that_stalls(tmp_path: Path) -> None:
    """A body larger than one read is read into one buffer, outside h11: a client that stops
    sending in the middle of it is still let go after --rest_read_timeout_s, and others are
    served meanwhile."""
    server = _dummy_server(tmp_path, ["--rest_read_timeout_s", "2", "--rest_idle_timeout_s", "60"])
    try:
        request = binary_infer_request("b", np.zeros((20_000, 10), np.float32))
        stalled = socket.create_connection(("127.0.0.1", server.rest_port))
        stalled.sendall(request[: len(request) // 2])  # the head and part of the body
        other = socket.create_connection(("127.0.0.1", server.rest_port))
        assert _get_live(other).startswith(b"HTTP/1.1 200")
        assert _closed_within(stalled, 30), "a stalled body held its connection open"
        later = socket.create_connection(("127.0.0.1", server.rest_port))
        assert _get_live(later).startswith(b"HTTP/1.1 200")
        for sock in (stalled, other, later):
            sock.close()
    finally:
        assert server.stop() == 0, server.log()
