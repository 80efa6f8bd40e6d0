#!/usr/bin/env python3
"""The per-call cost of ovtrio's gRPC layer alone: grpclib's protocol, h2 and ``grpc._unary``.

Feeds a recorded client byte stream (HTTP/2 preface and settings, then one unary ModelInfer
call after another: HEADERS + DATA with END_STREAM, and the WINDOW_UPDATEs a gRPC core client
sends per answer) to ovtrio's ``_H2Protocol`` on its
``HostedLoop`` under trio, each call a trio task as in the server (``grpc._unary``), with no
socket (the transport only collects what the server writes) and no OpenVINO: the RPC
answers a canned reply. Prints microseconds per call. For a figure that
does not depend on the machine's load, count instructions with callgrind at two call counts
and take the difference per call (a second argument feeds that many calls at once, as 64
clients' calls arrive on one connection: ``... grpc_call_cost.py 320 64``):

    valgrind --tool=callgrind --callgrind-out-file=a.out python scripts/grpc_call_cost.py 300
    valgrind --tool=callgrind --callgrind-out-file=b.out python scripts/grpc_call_cost.py 1300
    # (totals of b.out - totals of a.out) / 1000 = instructions per call

Run with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from typing import Any

import h2.config
import h2.connection
import h2.settings
import hyperframe.frame
import trio

from ovtrio import _patches
from ovtrio._proto import inference as pb
from ovtrio.codecs.kserve_grpc import EncodedResponse
from ovtrio.grpc._hosted import HostedLoop
from ovtrio.grpc._server import Server
from ovtrio.grpc._unary import Calls, RpcSpec

ROUTE = "/inference.GRPCInferenceService/ModelInfer"
REPLY = EncodedResponse(b"\n\x04tiny\x12\x011")


class _Transport(asyncio.Transport):
    """Collects the server's writes."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.out.extend(bytes(d) for d in list_of_data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def _infer(_request: Any) -> EncodedResponse:
    return REPLY


def _window_update(stream_id: int) -> bytes:
    """What the server's answer to a call took from the flow-control windows, given back."""
    frame = hyperframe.frame.WindowUpdateFrame(stream_id)
    frame.window_increment = 5 + len(REPLY.wire)
    return bytes(frame.serialize())


def client_bytes(calls: int, together: int) -> tuple[bytes, list[bytes]]:
    """The client's preface and settings, and the bytes of each call."""
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="ascii")
    )
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    client.increment_flow_control_window(2**31 - 1 - 65535)
    preface = client.data_to_send()
    message = bytes(pb.ModelInferRequest(model_name="tiny", raw_input_contents=[b"\0" * 16]))
    body = struct.pack(">BI", 0, len(message)) + message
    out = []
    for _ in range(calls):
        sid = client.get_next_available_stream_id()
        client.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", ROUTE),
                (":authority", "127.0.0.1:9000"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("user-agent", "grpc-python-async/1.0"),
                ("grpc-accept-encoding", "identity,deflate,gzip"),
            ],
        )
        client.send_data(sid, body, end_stream=True)
        # as tritonclient's gRPC core does once it has an answer: a WINDOW_UPDATE for its
        # stream and one for the connection (here for the calls of the previous read)
        acks = b""
        if sid > 2 * together:
            acks = _window_update(sid - 2 * together) + _window_update(0)
        out.append(client.data_to_send() + acks)
        client.streams.pop(sid, None)  # the answer is not read: keep the client's table small
    return preface, out


async def run(calls: list[bytes], preface: bytes, together: int) -> float:
    """CPU seconds per call; the calls are fed ``together`` at a time (in one read, as many
    clients' calls arrive on one connection), each group answered before the next."""
    loop = HostedLoop()  # type: ignore[abstract]
    async with trio.open_nursery() as nursery:
        await nursery.start(loop.run)
        rpcs = Calls({ROUTE: RpcSpec(_infer, pb.ModelInferRequest, EncodedResponse)}, nursery, loop)
        server = Server(rpcs)
        protocol = server._protocol_factory()
        transport = _Transport()
        with loop.entered():
            protocol.connection_made(transport)
            protocol.data_received(preface)
        start = time.process_time()
        for first in range(0, len(calls), together):
            with loop.entered():
                protocol.data_received(b"".join(calls[first : first + together]))
            while rpcs.active:
                await trio.lowlevel.checkpoint()
        per_call = (time.process_time() - start) / len(calls)
        nursery.cancel_scope.cancel()
    return per_call


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    together = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    _patches.install()
    preface, calls = client_bytes(1300, together)  # the same bytes whatever the count
    per_call = trio.run(run, calls[:count], preface, together)
    print(f"{count} calls, {together} at a time: {per_call * 1e6:.1f} us of CPU per call")


if __name__ == "__main__":
    main()
