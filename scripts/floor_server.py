#!/usr/bin/env python3
"""The transports alone: what a request costs before ovtrio does anything (scripts/bench --peer).

Serves KServe ModelInfer for the bench's ``tiny`` model with a canned answer, no decoding,
no data plane, no OpenVINO: over gRPC with grpclib's protocol exactly as ovtrio runs it
(``ovtrio.grpc._server.Server``, a trio task per call through ``ovtrio.grpc._unary``, on
trio's thread through ``ovtrio.grpc._hosted``, sockets served by trio) and over
REST with hypercorn's trio worker (h11) as ovtrio composes it (``ovtrio.rest._server.serve``,
``ovtrio._patches``) and a bare ASGI function. Whatever these cost per request
is a floor under ovtrio's own cost on the same transport.

With a third port it also serves the same canned gRPC answer from grpcio (gRPC's C core,
the answer returned by a Python handler on its thread pool): what a C HTTP/2 stack with the
thinnest Python on top costs the same client, for scale.

Usage: floor_server.py GRPC_PORT REST_PORT [GRPCIO_PORT]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import trio
from hypercorn.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from ovtrio import _malloc, _patches
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


def grpcio_floor(port: int) -> Any:
    """A started grpcio server answering ModelInfer with the canned reply (its own threads)."""
    from concurrent import futures

    import grpc

    reply = bytes(GRPC_REPLY.wire)
    handler = grpc.unary_unary_rpc_method_handler(
        lambda _request, _context: reply,
        request_deserializer=lambda data: data,
        response_serializer=lambda data: data,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService", {"ModelInfer": handler}
            )
        ]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


def main() -> None:
    grpc_port, rest_port = int(sys.argv[1]), int(sys.argv[2])
    # no page faults per large request, as in ovtrio's processes (its single process by
    # OpenVINO's raised thresholds, front-ends by this call); grpcio's too, in this process
    _malloc.tune()
    _patches.install()
    grpcio = grpcio_floor(int(sys.argv[3])) if len(sys.argv) > 3 else None
    try:
        trio.run(serve_both, grpc_port, rest_port)
    finally:
        if grpcio is not None:
            grpcio.stop(0)


if __name__ == "__main__":
    main()
