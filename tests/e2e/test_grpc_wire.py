"""gRPC on the wire as gRPC clients expect it: trailers-only errors, message compression.

One server process (the ``dummy`` model, an API key, a 1 MiB message limit), called by a raw
h2 client (the frames themselves), grpcio, tritonclient and grpc-js (Node.js).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import struct
import subprocess
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests import models
from tests.e2e.conftest import ROOT, Server, grpc_request_headers, running

KEY = "wire-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}
MAX_MESSAGE = 1 << 20
SERVICE = "/inference.GRPCInferenceService/"
NODE_MODULES = Path(
    os.environ.get("OVTRIO_NODE_MODULES", Path.home() / ".cache/ovtrio/grpc-js/node_modules")
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("wire")
    models.add_model(root / "dummy")
    keys = root / "keys.txt"
    keys.write_text(f"{KEY}\n")
    args = ["--model_name", "dummy", "--model_path", str(root / "dummy")]
    args += ["--api_key_file", str(keys), "--grpc_max_message_bytes", str(MAX_MESSAGE)]
    with running(root, args) as server:
        yield server


@dataclass
class Reply:
    """What a raw h2 call got: each HEADERS frame's headers and whether it ended the stream."""

    headers: list[tuple[dict[str, str], bool]] = field(default_factory=list)
    data: bytes = b""
    reset: bool = False

    @property
    def status(self) -> int:
        return int((self.headers[-1][0]).get("grpc-status", -1))


def h2_call(
    server: Server, method: str, message: bytes | None, extra: Sequence[tuple[str, str]] = ()
) -> Reply:
    """One gRPC call over a raw h2 connection; ``message`` is sent as given (prefix included)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    reply = Reply()
    with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        headers = [*grpc_request_headers(method), *extra]
        conn.send_headers(1, headers, end_stream=message is None)
        pending = memoryview(message or b"")
        done = False
        while not done:
            while pending and not done:  # as much as flow control allows
                size = min(len(pending), conn.local_flow_control_window(1))
                size = min(size, conn.max_outbound_frame_size)
                if not size:
                    break
                conn.send_data(1, pending[:size], end_stream=size == len(pending))
                pending = pending[size:]
            sock.sendall(conn.data_to_send())
            chunk = sock.recv(1 << 16)
            assert chunk, "connection closed before the reply ended"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    decoded = {k.decode(): v.decode() for k, v in event.headers}
                    reply.headers.append((decoded, event.stream_ended is not None))
                elif isinstance(event, h2.events.DataReceived):
                    reply.data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamReset):
                    reply.reset = True
                done = done or getattr(event, "stream_ended", None) is not None
            sock.sendall(conn.data_to_send())
    return reply


def framed(payload: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">?I", compressed, len(payload)) + payload


def assert_trailers_only(reply: Reply, code: int) -> dict[str, str]:
    """One HEADERS frame with END_STREAM: :status 200, gRPC content-type, status, message."""
    assert len(reply.headers) == 1, reply.headers
    headers, ended = reply.headers[0]
    assert ended, headers
    assert reply.data == b""
    assert headers[":status"] == "200"
    assert headers["content-type"].startswith("application/grpc"), headers
    assert headers["grpc-status"] == str(code), headers
    assert headers["grpc-message"], headers
    return headers


def _infer_request() -> bytes:
    request = grpcclient.service_pb2.ModelInferRequest(model_name="dummy")
    request.inputs.add(name="b", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(np.arange(10, dtype="<f4").tobytes())
    return bytes(request.SerializeToString())


def _gzip_of_zeros(size: int) -> bytes:
    """gzip of ``size`` zero bytes, built a chunk at a time."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    parts = [deflater.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, deflater.flush()])


@pytest.mark.parametrize(
    ("method", "extra", "code"),
    [
        ("NoSuchMethod", [], 12),
        ("ServerLive", [("grpc-timeout", "soon")], 3),
        ("ServerLive", [("grpc-timeout", "123456789S")], 3),
        ("ModelInfer", [], 16),
    ],
    ids=["unknown-method", "timeout-unit", "timeout-digits", "unauthenticated"],
)
def test_errors_before_a_handler_are_trailers_only(
    server: Server, method: str, extra: list[tuple[str, str]], code: int
) -> None:
    assert_trailers_only(h2_call(server, method, framed(b""), extra), code)


def test_a_deadline_past_by_the_reply_is_exceeded_without_a_checkpoint(server: Server) -> None:
    """ServerLive's answer needs no wait (its message comes in the headers' read), so nothing
    notices the deadline on the way; a 1 ns grpc-timeout has passed by the reply."""
    assert h2_call(server, "ServerLive", framed(b""), [("grpc-timeout", "1n")]).status == 4
    assert h2_call(server, "ServerLive", framed(b""), [("grpc-timeout", "10S")]).status == 0


def test_an_unsupported_encoding_names_the_supported_ones(server: Server) -> None:
    extra = [("grpc-encoding", "snappy"), *AUTH.items()]
    headers = assert_trailers_only(h2_call(server, "ModelInfer", framed(b"", True), extra), 12)
    assert set(headers["grpc-accept-encoding"].split(",")) == {"identity", "deflate", "gzip"}


def test_replies_announce_the_accepted_encodings(server: Server) -> None:
    reply = h2_call(server, "ServerLive", framed(b""))
    (initial, initial_ended), (trailers, trailers_ended) = reply.headers
    assert not initial_ended and trailers_ended
    assert initial["content-type"].startswith("application/grpc")
    assert set(initial["grpc-accept-encoding"].split(",")) == {"identity", "deflate", "gzip"}
    assert "grpc-encoding" not in initial  # replies are not compressed, as OVMS's
    assert trailers["grpc-status"] == "0"
    assert reply.data == framed(b"\x08\x01")  # live: true


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_request_over_raw_h2(server: Server, encoding: str) -> None:
    body = _infer_request()
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    extra = [("grpc-encoding", encoding), *AUTH.items()]
    reply = h2_call(server, "ModelInfer", framed(packed, True), extra)
    assert reply.status == 0, reply.headers
    response = grpcclient.service_pb2.ModelInferResponse.FromString(reply.data[5:])
    out = np.frombuffer(response.raw_output_contents[0], "<f4")
    np.testing.assert_array_equal(out, np.arange(10) + 1)


def test_a_decompression_bomb_is_refused(server: Server) -> None:
    bomb = _gzip_of_zeros(256 << 20)
    assert len(bomb) < MAX_MESSAGE
    extra = [("grpc-encoding", "gzip"), *AUTH.items()]
    reply = h2_call(server, "ModelInfer", framed(bomb, True), extra)
    assert reply.status == 8, reply.headers  # RESOURCE_EXHAUSTED
    assert "decompressed" in reply.headers[-1][0]["grpc-message"]
    assert h2_call(server, "ServerLive", framed(b"")).status == 0


@pytest.mark.parametrize(
    ("message", "extra"),
    [
        (framed(b"not gzip at all", True), [("grpc-encoding", "gzip")]),
        (framed(gzip.compress(_infer_request())[:-12], True), [("grpc-encoding", "gzip")]),
        (framed(gzip.compress(_infer_request()), True), []),
        (framed(gzip.compress(_infer_request()), True), [("grpc-encoding", "identity")]),
    ],
    ids=["corrupt", "truncated", "no-encoding", "identity"],
)
def test_bad_compressed_messages_are_client_errors(
    server: Server, message: bytes, extra: list[tuple[str, str]]
) -> None:
    reply = h2_call(server, "ModelInfer", message, [*extra, *AUTH.items()])
    assert reply.status == 3, reply.headers  # INVALID_ARGUMENT


def _input() -> grpcclient.InferInput:
    inp = grpcclient.InferInput("b", [1, 10], "FP32")
    inp.set_data_from_numpy(np.arange(10, dtype=np.float32).reshape(1, 10))
    return inp


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compression(server: Server, algorithm: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    result = client.infer("dummy", [_input()], headers=AUTH, compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("a"), np.arange(10).reshape(1, 10) + 1)
    assert client.is_server_live(headers=AUTH)


def test_tritonclient_compressed_request_within_the_limit_only(server: Server) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("b", [1, MAX_MESSAGE // 4], "FP32")
    inp.set_data_from_numpy(np.zeros((1, MAX_MESSAGE // 4), np.float32))
    with pytest.raises(InferenceServerException, match="RESOURCE_EXHAUSTED"):
        client.infer("dummy", [inp], headers=AUTH, compression_algorithm="gzip")


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_grpcio_compression_and_unknown_method(
    server: Server, compression: grpc.Compression
) -> None:
    with grpc.insecure_channel(server.grpc_url, compression=compression) as channel:
        infer = channel.unary_unary(SERVICE + "ModelInfer")
        reply = infer(_infer_request(), metadata=list(AUTH.items()), timeout=30)
        response = grpcclient.service_pb2.ModelInferResponse.FromString(reply)
        np.testing.assert_array_equal(
            np.frombuffer(response.raw_output_contents[0], "<f4"), np.arange(10) + 1
        )
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(SERVICE + "NoSuchMethod")(b"", timeout=30)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_js_client(server: Server) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "@grpc/grpc-js").is_dir():
        pytest.skip(f"needs node and @grpc/grpc-js, @grpc/proto-loader in {NODE_MODULES}")
    proc = subprocess.run(
        [
            node,
            str(Path(__file__).with_name("grpc_js_client.js")),
            server.grpc_url,
            str(ROOT / "protos"),
            KEY,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, NODE_PATH=str(NODE_MODULES)),
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results["live"] == {"code": 0, "reply": {"live": True}}
    assert results["unauthenticated"]["code"] == 16
    assert results["unknown"]["code"] == 12
    for name in ("infer", "infer_gzip", "infer_deflate"):
        assert results[name]["code"] == 0, results[name]
        assert results[name]["output"] == [float(i + 1) for i in range(10)]
        assert results[name]["shape"] == [1, 10]


def test_clients_that_reset_before_their_reply_leave_the_server_serving(server: Server) -> None:
    """Calls whose client resets the connection right after sending: the server's reply meets
    a reset socket (EPIPE / ECONNRESET), which ends that connection only."""
    for _ in range(20):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        headers = [*grpc_request_headers("ModelInfer"), ("authorization", f"Bearer {KEY}")]
        conn.send_headers(1, headers)
        conn.send_data(1, framed(_infer_request()), end_stream=True)
        sock = socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(conn.data_to_send())
        sock.close()  # SO_LINGER 0: a reset, not a FIN
    reply = h2_call(
        server, "ModelInfer", framed(_infer_request()), [("authorization", f"Bearer {KEY}")]
    )
    assert reply.status == 0, reply.headers
    assert server.proc.poll() is None
    assert "Traceback" not in server.log() and "ERROR" not in server.log()
