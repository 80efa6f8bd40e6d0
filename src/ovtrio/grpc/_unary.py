"""Unary gRPC calls served by trio tasks: grpclib's protocol below, ovtrio's RPC table above.

grpclib parses HTTP/2 (``H2Protocol``, ``EventsProcessor``) and hands each new stream to its
connection's handler (``accept``). ``ConnectionCalls`` is that handler: it starts one trio
task per call in the RPC nursery, which checks the headers, authenticates, reads and decodes
the message, runs the RPC function (the data plane, in trio), encodes and sends the reply.
There is no asyncio task per call: the stream (``_patches.grpclib.CallStream``) is read
through a ``TrioBuffer``, and only a reply too large for one write goes through grpclib's
asyncio sends.

Cancellation: a client's RST_STREAM, a closed connection or the call's deadline
(``grpc-timeout``) cancels the call's cancel scope, so the data plane sees ``trio.Cancelled``;
a deadline is answered DEADLINE_EXCEEDED, a reset or closed stream nothing. Cancelling the
RPC nursery (the server stopping) answers the calls still running UNAVAILABLE.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpclib.protocol
import h2.exceptions
import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from .._patches.grpclib import (
    ACCEPT_ENCODING,
    CallStream,
    receive_message,
    send_large_reply,
    send_reply,
    send_status,
)
from ..auth import bearer_ok
from ..codecs._wire import check_wire_types
from ..errors import OvtrioError

if TYPE_CHECKING:
    from ._hosted import HostedLoop

__all__ = ["OPEN_ROUTES", "Calls", "ConnectionCalls", "RpcSpec", "RpcTable"]

log = logging.getLogger(__name__)

RpcTable = Mapping[str, "RpcSpec"]
"""Route (``/package.Service/Method``) -> how to serve it."""


@dataclass(frozen=True, slots=True)
class RpcSpec:
    """A unary RPC: decode with request_type, run ``func`` in trio, encode the reply.

    A ``request_type`` whose ``VIEWS`` is true reads a memoryview of the received message
    (no copy) in its ``FromString``; the others get ``bytes``."""

    func: Callable[[Any], Awaitable[Any]]
    request_type: type[Any]
    reply_type: type[Any]


OPEN_ROUTES = frozenset(
    {
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
    }
)
"""Answered without authentication (orchestrators probe them)."""

_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
"""A well-formed ``grpc-timeout``: at most 8 digits and a unit (PROTOCOL-HTTP2.md)."""
_UNIT_S = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_ENCODINGS = ("identity", "gzip", "deflate")
_CONTENT_TYPES = ("application/grpc", "application/grpc+proto")


class _Refused(Exception):
    """A call refused from its headers, before any RPC function runs."""

    def __init__(
        self,
        status: Status | None,
        message: str | None = None,
        http_status: int = 200,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = http_status
        self.extra = extra


@dataclass(slots=True)
class _Call:
    """What a call's task needs from its headers."""

    spec: RpcSpec
    route: str
    timeout: float | None
    encoding: str
    authorization: str


def _parse_headers(table: RpcTable, headers: list[tuple[str, str]]) -> _Call:
    """The call the headers ask for, or ``_Refused`` as a gRPC C++ server (timeout and
    encoding first, while parsing) and grpclib (method, content-type, te, route) refuse."""
    fields: dict[str, str] = {}
    for key, value in headers:
        fields.setdefault(key, value)
    timeout: float | None = None
    raw_timeout = fields.get("grpc-timeout")
    if raw_timeout is not None:
        match = _TIMEOUT.fullmatch(raw_timeout)
        if match is None:  # gRPC C++ and grpc-go: INTERNAL; it is the client's mistake
            raise _Refused(
                Status.INVALID_ARGUMENT, f"Malformed grpc-timeout header: {raw_timeout[:40]!r}"
            )
        timeout = int(match[1]) * _UNIT_S[match[2]]
    encoding = fields.get("grpc-encoding", "identity")
    if encoding not in _ENCODINGS:
        raise _Refused(
            Status.UNIMPLEMENTED,
            f"Message encoding {encoding[:40]!r} is not supported "
            f"(grpc-accept-encoding: {ACCEPT_ENCODING})",
            extra=(("grpc-accept-encoding", ACCEPT_ENCODING),),
        )
    if fields.get(":method") != "POST":
        raise _Refused(None, http_status=405)
    content_type = fields.get("content-type")
    if content_type is None:
        raise _Refused(Status.UNKNOWN, "Missing content-type header", 415)
    if content_type not in _CONTENT_TYPES:
        raise _Refused(Status.UNKNOWN, "Unacceptable content-type header", 415)
    if fields.get("te") != "trailers":
        raise _Refused(Status.UNKNOWN, 'Required "te: trailers" header is missing', 400)
    route = fields.get(":path", "")
    spec = table.get(route)
    if spec is None:
        raise _Refused(Status.UNIMPLEMENTED, "Method not found")
    return _Call(spec, route, timeout, encoding, fields.get("authorization", ""))


class Calls:
    """The RPC table served on trio's thread: each call a trio task in ``nursery``."""

    def __init__(
        self,
        table: RpcTable,
        nursery: trio.Nursery,
        loop: HostedLoop,
        *,
        api_keys: tuple[str, ...] = (),
        max_message_bytes: int = 1 << 30,
    ) -> None:
        self._table = table
        self._nursery = nursery
        self._loop = loop
        self._keys = [k.encode() for k in api_keys]
        self._max = max_message_bytes
        self.active = 0
        """Calls being served (the transport's count for ``Load`` and the drain)."""

    def handler(self) -> ConnectionCalls:
        """A new connection's handler (grpclib's ``AbstractHandler``)."""
        return ConnectionCalls(self)

    def _authenticate(self, call: _Call) -> None:
        if not self._keys or call.route in OPEN_ROUTES:
            return
        if not bearer_ok(call.authorization, self._keys):
            raise GRPCError(
                Status.UNAUTHENTICATED,
                "Missing or invalid API key (metadata 'authorization: Bearer <key>')",
            )

    async def _request(self, stream: CallStream, call: _Call) -> Any:
        """The request message, read within the size limit and decoded."""
        data = await receive_message(
            stream, call.encoding, self._max, view=getattr(call.spec.request_type, "VIEWS", False)
        )
        try:
            message = call.spec.request_type.FromString(data)
            # betterproto2 does not check wire types: a varint where a message belongs
            # decodes as an int; refuse such messages here, for every RPC.
            check_wire_types(message)
        except OvtrioError:
            raise
        except Exception as exc:  # undecodable message: the client's mistake
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"Cannot decode the request message: {exc}"
            ) from None
        return message

    async def _answer(self, stream: CallStream, call: _Call, scope: trio.CancelScope) -> None:
        self._authenticate(call)
        request = await self._request(stream, call)
        reply = await call.spec.func(request)
        if not isinstance(reply, call.spec.reply_type):
            raise TypeError(f"{call.route} answered {type(reply).__name__}")
        if call.timeout is not None and trio.current_time() >= scope.deadline:
            # expired on a path with no checkpoint to notice it (the data in the first read,
            # an inline inference): answered DEADLINE_EXCEEDED, as a gRPC C++ server would
            scope.cancel()
            await trio.lowlevel.checkpoint()
        large = send_reply(stream, reply.SerializeToString())
        if large is not None:
            await self._loop.run_coroutine(send_large_reply(stream, large))

    async def serve(
        self,
        stream: CallStream,
        headers: list[tuple[str, str]],
        scope: trio.CancelScope,
        done: Callable[[], None],
    ) -> None:
        """One call, from its headers to its answer (a task in the RPC nursery); ``done``
        when it ends."""
        try:
            with scope:
                try:
                    call = _parse_headers(self._table, headers)
                except _Refused as refused:
                    send_status(
                        stream, refused.status, refused.message, refused.extra,
                        refused.http_status,
                    )  # fmt: skip
                    return
                if call.timeout is not None and not scope.cancel_called:  # not reset already
                    scope.deadline = trio.current_time() + call.timeout
                await self._answer(stream, call, scope)
            if scope.cancelled_caught and trio.current_time() >= scope.deadline:
                send_status(stream, Status.DEADLINE_EXCEEDED, "Deadline exceeded")
        except GRPCError as exc:
            send_status(stream, exc.status, exc.message)
        except OvtrioError as exc:
            send_status(stream, Status(exc.grpc_status), exc.message)
        except h2.exceptions.ProtocolError:  # the stream or connection closed meanwhile
            pass  # (reset, GOAWAY, lost): nobody to answer
        except trio.Cancelled:
            send_status(stream, Status.UNAVAILABLE, "Server is shutting down")
            raise
        except Exception:
            log.exception("unexpected error in %s", _route(headers))
            send_status(stream, Status.INTERNAL, "Internal server error")
        finally:
            done()


def _route(headers: list[tuple[str, str]]) -> str:
    return next((value for key, value in headers if key == ":path"), "?")


class ConnectionCalls(grpclib.protocol.AbstractHandler):
    """A connection's calls (grpclib's handler interface): started, reset, closed."""

    def __init__(self, calls: Calls) -> None:
        self._calls = calls
        self._scopes: dict[grpclib.protocol.Stream, trio.CancelScope] = {}
        self.closing = False

    def accept(
        self,
        stream: grpclib.protocol.Stream,
        headers: Any,
        release_stream: Callable[[], Any],
    ) -> None:
        assert isinstance(stream, CallStream)  # made by _patches.grpclib.CallConnection
        scope = trio.CancelScope()
        self._scopes[stream] = scope
        calls = self._calls
        # counted from here, not from when its task runs: a request read in the same batch
        # as others is not "the only one in the server" (inline inference, runtime._pool)
        calls.active += 1

        def done() -> None:
            calls.active -= 1
            self._scopes.pop(stream, None)
            release_stream()

        try:
            calls._nursery.start_soon(calls.serve, stream, headers, scope, done)
        except RuntimeError:  # the nursery is closed: the server is stopping
            send_status(stream, Status.UNAVAILABLE, "Server is shutting down")
            done()

    def cancel(self, stream: grpclib.protocol.Stream) -> None:
        """The client reset the stream: the call ends unanswered."""
        scope = self._scopes.pop(stream, None)
        if scope is not None:
            _end_unanswered(scope)

    def close(self) -> None:
        """The connection is closing: every call ends unanswered."""
        self.closing = True
        for scope in self._scopes.values():
            _end_unanswered(scope)
        self._scopes.clear()


def _end_unanswered(scope: trio.CancelScope) -> None:
    """Cancel a call's scope so that ``Calls.serve`` answers nothing (not a deadline)."""
    scope.deadline = float("inf")
    scope.cancel()
