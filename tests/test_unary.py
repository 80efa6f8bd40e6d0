"""``grpc._unary`` and its buffer: which headers a call is refused by, and how a trio task
reads a stream's DATA (flow control acknowledged as it arrives).

The whole path, with real clients on real sockets, is in tests/e2e (test_grpc_wire.py and
the cancellation, deadline, limit and shutdown tests)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from grpclib.const import Status

from ovtrio._patches.grpclib import TrioBuffer
from ovtrio.grpc._hosted import HostedLoop
from ovtrio.grpc._unary import RpcSpec, _parse_headers, _Refused


def _trio(test: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run an async test under trio."""

    @functools.wraps(test)
    def run() -> None:
        trio.run(test)

    return run


ROUTE = "/inference.GRPCInferenceService/ModelInfer"
TABLE = {ROUTE: RpcSpec(lambda _r: None, object, object)}  # type: ignore[arg-type,return-value]
GOOD = [
    (":method", "POST"),
    (":path", ROUTE),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


def _with(changes: dict[str, str | None]) -> list[tuple[str, str]]:
    """GOOD with the headers in ``changes`` set (None: left out)."""
    merged: dict[str, str | None] = {**dict(GOOD), **changes}
    return [(k, v) for k, v in merged.items() if v is not None]


@pytest.mark.parametrize(
    ("headers", "status", "http_status", "message"),
    [
        (
            _with({"grpc-timeout": "123456789S"}),
            Status.INVALID_ARGUMENT,
            200,
            "Malformed grpc-timeout",
        ),
        (_with({"grpc-timeout": "5x"}), Status.INVALID_ARGUMENT, 200, "Malformed grpc-timeout"),
        (
            _with({"grpc-encoding": "snappy"}),
            Status.UNIMPLEMENTED,
            200,
            "'snappy' is not supported",
        ),
        (_with({":method": "GET"}), None, 405, None),
        (_with({"content-type": None}), Status.UNKNOWN, 415, "Missing content-type"),
        (_with({"content-type": "application/json"}), Status.UNKNOWN, 415, "Unacceptable"),
        (_with({"content-type": "application/grpc+json"}), Status.UNKNOWN, 415, "Unacceptable"),
        (_with({"te": None}), Status.UNKNOWN, 400, '"te: trailers"'),
        (_with({":path": "/nope.Service/Method"}), Status.UNIMPLEMENTED, 200, "Method not found"),
    ],
)
def test_refused_headers(
    headers: list[tuple[str, str]], status: Status | None, http_status: int, message: str | None
) -> None:
    with pytest.raises(_Refused) as refused:
        _parse_headers(TABLE, headers)
    assert refused.value.status is status
    assert refused.value.http_status == http_status
    if message is None:
        assert refused.value.message is None
    else:
        assert message in (refused.value.message or "")


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [("1S", 1.0), ("250m", 0.25), ("2M", 120.0), ("1H", 3600.0), ("5u", 5e-6), ("0n", 0.0),
     ("99999999n", 0.099999999)],
)  # fmt: skip
def test_timeouts(timeout: str, seconds: float) -> None:
    call = _parse_headers(TABLE, _with({"grpc-timeout": timeout}))
    assert call.timeout == pytest.approx(seconds)


def test_accepted_call() -> None:
    changes: dict[str, str | None] = {
        "content-type": "application/grpc+proto",
        "grpc-encoding": "gzip",
        "authorization": "Bearer k",
    }
    call = _parse_headers(TABLE, _with(changes))
    assert (call.route, call.timeout, call.encoding) == (ROUTE, None, "gzip")
    assert call.authorization == "Bearer k"


@_trio
async def test_buffer_reads_across_chunks_and_acknowledges_what_arrived() -> None:
    acked: list[int] = []
    buffer = TrioBuffer(acked.append)
    buffer.add(b"\0\0\0", 3)
    buffer.add(b"\0\x05abc", 6)  # flow-controlled length may exceed the data (padding)
    assert buffer.unacked_size() == 9
    assert await buffer.read(5) == b"\0\0\0\0\x05"
    assert acked == [9] and buffer.unacked_size() == 0
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await buffer.read(5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert not got  # 3 of 5 bytes: it waits
        buffer.add(b"de", 2)
        await trio.testing.wait_all_tasks_blocked()
    assert got == [b"abcde"] and acked == [9, 2]


@_trio
async def test_buffer_acknowledges_while_waiting_for_a_long_message() -> None:
    """A message larger than the stream's window arrives only if what came is acknowledged
    before the whole message is there."""
    acked: list[int] = []
    buffer = TrioBuffer(acked.append)
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await buffer.read(30))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        for _ in range(3):
            await trio.testing.wait_all_tasks_blocked()
            buffer.add(b"x" * 10, 10)
            await trio.testing.wait_all_tasks_blocked()
            assert sum(acked) == 10 * (len(acked))
    assert got == [b"x" * 30] and acked == [10, 10, 10]


@_trio
async def test_buffer_end_of_stream_and_cancel() -> None:
    buffer = TrioBuffer(lambda _n: None)
    buffer.add(b"ab", 2)
    buffer.eof()
    assert await buffer.read(5) == b"ab"  # fewer: the client ended the stream
    assert await buffer.read(5) == b""

    waiting = TrioBuffer(lambda _n: None)
    with trio.move_on_after(0.01) as scope:
        await waiting.read(1)
    assert scope.cancelled_caught
    waiting.add(b"z", 1)  # nobody waits any more: nothing is rescheduled
    assert await waiting.read(1) == b"z"


@_trio
async def test_run_coroutine_result_and_cancel() -> None:
    async with trio.open_nursery() as nursery:
        loop = HostedLoop()  # type: ignore[abstract]
        await nursery.start(loop.run)

        async def answer() -> int:
            await asyncio.sleep(0)
            return 42

        assert await loop.run_coroutine(answer()) == 42
        state: dict[str, Any] = {}

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                state["cancelled"] = True
                raise

        with trio.move_on_after(0.01):
            await loop.run_coroutine(forever())
        assert state == {"cancelled": True}
        nursery.cancel_scope.cancel()
