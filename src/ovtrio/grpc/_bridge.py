"""The only module that knows grpclib needs asyncio.

grpclib runs on its own thread with a uvloop event loop. That thread is a child of a trio
task (``serve``), which the server's root nursery supervises. Every RPC crosses into trio
through ``TrioBridge.call``: the handler body runs as a trio task in the gRPC nursery, and a
client cancel (RST_STREAM) or deadline, which grpclib delivers as ``asyncio.CancelledError``,
cancels that task's scope, so trio code sees ``trio.Cancelled``.

Shutdown: ``stop()`` stops listening at once; in-flight RPCs finish (the caller bounds that
with its grace deadline); then every connection gets GOAWAY and is closed. The last step
works around grpclib's hang on Python >= 3.12, where ``asyncio.Server.wait_closed`` waits for
connections that grpclib never closes (stack spike, pitfall 1).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import ssl
import struct
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpclib.const
import grpclib.protocol
import grpclib.server
import grpclib.utils
import h2.connection
import h2.settings
import hyperframe.frame
import trio
import uvloop
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from .._inbox import TrioInbox
from ..auth import bearer_ok
from ..codecs._wire import check_wire_types
from ..errors import OvtrioError

__all__ = ["GrpcEndpoint", "RpcTable", "TrioBridge", "serve"]


def _short_data_repr(data: bytes | None) -> str:
    if not data:
        return "None"
    return "<hex:" + binascii.hexlify(data[:10]).decode("ascii") + "...>"


# h2 logs every received frame with an eager ``repr(frame)`` (even when nothing is logged), and
# hyperframe's repr hex-encodes the *whole* payload before truncating it to 20 characters: for a
# 600 KB tensor that is 1.2 MB of hex per request, about 5 % of the server's CPU under load
# (py-spy, MobileNet over gRPC). Same output, computed from the first 10 bytes only.
hyperframe.frame._raw_data_repr = _short_data_repr


def _short_frame_repr(self: hyperframe.frame.Frame) -> str:
    return f"{type(self).__name__}(stream_id={self.stream_id}, flags={sorted(self.flags)})"


# And h2 does so for every frame even though its logger discards it (``trace``): the full repr
# (flags, then every field) cost ~3 % of the gRPC thread's samples on a tiny model.
hyperframe.frame.Frame.__repr__ = _short_frame_repr  # type: ignore[method-assign]


@contextlib.contextmanager
def _deadline_start_marked(self: Any, deadline: Any) -> Iterator[None]:
    # grpclib 0.4.9's DeadlineWrapper.start, except that a deadline already past marks the call
    # cancelled before raising: grpclib then answers DEADLINE_EXCEEDED instead of logging
    # "Timeout occurred" with a traceback and answering UNKNOWN (found by scripts/soak with
    # deadlines of a few milliseconds). The remaining time is read once (no race).
    timeout = deadline.time_remaining()
    if not timeout:
        self.cancelled = True
        raise TimeoutError("Deadline exceeded")

    def expire() -> None:
        self.cancel(TimeoutError("Deadline exceeded"))

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        yield
    finally:
        timer.cancel()


grpclib.utils.DeadlineWrapper.start = _deadline_start_marked  # type: ignore[method-assign]

_accept = grpclib.server.Handler.accept


def _accept_releasing(self: Any, stream: Any, headers: Any, release_stream: Any) -> None:
    # grpclib 0.4.9 releases a stream in its request handler's ``finally``; a call cancelled
    # (RST_STREAM, an expired deadline) before that task first runs never enters it, and the
    # stream stays in the connection's table forever: memory grows, and every connection-level
    # WINDOW_UPDATE walks the whole table (found by scripts/soak: throughput fell from 466 to
    # 269 req/s in 14 minutes). Release from the task's done-callback as well, once.
    released = False

    def release_once() -> None:
        nonlocal released
        if not released:
            released = True
            release_stream()

    _accept(self, stream, headers, release_once)
    task = self._tasks.get(stream)
    if task is not None:
        task.add_done_callback(lambda _task: release_once())


grpclib.server.Handler.accept = _accept_releasing  # type: ignore[method-assign]

_first_settings: dict[h2.settings.SettingCodes, int] | None = None
"""Set by ``_Server`` (on grpclib's thread) while grpclib makes a server connection."""


class _H2Connection(h2.connection.H2Connection):
    """h2's connection whose first SETTINGS frame carries ovtrio's stream and frame limits.

    They used to follow in a second SETTINGS frame, after h2's first one had announced 100
    streams: a grpcio client that queued its calls meanwhile could then open none of them
    on that connection, ever (tests/e2e/test_security.py's 16 calls over a limit of 4 hung
    in ~1 of 50 tries; found by its flaking). Values of the first frame apply at once, as
    h2 applies its own defaults.
    """

    def __init__(self, config: Any = None) -> None:
        super().__init__(config=config)
        settings = _first_settings
        if settings is None or self.config.client_side:
            return
        self.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: _H2_DEFAULT_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.DEFAULT_MAX_HEADER_LIST_SIZE,
                **settings,
            },
        )
        self.max_inbound_frame_size = self.local_settings.max_frame_size
        self.incoming_buffer.max_frame_size = self.max_inbound_frame_size


grpclib.protocol.H2Connection = _H2Connection  # type: ignore[attr-defined]

log = logging.getLogger(__name__)

T = TypeVar("T")

RpcTable = Mapping[str, "RpcSpec"]
"""Route (``/package.Service/Method``) -> how to serve it."""


@dataclass(frozen=True, slots=True)
class RpcSpec:
    """A unary RPC: decode with request_type, run ``func`` in trio, encode with reply_type."""

    func: Callable[[Any, grpclib.server.Stream[Any, Any]], Awaitable[Any]]
    request_type: type[Any]
    reply_type: type[Any]


class TrioBridge:
    """Runs trio functions from the asyncio thread; asyncio cancellation becomes trio's."""

    def __init__(self, token: trio.lowlevel.TrioToken, nursery: trio.Nursery) -> None:
        self.inbox = TrioInbox(token)
        self.nursery = nursery

    async def call(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``afn(*args)`` run as a trio task. Runs on the asyncio thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        scope = trio.CancelScope()

        def deliver(ok: bool, value: Any) -> None:
            if not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

        async def runner() -> None:
            ok: bool = False
            value: Any = GRPCError(Status.UNAVAILABLE, "Server is shutting down")
            try:
                with scope:
                    value = await afn(*args)
                    ok = True
            except Exception as exc:  # handed to the asyncio side, re-raised there
                value = exc
            finally:
                # Always answer the asyncio side, also when trio cancels this task at shutdown
                # (then the client gets UNAVAILABLE instead of a hung stream).
                try:
                    loop.call_soon_threadsafe(deliver, ok, value)
                except RuntimeError:
                    pass  # loop already closed

        try:
            self.inbox.run_sync_soon(self.nursery.start_soon, runner)
        except trio.RunFinishedError:
            raise GRPCError(Status.UNAVAILABLE, "Server is shutting down") from None
        try:
            return await fut
        except asyncio.CancelledError:
            # Client cancel or deadline. FIFO order on the trio side means the cancel may run
            # before the task enters its scope; trio handles cancel-before-enter.
            try:
                self.inbox.run_sync_soon(scope.cancel)
            except trio.RunFinishedError:
                pass
            raise


def _grpc_error(exc: OvtrioError) -> GRPCError:
    return GRPCError(Status(exc.grpc_status), exc.message)


class _Refuse(asyncio.Protocol):
    """Closes a connection beyond --max_connections at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


_H2_DEFAULT_STREAMS = 100
_MAX_FRAME_SIZE = 1 << 20


class _CorkedTransport:
    """The socket's transport, with the writes of one event-loop turn sent as one.

    grpclib writes a reply's headers, message and trailers separately: three system calls,
    each of which also runs the receiving side of loopback TCP and wakes the client. Here
    they go out together at the end of the turn (``call_soon``), one ``writelines``, as do
    the replies of other streams finished in the same turn (tiny model, 64 gRPC clients:
    server CPU per request 470 -> 406 us, 508 -> 489 us in two 8-run A/Bs; one client's
    latency unchanged). ``close`` sends what is pending first.
    """

    __slots__ = ("_chunks", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        if len(self._chunks) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        chunks = self._chunks
        if not chunks:
            return
        self._chunks = []
        if self._transport.is_closing():
            return
        if len(chunks) == 1:
            self._transport.write(chunks[0])
        else:
            self._transport.writelines(chunks)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Server(grpclib.server.Server):
    """grpclib's Server with a drain-then-close shutdown (see module docstring)."""

    def __init__(
        self,
        handlers: Collection[Any],
        *,
        max_connections: int = 0,
        max_streams: int = _H2_DEFAULT_STREAMS,
        **kwargs: Any,
    ) -> None:
        super().__init__(handlers, **kwargs)
        self._protocols: weakref.WeakSet[Any] = weakref.WeakSet()
        self._live: set[Any] = set()
        self._max_connections = max_connections
        self._max_streams = max_streams

    def _protocol_factory(self) -> Any:
        if self._max_connections and len(self._live) >= self._max_connections:
            log.warning(
                "connection refused: %d connections are open (--max_connections)", len(self._live)
            )
            return _Refuse()
        protocol = super()._protocol_factory()
        self._protocols.add(protocol)
        self._live.add(protocol)
        lost, made = protocol.connection_lost, protocol.connection_made
        streams = self._max_streams

        def connection_made(transport: asyncio.BaseTransport) -> None:
            # h2 would announce 100 streams and 16 KiB frames; larger frames cut the
            # per-frame Python work of a 600 KB tensor by ~35x (+15 % req/s, MobileNet over
            # gRPC at 4 clients). In the first SETTINGS frame (see _H2Connection).
            global _first_settings
            _first_settings = {
                h2.settings.SettingCodes.MAX_FRAME_SIZE: _MAX_FRAME_SIZE,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: streams,
            }
            corked = _CorkedTransport(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
            try:
                made(corked)  # type: ignore[arg-type]
            finally:
                _first_settings = None

        def connection_lost(exc: BaseException | None) -> None:
            self._live.discard(protocol)
            lost(exc)

        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        protocol.connection_made = connection_made  # type: ignore[method-assign]
        return protocol

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()

    def in_flight(self) -> int:
        return sum(1 for h in self._handlers for t in h._tasks.values() if not t.done())

    async def close_connections(self) -> None:
        self.close()
        if self._handlers:
            await asyncio.wait({asyncio.ensure_future(h.wait_closed()) for h in self._handlers})
        for protocol in list(self._protocols):
            conn = getattr(protocol, "connection", None)
            if conn is not None:
                try:
                    conn._connection.close_connection()
                    conn.flush()
                finally:
                    conn._transport.close()
        await self.wait_closed()


OPEN_ROUTES = frozenset(
    {
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
    }
)
"""Answered without authentication (orchestrators probe them)."""


class _Servable:
    """The grpclib handler object built from an RpcTable."""

    def __init__(
        self,
        table: RpcTable,
        bridge_ref: Callable[[], TrioBridge],
        *,
        api_keys: tuple[str, ...] = (),
        max_message_bytes: int = 1 << 30,
    ) -> None:
        self._table = table
        self._bridge = bridge_ref
        self._keys = [k.encode() for k in api_keys]
        self._max = max_message_bytes
        self.active = 0
        """RPCs being handled. Written on grpclib's thread only; read from trio's."""

    def _authenticate(self, route: str, stream: grpclib.server.Stream[Any, Any]) -> None:
        if not self._keys or route in OPEN_ROUTES:
            return
        metadata: Any = stream.metadata or {}
        if not bearer_ok(metadata.get("authorization", ""), self._keys):
            raise GRPCError(
                Status.UNAUTHENTICATED,
                "Missing or invalid API key (metadata 'authorization: Bearer <key>')",
            )

    async def _receive(self, stream: grpclib.server.Stream[Any, Any], spec: RpcSpec) -> Any:
        """grpclib's message read, with the size limit checked before the body is read."""
        raw = stream._stream
        meta = await raw.recv_data(5)
        if len(meta) < 5:
            raise GRPCError(Status.INVALID_ARGUMENT, "Empty request: no message was sent")
        compressed, length = meta[0], struct.unpack(">I", meta[1:5])[0]
        if compressed:
            raise GRPCError(Status.UNIMPLEMENTED, "Compressed messages are not supported")
        if length > self._max:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"Request message of {length} bytes exceeds the limit of {self._max} bytes "
                "(--grpc_max_message_bytes)",
            )
        data = await raw.recv_data(length)
        if len(data) != length:
            raise GRPCError(Status.INVALID_ARGUMENT, "Truncated request message")
        raw.connection.messages_received += 1
        raw.connection.last_message_received = time.monotonic()
        try:
            message = spec.request_type.FromString(data)
            # betterproto2 does not check wire types: a varint where a message belongs
            # decodes as an int; refuse such messages here, for every RPC.
            check_wire_types(message)
        except OvtrioError as exc:
            raise _grpc_error(exc) from None
        except Exception as exc:  # undecodable message: the client's mistake
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"Cannot decode the request message: {exc}"
            ) from None
        return message

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping = {}
        for route, spec in self._table.items():
            mapping[route] = grpclib.const.Handler(
                self._wrap(route, spec),
                grpclib.const.Cardinality.UNARY_UNARY,
                spec.request_type,
                spec.reply_type,
            )
        return mapping

    def _wrap(
        self, route: str, spec: RpcSpec
    ) -> Callable[[grpclib.server.Stream[Any, Any]], Awaitable[None]]:
        async def handle(stream: grpclib.server.Stream[Any, Any]) -> None:
            self.active += 1
            try:
                self._authenticate(route, stream)
                request = await self._receive(stream, spec)
                try:
                    reply = await self._bridge().call(spec.func, request, stream)
                except OvtrioError as exc:
                    raise _grpc_error(exc) from None
                except GRPCError:
                    raise
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("unexpected error in %s", route)
                    raise GRPCError(Status.INTERNAL, "Internal server error") from None
                await stream.send_message(reply)
            finally:
                self.active -= 1

        return handle


@dataclass(slots=True)
class GrpcEndpoint:
    """What ``serve`` reports through ``task_status.started``."""

    host: str
    port: int
    stop: Callable[[], None]
    """Stop accepting new connections (in-flight RPCs continue)."""
    active: Callable[[], int]
    """RPCs being handled now (any route)."""


async def serve(
    table: RpcTable,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    api_keys: tuple[str, ...] = (),
    max_message_bytes: int = 1 << 30,
    max_connections: int = 0,
    max_streams: int = _H2_DEFAULT_STREAMS,
    task_status: trio.TaskStatus[GrpcEndpoint] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``table`` on host:port until cancelled; then drain and close.

    Cancellation: cancelling this task stops listening, waits for in-flight RPCs (which the
    caller's deadline bounds: once the enclosing scope's deadline passes the nursery running
    the handlers is cancelled too) and joins the loop thread.
    """
    token = trio.lowlevel.current_trio_token()
    started = trio.Event()
    finished = trio.Event()
    failure: list[BaseException] = []
    state: dict[str, Any] = {}

    async with trio.open_nursery() as rpc_nursery:
        bridge = TrioBridge(token, rpc_nursery)
        servable = _Servable(
            table, lambda: bridge, api_keys=api_keys, max_message_bytes=max_message_bytes
        )

        async def amain() -> None:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            server = _Server([servable], max_connections=max_connections, max_streams=max_streams)
            state["loop"], state["stop"], state["server"] = loop, stop, server
            try:
                await server.start(host, port, reuse_address=True, ssl=ssl_context)
            except OSError as exc:
                failure.append(exc)
                token.run_sync_soon(started.set)
                return
            token.run_sync_soon(started.set)
            await stop.wait()
            server.stop_listening()
            while server.in_flight():  # noqa: ASYNC110 - grpclib offers no event for this
                await asyncio.sleep(0.01)
            await server.close_connections()

        def thread_main() -> None:
            try:
                uvloop.run(amain())
            except BaseException as exc:  # reported to trio below
                failure.append(exc)
            finally:
                try:
                    token.run_sync_soon(finished.set)
                    token.run_sync_soon(started.set)
                except trio.RunFinishedError:
                    pass

        thread = threading.Thread(target=thread_main, name="ovtrio-grpc", daemon=True)
        thread.start()
        await started.wait()
        if failure:
            await finished.wait()
            rpc_nursery.cancel_scope.cancel()
            raise OSError(f"gRPC server cannot listen on {host}:{port}: {failure[0]}")

        def stop_listening() -> None:
            state["loop"].call_soon_threadsafe(lambda: state["server"].stop_listening())

        task_status.started(GrpcEndpoint(host, port, stop_listening, lambda: servable.active))
        try:
            await finished.wait()
        finally:
            loop = state.get("loop")
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(state["stop"].set)
                except RuntimeError:
                    pass
            # In-flight handlers run in rpc_nursery, which stays open until they finish; they
            # need no shield: when the caller's grace deadline passes, they are cancelled too.
            with trio.CancelScope(shield=True):
                with trio.move_on_after(60):
                    await finished.wait()
            rpc_nursery.cancel_scope.cancel()
        if failure:
            raise RuntimeError(f"gRPC server thread failed: {failure[0]!r}")
