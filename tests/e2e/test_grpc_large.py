"""Large gRPC requests: a DATA frame's body read into its own buffer (``_patches.h2``'s lane,
filled from the socket by ``grpc._hosted``) reaches the model whole and unmixed.

One server (an identity model, any FP32 shape), called by tritonclient from several threads
at once (each answer must be its own request) and by a raw h2 client that sends a large frame
slowly, in pieces, or leaves in the middle of one.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests import models
from tests.e2e.conftest import Server, grpc_request_headers, running

MOBILENET_ELEMENTS = 3 * 224 * 224  # one 602 KB DATA frame, as a MobileNet-style request


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("large")
    models.identity_model(root / "echo", "FP32", shape=(-1, -1))
    with running(root, ["--model_name", "echo", "--model_path", str(root / "echo")]) as server:
        yield server


def _echo(client: grpcclient.InferenceServerClient, data: np.ndarray) -> np.ndarray:
    tensor = grpcclient.InferInput("in", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    out = client.infer("echo", [tensor]).as_numpy("out")
    assert out is not None
    return out


@pytest.mark.parametrize("elements", [MOBILENET_ELEMENTS, 1_000_000], ids=["602KB", "4MB"])
def test_a_large_request_arrives_whole(server: Server, elements: int) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    data = np.random.default_rng(elements).random((1, elements), dtype=np.float32)
    np.testing.assert_array_equal(_echo(client, data), data)


def test_concurrent_large_requests_each_get_their_own_answer(server: Server) -> None:
    """Four clients, 602 KB each, every request different: no answer holds another's bytes
    (their bodies live in buffers the batch reads from)."""
    failures: list[str] = []

    def run(seed: int) -> None:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        rng = np.random.default_rng(seed)
        for i in range(12):
            data = np.full((1, MOBILENET_ELEMENTS), seed * 100 + i, np.float32)
            data[0, rng.integers(MOBILENET_ELEMENTS)] = -1.0
            if not np.array_equal(_echo(client, data), data):
                failures.append(f"client {seed}, call {i}")

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures


def _infer_message(data: np.ndarray) -> bytes:
    request = grpcclient.service_pb2.ModelInferRequest(model_name="echo")
    request.inputs.add(name="in", datatype="FP32", shape=list(data.shape))
    request.raw_input_contents.append(data.astype("<f4").tobytes())
    message = request.SerializeToString()
    return struct.pack(">?I", False, len(message)) + message


def _start_call(port: int, body: bytes) -> tuple[socket.socket, h2.connection.H2Connection, bytes]:
    """A connection with one ModelInfer call opened; the bytes of its DATA frame (the whole
    message in one frame, as the server's frame size allows), not yet sent."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(conn.data_to_send())
    while (  # the server's settings and connection window, sent once it accepts
        conn.max_outbound_frame_size < len(body) or conn.outbound_flow_control_window < len(body)
    ):
        chunk = sock.recv(1 << 16)
        assert chunk, "the server closed the connection"
        conn.receive_data(chunk)
        sock.sendall(conn.data_to_send())
    conn.send_headers(1, grpc_request_headers("ModelInfer"))
    sock.sendall(conn.data_to_send())
    conn.send_data(1, body, end_stream=True)
    return sock, conn, conn.data_to_send()


def _answer(sock: socket.socket, conn: h2.connection.H2Connection) -> tuple[bytes, str]:
    """The reply message (prefix included) and grpc-status."""
    data, status = b"", ""
    while not status:
        chunk = sock.recv(1 << 16)
        assert chunk, "connection closed before the reply ended"
        for event in conn.receive_data(chunk):
            if isinstance(event, h2.events.DataReceived):
                data += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, h2.events.TrailersReceived):
                status = dict(event.headers)[b"grpc-status"].decode()
        sock.sendall(conn.data_to_send())
    return data, status


def _reply_output(message: bytes) -> np.ndarray:
    reply = grpcclient.service_pb2.ModelInferResponse()
    reply.ParseFromString(message[5:])
    return np.frombuffer(reply.raw_output_contents[0], "<f4")


def test_a_large_frame_sent_slowly_in_pieces(server: Server) -> None:
    """The frame's header, then its body in uneven pieces with pauses: the server waits for
    each piece (reading into the frame's buffer) and answers once the frame is whole."""
    data = np.arange(MOBILENET_ELEMENTS, dtype=np.float32).reshape(1, -1)
    sock, conn, frame = _start_call(server.grpc_port, _infer_message(data))
    with sock:
        assert len(frame) > MOBILENET_ELEMENTS * 4
        cuts = [0, 5, 9, 4000, 70_000, 300_000, 300_001, 550_000, len(frame)]
        for a, b in itertools.pairwise(cuts):
            sock.sendall(frame[a:b])
            time.sleep(0.05)
        message, status = _answer(sock, conn)
    assert status == "0"
    np.testing.assert_array_equal(_reply_output(message), data[0])


def test_a_client_leaving_inside_a_large_frame_leaves_the_server_serving(
    server: Server,
) -> None:
    data = np.ones((1, MOBILENET_ELEMENTS), np.float32)
    for sent in (20, 200_000):
        sock, _, frame = _start_call(server.grpc_port, _infer_message(data))
        sock.sendall(frame[:sent])
        time.sleep(0.1)
        sock.close()
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    np.testing.assert_array_equal(_echo(client, data), data)
