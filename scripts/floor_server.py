#!/usr/bin/env python3
"""The transports alone: what a request costs before ovtrio does anything (scripts/bench --peer).

Serves KServe ModelInfer for the bench's ``tiny`` model with a canned answer, no decoding,
no data plane, no OpenVINO: over gRPC with grpclib's protocol exactly as ovtrio runs it
(``ovtrio.grpc._server.Server``, a trio task per call through ``ovtrio.grpc._unary``, on
trio's thread through ``ovtrio.grpc._hosted``, sockets served by trio) and over
REST with hypercorn's trio worker (h11) as ovtrio composes it (``ovtrio.rest._server.serve``,
``ovtrio._patches``) and a bare ASGI function. Whatever these cost per request
is a floor under ovtrio's own cost on the same transport.

Usage: floor_server.py GRPC_PORT REST_PORT
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import trio
from hypercorn.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from ovtrio import _patches
from ovtrio.codecs import kserve_rest
from ovtrio.codecs._wire import Checked
from ovtrio.codecs.kserve_grpc import EncodedResponse, encode_infer_response
from ovtrio.grpc import _bridge
from ovtrio.grpc._hosted import HostedLoop
from ovtrio.grpc._server import Server
from ovtrio.grpc._unary import Calls, RpcSpec
from ovtrio.rest._server import serve
from ovtrio.tensors import InferRequest, InferResponse, Tensor, datatype

ANSWER = InferResponse("tiny", 1, [Tensor("y", datatype("FP32"), np.zeros((1, 4), np.float32))])
GRPC_REPLY = encode_infer_response(ANSWER)
# ovtrio's REST codec, binary outputs (tritonclient's default)
REST_BODY, _JSON_LENGTH = kserve_rest.encode_infer_response(
    ANSWER, InferRequest("tiny", None, [], parameters={"binary_data_output": True})
)
REST_HEADERS = [
    (b"content-type", b"application/octet-stream"),
    (b"inference-header-content-length", str(_JSON_LENGTH).encode()),
    (b"content-length", str(len(REST_BODY)).encode()),
]


class _Raw(Checked):
    """The request is left undecoded."""

    @staticmethod
    def FromString(_data: bytes) -> _Raw:
        return _Raw()


async def _infer(_request: Any) -> EncodedResponse:
    return GRPC_REPLY


TABLE = {"/inference.GRPCInferenceService/ModelInfer": RpcSpec(_infer, _Raw, EncodedResponse)}


async def grpc_floor(port: int) -> None:
    listeners = _bridge._listen(["127.0.0.1"], port, None, reuse_port=False)
    loop = HostedLoop()  # type: ignore[abstract]
    async with trio.open_nursery() as nursery:
        await nursery.start(loop.run)
        server = Server(Calls(TABLE, nursery, loop))
        await _bridge._accept_all(trio.CancelScope(), listeners, loop, server, nursery)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": REST_HEADERS})
    await send({"type": "http.response.body", "body": REST_BODY})


async def serve_both(grpc_port: int, rest_port: int) -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{rest_port}"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(grpc_floor, grpc_port)
        nursery.start_soon(serve, app, config)


def main() -> None:
    grpc_port, rest_port = int(sys.argv[1]), int(sys.argv[2])
    _patches.install()
    trio.run(serve_both, grpc_port, rest_port)


if __name__ == "__main__":
    main()
