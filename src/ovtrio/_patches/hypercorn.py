"""Fixes and tunings of hypercorn's trio worker (hypercorn 0.18).

``TCPServer._close`` under the send lock
    **What.** ``_close`` runs under the connection's ``send_lock`` (unless the closing task
    already holds it), so ``send_eof`` no longer races an answer being written.
    **Why (measured).** A client that closes or half-closes while the server answers a request
    whose body it has not read made ``send_eof`` race ``send_all`` (``trio.BusyResourceError``),
    which stopped the whole REST server (tests/e2e/test_fuzz.py, "close race").
    **Upstream.** hypercorn's ``_close`` taking ``send_lock``.

``TaskGroup.spawn_app``: the disconnect hook
    **What.** A ``DisconnectHook`` in every HTTP scope's ``extensions`` (key
    ``DISCONNECT_HOOK``), fired when hypercorn queues ``http.disconnect`` for the app; the
    infer route runs the inference in a cancel scope the hook cancels.
    **Why (measured).** ASGI reports a disconnect only through ``receive()``: a watcher task
    beside each inference cost a nursery, a task and a cancellation per request (663 -> 591 us
    of server CPU per request, tiny model, 64 REST clients).
    **Upstream.** an ASGI extension in hypercorn that notifies the app of a disconnect.

``H11Protocol._send_h11_event`` and ``stream_send``: one write per answer
    **What.** The status line and headers wait for the body and go out with it; nothing empty
    is written.
    **Why (measured).** hypercorn writes an HTTP/1.1 answer in three socket writes, each of
    which runs the client's side of loopback TCP: 3.3 writes of 1.4 KB per MobileNet-style
    answer took 75 us of CPU and 240 us of the trio thread's time each.
    **Upstream.** hypercorn sending the headers with the first body chunk.

``TaskGroup.spawn_app``: no scheduling round trip when nothing waits, a lighter queue
    **What.** The app's queue is ``AppQueue``: used as hypercorn uses its memory channel, but
    a message is put with ``send_nowait`` when there is room, and the app can take one
    already queued without waiting (``DisconnectHook.take``).
    **Why (measured).** trio's channel ``send`` and ``receive`` yield to the scheduler even
    when nothing blocks (``scripts/rest_call_cost.py``; with the read loop's socket-first
    reads, ``_patches.h11``, about ten scheduler round trips per tiny REST request become
    three); and ``open_memory_channel`` subscripts its generic classes per call (~3 % of a
    tiny REST request, py-spy). Writing answers straight to the socket as well (skipping
    the send lock's round trip) was tried and left out: with tritonclient's asyncio HTTP
    clients on the same cores it cost 40 % more server CPU per request.
    **Upstream.** trio channels with non-yielding fast paths (trio's ``checkpoint`` per call
    is by design) and without typing work at construction; hypercorn's ASGI receive taking
    what is queued.

``TCPServer.protocol_send``: no cancel scope for a write that does not wait
    **What.** On a plain TCP connection, under hypercorn's send lock as before, the bytes are
    written at once; only a write the socket cannot take whole continues in a shielded
    cancel scope (``ovtrio._ready.send_ready``). It yields once, as trio's ``send_all``
    does, so the scheduling is hypercorn's.
    **Why (measured).** The shielded scope and trio's ``send_all`` (its conflict detector,
    the socket wrapper) were ~7 % of a tiny REST request (py-spy).
    **Upstream.** trio's ``SocketStream.send_all`` trying the socket before its
    bookkeeping; hypercorn shielding only a write that waits.

``Config.response_headers``: once per second
    **What.** The ``date`` and ``server`` headers each answer carries are built once per
    second and protocol, and copied for each answer.
    **Why (measured).** hypercorn formats the date (``wsgiref``'s ``format_date_time``) for
    every answer: ~2 % of a tiny REST request (``scripts/rest_call_cost.py``, py-spy).
    **Upstream.** a cached date header in hypercorn's ``Config``.

``IdleTimer``: one idle timer per connection (not installed: the REST server sets it on each
connection)
    **What.** The idle timeout (``--rest_idle_timeout_s``) as one task per connection,
    behind ``TrioSingleTask``'s interface: a request and its answer only note the time; the
    task looks when its deadline passes and sets the next one.
    **Why (measured).** hypercorn's idle timeout is a task per idle period, cancelled by each
    request and restarted by each answer under a lock (595 -> 482 us of server CPU per
    request, tiny model, 64 REST clients).
    **Upstream.** the same moving-deadline timer in hypercorn's ``TCPServer``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import h11
import h11._headers
import hypercorn.trio.task_group
import outcome
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, RawData
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer

from .._ready import send_ready, write_now
from ._heads import plain_header_items
from ._pins import check_pin

__all__ = ["DISCONNECT_HOOK", "DisconnectHook", "IdleTimer", "install"]

_originals: dict[str, Any] = {}

DISCONNECT_HOOK = "ovtrio.disconnect"
"""Key of the ``DisconnectHook`` in an HTTP scope's ``extensions``."""


class AppQueue:
    """hypercorn's queue of ASGI messages for one request's app: a bounded FIFO with one
    receiver, used as trio's memory channel is (``send``, ``send_nowait``, ``receive``,
    ``receive_nowait``: the same waits, checkpoints and ``WouldBlock``), without the
    channel's construction (module doc)."""

    __slots__ = ("_items", "_max", "_receiver", "_room")

    def __init__(self, max_size: int) -> None:
        self._items: deque[Any] = deque()
        self._max = max_size
        self._receiver: trio.lowlevel.Task | None = None
        self._room: trio.lowlevel.ParkingLot | None = None
        """Senders waiting for room (made by the first that waits)."""

    def send_nowait(self, item: Any) -> None:
        receiver = self._receiver
        if receiver is not None:  # it waits on an empty queue: hand the item over
            self._receiver = None
            trio.lowlevel.reschedule(receiver, outcome.Value(item))
        elif len(self._items) >= self._max:
            raise trio.WouldBlock
        else:
            self._items.append(item)

    async def send(self, item: Any) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.send_nowait(item)
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self._room is None:
            self._room = trio.lowlevel.ParkingLot()
        while True:
            await self._room.park()
            try:
                self.send_nowait(item)
            except trio.WouldBlock:
                continue
            return

    def receive_nowait(self) -> Any:
        if not self._items:
            raise trio.WouldBlock
        item = self._items.popleft()
        if self._room:
            self._room.unpark()
        return item

    async def receive(self) -> Any:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            item = self.receive_nowait()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item
        self._receiver = trio.lowlevel.current_task()

        def abort(_raise: Any) -> trio.lowlevel.Abort:
            self._receiver = None
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)


class DisconnectHook:
    """Tells the app, without ``receive()``, that its client disconnected.

    ``fired`` once hypercorn queued ``http.disconnect``; ``scope`` (set by the app while it
    waits on something else) is cancelled then.
    """

    __slots__ = ("_queue", "fired", "scope")

    def __init__(self, queue: AppQueue | None = None) -> None:
        self.fired = False
        self.scope: trio.CancelScope | None = None
        self._queue = queue

    def take(self) -> Any:
        """The app's next ASGI message if hypercorn has already queued it, else None (then
        ``await receive()``)."""
        if self._queue is None:
            return None
        try:
            return self._queue.receive_nowait()
        except trio.WouldBlock:
            return None

    def fire(self) -> None:
        self.fired = True
        if self.scope is not None:
            self.scope.cancel()


def install() -> None:
    """Install the send-lock close, the disconnect hook with the app queue, the coalesced and
    scope-free writes and the per-second response headers (idempotent)."""
    check_pin("hypercorn")
    if _originals:
        return
    _originals["TCPServer._close"] = TCPServer._close
    _originals["TaskGroup.spawn_app"] = TaskGroup.spawn_app
    _originals["H11Protocol._send_h11_event"] = H11Protocol._send_h11_event
    _originals["H11Protocol.stream_send"] = H11Protocol.stream_send
    _originals["Config.response_headers"] = Config.response_headers
    _originals["TCPServer.protocol_send"] = TCPServer.protocol_send
    TCPServer._close = _close_locked  # type: ignore[method-assign]
    TaskGroup.spawn_app = _spawn_app_hooked  # type: ignore[method-assign]
    H11Protocol._send_h11_event = _send_h11_event_held  # type: ignore[method-assign]
    H11Protocol.stream_send = _stream_send_flushing  # type: ignore[method-assign]
    Config.response_headers = _response_headers_per_second  # type: ignore[method-assign]
    TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]


async def _protocol_send(self: Any, event: Any) -> None:
    """hypercorn's ``TCPServer.protocol_send``; on a plain TCP connection the bytes are
    written at once when the socket takes them all (no shielded cancel scope, which only a
    write that has to wait needs), with the one yield trio's ``send_all`` makes."""
    stream = self.stream
    if type(event) is not RawData or type(stream) is not trio.SocketStream:
        await _originals["TCPServer.protocol_send"](self, event)
        return
    async with self.send_lock:
        try:
            rest = write_now(stream.socket, event.data)
            if rest:
                with trio.CancelScope(shield=True):
                    await send_ready(stream.socket, rest)
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self.protocol.handle(Closed())


def _response_headers_per_second(self: Any, protocol: str) -> list[tuple[bytes, bytes]]:
    """hypercorn's ``Config.response_headers``, built at most once per second and protocol."""
    now = int(time.time())
    cached = self.__dict__.get("_ovtrio_response_headers")
    if cached is None or cached[0] != now or cached[1] != protocol:
        cached = (now, protocol, _originals["Config.response_headers"](self, protocol))
        self.__dict__["_ovtrio_response_headers"] = cached
    return list(cached[2])


async def _close_locked(self: Any) -> None:
    """hypercorn's ``TCPServer._close`` under the connection's send lock."""
    close = _originals["TCPServer._close"]
    lock = self.send_lock
    if lock.statistics().owner is trio.lowlevel.current_task():
        await close(self)
    else:
        async with lock:
            await close(self)


async def _spawn_app_hooked(self: Any, app: Any, config: Any, scope: Any, send: Any) -> Any:
    """hypercorn's ``TaskGroup.spawn_app`` (the app in a task of the connection's nursery),
    fed through an ``AppQueue``, with a ``DisconnectHook`` in HTTP scopes and a put that does
    not yield when the queue has room."""
    if scope.get("type") != "http":
        return await _originals["TaskGroup.spawn_app"](self, app, config, scope, send)
    queue = AppQueue(config.max_app_queue_size)
    hook = DisconnectHook(queue)
    scope["extensions"][DISCONNECT_HOOK] = hook
    self._nursery.start_soon(
        hypercorn.trio.task_group._handle,
        app,
        config,
        scope,
        queue.receive,
        send,
        trio.to_thread.run_sync,
        trio.from_thread.run,
    )
    send_nowait, put = queue.send_nowait, queue.send

    async def app_put(event: Any) -> None:
        if event["type"] == "http.disconnect":
            hook.fire()
        try:
            send_nowait(event)
        except trio.WouldBlock:
            await put(event)

    return app_put


async def _send_h11_event_held(self: Any, event: Any) -> None:
    """hypercorn's ``H11Protocol._send_h11_event``; a ``Response`` waits for the body."""
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


async def _stream_send_flushing(self: Any, event: Any) -> None:
    """hypercorn's ``H11Protocol.stream_send``; held headers go out if no body follows; an
    answer's head whose headers need no h11 validation skips it (``_checked_response``)."""
    if not isinstance(event, (Response, Body, EndBody)):
        held = getattr(self, "_ovtrio_held", b"")
        if held:
            self._ovtrio_held = b""
            await self.send(RawData(data=held))
    elif type(event) is Response and event.status_code >= 200:
        headers = list(event.headers)
        headers += self.config.response_headers("h11")
        if self.keep_alive_requests >= self.config.keep_alive_max_requests:
            headers.append((b"connection", b"close"))
        await self._send_h11_event(_checked_response(headers, event.status_code))
        return
    await _originals["H11Protocol.stream_send"](self, event)


_TOKEN = b"-!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
"""The bytes of h11's ``token`` (a header name)."""


def _checked_response(headers: list[tuple[bytes, bytes]], status: int) -> h11.Response:
    """``h11.Response(headers=..., status_code=status)``; when every name is a token and
    every value h11's field-value (checked here with ``bytes.translate``, not h11's regular
    expressions per header), with at most one content-length of digits and no
    transfer-encoding, built here as h11 would build it from those checked headers."""
    for name, value in headers:
        if (
            type(name) is not bytes
            or type(value) is not bytes
            or not name
            or name.translate(None, _TOKEN)
            or (value and (value[0] in b" \t" or value[-1] in b" \t"))
            or len(value.translate(None, b"\x00\n\x0b\x0c\r")) != len(value)
        ):
            return h11.Response(headers=headers, status_code=status)
    items = plain_header_items(headers)
    if items is None or type(status) is not int or not 200 <= status < 1000:
        return h11.Response(headers=headers, status_code=status)  # h11 decides (and words it)
    # what Response.__init__ sets once it has checked what is checked above
    response = object.__new__(h11.Response)
    object.__setattr__(response, "headers", h11._headers.Headers(items))
    object.__setattr__(response, "status_code", status)
    object.__setattr__(response, "reason", b"")
    object.__setattr__(response, "http_version", b"1.1")
    return response


class IdleTimer:
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
        self._waiting = False
        """The task waits for the connection to become idle (``_idle_again``)."""
        self._idle_again = trio.Event()
        self._all = trio.CancelScope()

    async def restart(self, task_group: Any, _action: Any) -> None:
        self._idle_since = trio.current_time()
        if not self._running:
            self._running = True
            task_group._nursery.start_soon(self._watch)
        elif self._waiting:
            self._idle_again.set()

    async def stop(self) -> None:
        # the deadline stays: when it passes, the task finds the connection busy (or idle
        # since later) and waits again; moving it per request cost ~2 % of a tiny request
        self._idle_since = None

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
                    self._waiting = True
                    try:
                        await self._idle_again.wait()
                    finally:
                        self._waiting = False
                    continue
                with trio.move_on_at(since + self._timeout):
                    await terminated.wait()
                since = self._idle_since
                if since is not None and (
                    terminated.is_set() or trio.current_time() >= since + self._timeout
                ):
                    break
        if self._all.cancelled_caught:
            return
        with trio.CancelScope(shield=True):
            await self._server._initiate_server_close()
