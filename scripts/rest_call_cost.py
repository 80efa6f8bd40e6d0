#!/usr/bin/env python3
"""The per-request cost of ovtrio's REST layer alone: hypercorn, h11, the ASGI path and codec.

Serves KServe binary-extension infer requests (as tritonclient's HTTP client sends them for the
tiny model) on one keep-alive connection of a Unix socket pair, through ovtrio's own REST
stack as the server runs it: ``rest._server``'s connection handler (hypercorn's ``TCPServer``
with ovtrio's patches and idle timer), ``Cors``, ``FastPath`` and the KServe REST codec. The
data plane answers a canned response (no OpenVINO, no batcher), so the count measures the
transport and the codec. The client sends one request at a time on the connection, each after the previous answer.

For a figure that does not depend on the machine's load, count instructions with callgrind
at two request counts and take the difference per request:

    valgrind --tool=callgrind --callgrind-out-file=a.out python scripts/rest_call_cost.py 200
    valgrind --tool=callgrind --callgrind-out-file=b.out python scripts/rest_call_cost.py 700
    # (totals of b.out - totals of a.out) / 500 = instructions per request

Counts above 1,000 fail: hypercorn closes a keep-alive connection after 1,000 requests
(``keep_alive_max_requests``, left at its default as in the server). Run with
``PYTHONPATH=src``.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

import numpy as np
import trio
from hypercorn.config import Config
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from ovtrio import _patches
from ovtrio._patches.h11 import set_max_body_bytes
from ovtrio.config import CorsConfig
from ovtrio.rest._server import _Connections, _handle_connection
from ovtrio.rest.cors import Cors
from ovtrio.rest.fast import FastPath
from ovtrio.tensors import InferRequest, InferResponse, Tensor, datatype

MAX_BODY = 1 << 30
_ANSWER_END = np.array([1, 3, 5, 7], dtype=np.float32).tobytes()
"""The last bytes of every answer: the output 2x + 1 of the input 0, 1, 2, 3."""


class _CannedDataPlane:
    """What FastPath reads of a data plane; ``infer`` answers at once (2x + 1)."""

    max_tensor_elements = 1 << 30
    max_json_depth = 1024  # the server's default (--rest_max_json_depth)

    async def infer(self, request: InferRequest, **_: Any) -> InferResponse:
        x = request.inputs[0].data
        return InferResponse("tiny", 1, [Tensor("y", datatype("FP32"), x * 2 + 1)])


async def _not_found(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def request_bytes() -> bytes:
    """One KServe binary-extension infer request for the tiny model, as tritonclient sends it."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    body = header + np.arange(4, dtype=np.float32).tobytes()
    return (
        b"POST /v2/models/tiny/infer HTTP/1.1\r\n"
        b"Host: 127.0.0.1:8000\r\n"
        b"User-Agent: Python/3.11 aiohttp/3.9\r\n"
        b"Accept: */*\r\n"
        b"Accept-Encoding: gzip, deflate\r\n"
        b"Inference-Header-Content-Length: " + str(len(header)).encode() + b"\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


async def run(count: int) -> float:
    """CPU seconds per request for ``count`` pipelined requests on one connection."""
    config = Config()
    config.accesslog = None
    set_max_body_bytes(config, MAX_BODY)
    fast = FastPath(_not_found, _CannedDataPlane(), max_body_bytes=MAX_BODY)  # type: ignore[arg-type]
    app = wrap_app(Cors(fast, CorsConfig()), config.wsgi_max_body_size, None)
    server_sock, client_sock = socket.socketpair()
    server_sock.setblocking(False)
    client_sock.setblocking(False)
    server_stream = trio.SocketStream(trio.socket.from_stdlib_socket(server_sock))
    client = trio.SocketStream(trio.socket.from_stdlib_socket(client_sock))
    one = request_bytes()
    answered = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            _handle_connection,
            app,
            config,
            WorkerContext(None),
            ConnectionState({}),
            _Connections(0),
            server_stream,
        )
        start = time.process_time()
        for _ in range(count):  # one request at a time, as one keep-alive client sends them
            await client.send_all(one)
            answer = b""
            while not answer.endswith(_ANSWER_END):
                data = await client.receive_some(1 << 16)
                if not data:
                    raise SystemExit(f"the server closed the connection; it answered {answer!r}")
                answer += data
            answered += 1
        per_request = (time.process_time() - start) / count
        nursery.cancel_scope.cancel()
    return per_request


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    _patches.install()
    per_request = trio.run(run, count)
    print(f"{count} requests: {per_request * 1e6:.1f} us of CPU per request")


if __name__ == "__main__":
    main()
