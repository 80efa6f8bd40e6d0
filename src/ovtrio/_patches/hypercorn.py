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

``IdleTimer``: one idle timer per connection (not installed: the REST server sets it on each
connection)
    **What.** The idle timeout (``--rest_idle_timeout_s``) as one task per connection whose
    deadline moves, behind ``TrioSingleTask``'s interface.
    **Why (measured).** hypercorn's idle timeout is a task per idle period, cancelled by each
    request and restarted by each answer under a lock (595 -> 482 us of server CPU per
    request, tiny model, 64 REST clients).
    **Upstream.** the same moving-deadline timer in hypercorn's ``TCPServer``.
"""

from __future__ import annotations

import math
from typing import Any

import h11
import trio
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer

from ._pins import check_pin

__all__ = ["DISCONNECT_HOOK", "DisconnectHook", "IdleTimer", "install"]

_originals: dict[str, Any] = {}

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


def install() -> None:
    """Install the send-lock close, the disconnect hook and the coalesced writes (idempotent)."""
    check_pin("hypercorn")
    if _originals:
        return
    _originals["TCPServer._close"] = TCPServer._close
    _originals["TaskGroup.spawn_app"] = TaskGroup.spawn_app
    _originals["H11Protocol._send_h11_event"] = H11Protocol._send_h11_event
    _originals["H11Protocol.stream_send"] = H11Protocol.stream_send
    TCPServer._close = _close_locked  # type: ignore[method-assign]
    TaskGroup.spawn_app = _spawn_app_hooked  # type: ignore[method-assign]
    H11Protocol._send_h11_event = _send_h11_event_held  # type: ignore[method-assign]
    H11Protocol.stream_send = _stream_send_flushing  # type: ignore[method-assign]


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
    """hypercorn's ``TaskGroup.spawn_app`` with a ``DisconnectHook`` in HTTP scopes."""
    spawn_app = _originals["TaskGroup.spawn_app"]
    if scope.get("type") != "http":
        return await spawn_app(self, app, config, scope, send)
    hook = DisconnectHook()
    scope["extensions"][DISCONNECT_HOOK] = hook
    put = await spawn_app(self, app, config, scope, send)

    async def app_put(event: Any) -> None:
        if event["type"] == "http.disconnect":
            hook.fire()
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
    """hypercorn's ``H11Protocol.stream_send``; held headers go out if no body follows."""
    if not isinstance(event, (Response, Body, EndBody)):
        held = getattr(self, "_ovtrio_held", b"")
        if held:
            self._ovtrio_held = b""
            await self.send(RawData(data=held))
    await _originals["H11Protocol.stream_send"](self, event)


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
