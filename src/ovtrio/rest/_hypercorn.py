"""Fixes and tunings for hypercorn's trio worker (hypercorn 0.18).

Two fixes, found by the fuzz tests.

A client that closes or half-closes its connection while the server is answering a request
whose body it has not read makes hypercorn's ``send_eof`` race with ``send_all``
(``trio.BusyResourceError``). The exception leaves ``TCPServer.run``, reaches the nursery of
``trio.serve_listeners`` and stops the whole REST server: the process exits. Found by the fuzz
tests (``tests/e2e/test_fuzz.py``, "close race"). One broken connection must only end that
connection, so:

* ``TCPServer._close`` runs under the connection's send lock (unless the task closing already
  holds it), so ``send_eof`` no longer races an answer being written;
* ``TCPServer.run`` is wrapped to log and contain ordinary exceptions (cancellation, a
  BaseException, still propagates).

The same wrapper enforces ``--max_connections``: a connection beyond the limit is closed at
once (hypercorn has no such setting).

Tunings, each measured:

* **One write per answer.** hypercorn writes an HTTP/1.1 answer in three socket writes: the
  status line and headers, the body, and the end of the message (empty for a
  ``content-length`` body, written anyway). Each write on loopback also runs the client's side
  of TCP and wakes it, and releases the GIL: 3.3 writes of 1.4 KB per MobileNet-style answer
  took 75 us of CPU and 240 us of the trio thread's time each. ``_coalesce`` holds the headers
  until the body is there and writes nothing empty.
* **One idle timer per connection.** hypercorn's idle timeout (``--rest_idle_timeout_s``) was
  a task per idle period: each request cancelled it and each answer started a new one, under a
  lock (``TrioSingleTask``). ``_IdleTimer`` is one task per connection whose deadline moves
  (tiny model, 64 REST clients: 595 -> 482 us of server CPU per request in an 8-run A/B).
* **Disconnects without a watcher task.** A client that disconnects must cancel its
  inference; ASGI says so only through ``receive()``, so the infer route waited for
  ``http.disconnect`` in a task of its own beside the inference: a nursery, a task and a
  cancellation per request (663 -> 591 us, same load). ``_disconnect_hook`` puts a
  ``DisconnectHook`` in every HTTP scope's ``extensions``, fired when hypercorn queues
  ``http.disconnect`` for the app; the route runs the inference in a cancel scope the hook
  cancels.
* **Bigger reads.** hypercorn reads a connection 64 KiB at a time, and every read goes through
  h11 and an ASGI message; a 600 KB tensor body took ten rounds. ``_RECV_BYTES`` reads
  120 KiB: the buffer of every read is allocated at that size first, and from glibc's mmap
  threshold (128 KiB) on that is an mmap per read (256 KiB: MobileNet-style bodies +7 % req/s,
  small requests -5 %).
* **Large bodies straight into one buffer** (``_BodyLane``). Even at 120 KiB a read, a
  600 KB body went through h11 and hypercorn five times: each read was copied into h11's
  buffer, out of it, into ``bytes`` by hypercorn, queued to the app (a task switch) and joined
  by the app at the end. A body declared (``content-length``) larger than one read now goes
  into a buffer of its size: what h11 has already parsed is copied there, the rest is read
  from the socket into it (``recv_into``, no copy in Python), and the app gets the whole body
  as one message, a memoryview of that buffer. The buffer is allocated untouched
  (``numpy.empty``), so a client that declares a large body and sends little costs address
  space, not memory. h11 still checks the framing: it is told the body arrived, then sees
  the end of the message (or the client's EOF, as without the lane); TLS connections fill
  the buffer from h11's events only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import h11._readers
import hypercorn.trio.tcp_server
import numpy as np
import trio
from hypercorn.events import Closed, RawData
from hypercorn.protocol.events import Body, EndBody, Event, Response
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer

__all__ = ["DISCONNECT_HOOK", "DisconnectHook", "contain_connection_errors"]

log = logging.getLogger("hypercorn.error")

_original_run: Callable[[Any], Awaitable[None]] | None = None
_RECV_BYTES = 120 << 10
_limit = [0, 0]
"""[connections open now, the limit (0 = none)]."""
_lane_max = [1 << 30]
"""The largest body read into a ``_BodyLane`` (--rest_max_body_bytes: larger ones get 413)."""


def contain_connection_errors(max_connections: int = 0, max_body_bytes: int = 1 << 30) -> None:
    """Install the wrappers once (idempotent); ``max_connections`` 0 means no limit."""
    global _original_run
    _limit[1] = max_connections
    _lane_max[0] = max_body_bytes
    if _original_run is not None:
        return
    _original_run = TCPServer.run
    original = _original_run
    hypercorn.trio.tcp_server.MAX_RECV = _RECV_BYTES

    async def run(self: Any) -> None:
        if _limit[1] and _limit[0] >= _limit[1]:
            log.warning(
                "connection refused: %d connections are open (--max_connections)", _limit[0]
            )
            await self.stream.aclose()
            return
        _limit[0] += 1
        self.idle_task = _IdleTimer(self)
        try:
            await original(self)
        except Exception as exc:  # contained: one connection's failure ends only that connection
            log.debug("connection ended by an error: %r", exc)
        finally:
            _limit[0] -= 1

    TCPServer.run = run  # type: ignore[method-assign]

    original_close = TCPServer._close

    async def close(self: Any) -> None:
        lock = self.send_lock
        if lock.statistics().owner is trio.lowlevel.current_task():
            await original_close(self)
        else:
            async with lock:
                await original_close(self)

    TCPServer._close = close  # type: ignore[method-assign]

    TCPServer._read_data = _read_data  # type: ignore[method-assign]
    _coalesce()
    _disconnect_hook()
    _body_lane()


async def _read_data(self: Any) -> None:
    """hypercorn's read loop, which also fills a ``_BodyLane`` from the socket."""
    stream = self.stream
    timeout = self.config.read_timeout or math.inf
    try:
        while True:
            try:
                with trio.fail_after(timeout):
                    data = await stream.receive_some(_RECV_BYTES)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                break
            await self.protocol.handle(RawData(bytes(data)))
            if data == b"":
                break
            protocol = self.protocol.protocol
            lane = getattr(protocol, "_ovtrio_lane", None)
            if lane is None or not isinstance(stream, trio.SocketStream):
                continue
            connection = protocol.connection
            reader = connection._reader
            if len(connection._receive_buffer) or reader._remaining != lane.missing:
                continue  # h11 holds bytes of its own: leave the framing to it
            try:
                ended = not await lane.fill(stream.socket, timeout)
            except (OSError, trio.TooSlowError, trio.ClosedResourceError):
                break  # as receive_some's errors above (an early answer closed the socket)
            if ended:  # the client's EOF in the body: h11 answers it as without the lane
                await self.protocol.handle(RawData(b""))
                break
            reader._remaining = 0  # h11: the body is here, the end of the message next
            await protocol._handle_events()
        await self.protocol.handle(Closed())
    finally:  # the connection is over: its idle timer too
        idle = self.idle_task
        if isinstance(idle, _IdleTimer):
            idle.close()


class _BodyLane:
    """One request body read into a buffer of its declared size (module doc)."""

    __slots__ = ("filled", "view")

    def __init__(self, size: int) -> None:
        self.view = np.empty(size, np.uint8).data
        self.filled = 0

    @property
    def missing(self) -> int:
        return len(self.view) - self.filled

    def add(self, data: bytes | bytearray) -> None:
        end = self.filled + len(data)
        self.view[self.filled : end] = data
        self.filled = end

    async def fill(self, sock: trio.socket.SocketType, per_read_s: float) -> bool:
        """Read the rest from ``sock``; False at the client's EOF before the end.

        ``per_read_s`` bounds each wait for data, as hypercorn's read timeout does (a slow
        upload that keeps sending is not cut off): not a deadline on the whole call."""
        view = self.view
        while self.filled < len(view):
            with trio.fail_after(per_read_s):
                got = await sock.recv_into(view[self.filled :])
            if not got:
                return False
            self.filled += got
        return True


_LANE_FROM = _RECV_BYTES
"""Bodies declared at least this large take the lane (smaller ones arrive in one read)."""


def _body_lane() -> None:
    """Large request bodies into one buffer (module doc)."""
    original_create_stream = H11Protocol._create_stream

    async def create_stream(self: Any, request: h11.Request) -> None:
        await original_create_stream(self, request)
        self._ovtrio_lane = None
        stream = self.stream
        reader = getattr(self.connection, "_reader", None)
        if (
            not isinstance(stream, HTTPStream)
            or stream.app_put is None
            or type(reader) is not h11._readers.ContentLengthReader
            or not _LANE_FROM <= reader._remaining <= _lane_max[0]
            or self.connection.they_are_waiting_for_100_continue
        ):
            return
        lane = self._ovtrio_lane = _BodyLane(reader._remaining)
        handle = stream.handle

        async def lane_handle(event: Event) -> None:
            if self._ovtrio_lane is lane:
                if isinstance(event, Body):
                    lane.add(event.data)
                    return
                if isinstance(event, EndBody):
                    self._ovtrio_lane = None
                    if not stream.closed:
                        body: Any = {"type": "http.request", "body": lane.view, "more_body": False}
                        await stream.app_put(body)
                    return
                self._ovtrio_lane = None  # the stream closes first: the client left
            await handle(event)

        stream.handle = lane_handle  # type: ignore[method-assign]

    H11Protocol._create_stream = create_stream  # type: ignore[method-assign]


DISCONNECT_HOOK = "ovtrio.disconnect"
"""Key of the ``DisconnectHook`` in an HTTP scope's ``extensions``."""


class DisconnectHook:
    """Tells the app, without ``receive()``, that its client disconnected.

    ``fired`` once hypercorn queued ``http.disconnect``; ``scope`` (set by the app while it
    waits on something else) is cancelled then.
    """

    __slots__ = ("fired", "scope")

    def __init__(self) -> None:
        self.fired = False
        self.scope: trio.CancelScope | None = None

    def fire(self) -> None:
        self.fired = True
        if self.scope is not None:
            self.scope.cancel()


def _disconnect_hook() -> None:
    """A ``DisconnectHook`` in every HTTP scope, fired with ``http.disconnect`` (module doc)."""
    original_spawn_app = TaskGroup.spawn_app

    async def spawn_app(self: Any, app: Any, config: Any, scope: Any, send: Any) -> Any:
        if scope.get("type") != "http":
            return await original_spawn_app(self, app, config, scope, send)
        hook = DisconnectHook()
        scope["extensions"][DISCONNECT_HOOK] = hook
        put = await original_spawn_app(self, app, config, scope, send)

        async def app_put(event: Any) -> None:
            if event["type"] == "http.disconnect":
                hook.fire()
            await put(event)

        return app_put

    TaskGroup.spawn_app = spawn_app  # type: ignore[method-assign]


class _IdleTimer:
    """A connection's idle timeout: ``TrioSingleTask``'s interface, one task (module doc).

    hypercorn calls ``restart`` when the connection becomes idle (at its start and after each
    answer) and ``stop`` when a request begins. The task closes the connection once it has
    been idle for ``keep_alive_timeout``, or at once when the server is terminating and the
    connection is idle, as hypercorn's own idle task does.
    """

    def __init__(self, server: Any) -> None:
        self._server = server
        self._timeout: float = server.config.keep_alive_timeout
        self._idle_since: float | None = None
        """When the connection became idle; None while a request is served."""
        self._running = False
        self._deadline: trio.CancelScope | None = None
        self._idle_again = trio.Event()
        self._all = trio.CancelScope()

    async def restart(self, task_group: Any, _action: Any) -> None:
        self._idle_since = trio.current_time()
        if not self._running:
            self._running = True
            task_group._nursery.start_soon(self._watch)
        elif self._deadline is not None:
            self._deadline.deadline = self._idle_since + self._timeout
        else:
            self._idle_again.set()

    async def stop(self) -> None:
        self._idle_since = None
        if self._deadline is not None:
            self._deadline.deadline = math.inf

    def close(self) -> None:
        """The connection ended: the task ends without closing anything."""
        self._all.cancel()

    async def _watch(self) -> None:
        terminated = self._server.context.terminated
        with self._all:
            while True:
                since = self._idle_since
                if since is None:
                    self._idle_again = trio.Event()
                    await self._idle_again.wait()
                    continue
                with trio.move_on_at(since + self._timeout) as self._deadline:
                    try:
                        await terminated.wait()
                    finally:
                        self._deadline = None
                since = self._idle_since
                if since is not None and (
                    terminated.is_set() or trio.current_time() >= since + self._timeout
                ):
                    break
        if self._all.cancelled_caught:
            return
        with trio.CancelScope(shield=True):
            await self._server._initiate_server_close()


def _coalesce() -> None:
    """One socket write per answer: the headers wait for the body (module doc)."""
    original_stream_send = H11Protocol.stream_send

    async def send_h11_event(self: Any, event: Any) -> None:
        held = getattr(self, "_ovtrio_held", b"")
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            data = b""
        if isinstance(event, h11.Response):
            self._ovtrio_held = held + data
            return
        if held:
            self._ovtrio_held = b""
            data = held + data
        if data:
            await self.send(RawData(data=data))

    async def stream_send(self: Any, event: Any) -> None:
        if not isinstance(event, (Response, Body, EndBody)):
            held = getattr(self, "_ovtrio_held", b"")
            if held:  # the stream ends without a body: the headers go now
                self._ovtrio_held = b""
                await self.send(RawData(data=held))
        await original_stream_send(self, event)

    H11Protocol._send_h11_event = send_h11_event  # type: ignore[method-assign]
    H11Protocol.stream_send = stream_send  # type: ignore[method-assign]
