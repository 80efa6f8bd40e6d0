"""grpclib on trio's thread: an asyncio loop run by a trio task, sockets served by trio.

grpclib is written for asyncio: its protocol object reads bytes through ``data_received``,
writes through a transport, and runs each RPC as an asyncio task that awaits asyncio events
and timers. Here none of that needs a thread of its own:

* ``HostedLoop`` is the asyncio loop grpclib sees: ``call_soon``, timers, futures and tasks,
  and no I/O. A trio task (``HostedLoop.run``) runs its callbacks on trio's thread, so an RPC's
  asyncio task and the trio task that serves it hand over with a plain function call, not a
  wake-up of another thread.
* ``serve_connection`` is a trio task per accepted connection: it feeds what trio's socket
  stream receives to grpclib's protocol and writes what grpclib writes (``_Transport``); the
  writes of one trio scheduling batch go out in one ``send_all``.

asyncio's running loop is this loop only while grpclib's code runs (``HostedLoop.entered``);
trio's other code on the thread sees none.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import heapq
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import trio

from .._inbox import TrioInbox
from .._patches.h2 import DataLane, FrameLanes
from .._ready import receive_into_ready, receive_ready, send_ready

__all__ = ["HostedLoop", "serve_connection"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_RECEIVE_BYTES = 1 << 18
_HIGH_WATER = 1 << 20
"""Buffered bytes beyond which grpclib is told to pause writing (``pause_writing``)."""
_LOW_WATER = 1 << 16


class _Handle:
    """A callback ``call_soon`` queued (asyncio's ``Handle`` interface: ``cancel``)."""

    __slots__ = ("_args", "_callback", "_cancelled", "_context")

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        context: contextvars.Context | None,
    ) -> None:
        self._callback = callback
        self._args = args
        self._context = context
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def _run(self, loop: HostedLoop) -> None:
        try:
            if self._context is None:
                self._callback(*self._args)
            else:
                self._context.run(self._callback, *self._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            loop.call_exception_handler(
                {"message": f"exception in callback {self._callback!r}", "exception": exc}
            )


class _TimerHandle(_Handle):
    """A callback ``call_at`` / ``call_later`` scheduled (``when``, ``cancel``)."""

    __slots__ = ("_when",)

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        context: contextvars.Context | None,
    ) -> None:
        super().__init__(callback, args, context)
        self._when = when

    def when(self) -> float:
        return self._when

    def __lt__(self, other: _TimerHandle) -> bool:
        return self._when < other._when


class _Entered:
    """``HostedLoop.entered``: a class, not a generator, as it wraps every receive."""

    __slots__ = ("_loop", "_outer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._outer: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> None:
        self._outer = asyncio._get_running_loop()
        asyncio._set_running_loop(self._loop)

    def __exit__(self, *exc: object) -> None:
        asyncio._set_running_loop(self._outer)


class HostedLoop(asyncio.AbstractEventLoop):
    """The part of asyncio's event loop that grpclib, asyncio's futures, tasks, events and
    timeouts use, with its callbacks run by ``run`` (a trio task). It does no I/O."""

    def __init__(self) -> None:
        self._ready: collections.deque[_Handle] = collections.deque()
        self._timers: list[_TimerHandle] = []
        self._wake: trio.Event | None = None
        self._closed = False
        self._inbox = TrioInbox(trio.lowlevel.current_trio_token())

    # -- running ------------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the loop's callbacks until cancelled (then the loop is closed)."""
        task_status.started()
        try:
            while True:
                self._run_once()
                if self._ready:
                    await trio.lowlevel.checkpoint()
                    continue
                wake = self._wake = trio.Event()
                deadline = math.inf
                if self._timers:
                    deadline = trio.current_time() + max(0.0, self._timers[0]._when - self.time())
                with trio.move_on_at(deadline):
                    await wake.wait()
                self._wake = None
        finally:
            self._closed = True

    def _run_once(self) -> None:
        ready, timers = self._ready, self._timers
        if timers:
            now = self.time()
            while timers and (timers[0]._cancelled or timers[0]._when <= now):
                timer = heapq.heappop(timers)
                if not timer._cancelled:
                    ready.append(timer)
        with self.entered():
            for _ in range(len(ready)):
                handle = ready.popleft()
                if not handle._cancelled:
                    handle._run(self)

    async def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> T:
        """``coro`` run as an asyncio task on this loop, awaited from a trio task; cancelling
        the trio task cancels the asyncio task (and waits for it to end)."""
        done = trio.Event()
        with self.entered():
            task = self.create_task(coro)
        task.add_done_callback(lambda _task: done.set())
        try:
            await done.wait()
        except BaseException:
            task.cancel()
            with trio.CancelScope(shield=True):
                await done.wait()
            raise
        result: T = task.result()
        return result

    def entered(self) -> _Entered:
        """asyncio's running loop is this one within (grpclib's code calls
        ``asyncio.get_event_loop()``)."""
        return _Entered(self)

    def _wakeup(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    # -- asyncio's interface ------------------------------------------------------------------

    def time(self) -> float:
        return time.monotonic()

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> _Handle:
        handle = _Handle(callback, args, context)
        self._ready.append(handle)
        if self._wake is not None:
            self._wakeup()
        return handle

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> _TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> _TimerHandle:
        handle = _TimerHandle(when, callback, args, context)
        heapq.heappush(self._timers, handle)
        self._wakeup()  # the sleeping run() recomputes its deadline
        return handle

    def call_soon_threadsafe(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> _Handle:
        handle = _Handle(callback, args, context)

        def queue() -> None:
            self._ready.append(handle)
            self._wakeup()

        self._inbox.run_sync_soon(queue)
        return handle

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return not self._closed

    def is_closed(self) -> bool:
        return self._closed

    def _timer_handle_cancelled(self, handle: Any) -> None:
        pass

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        log.error("%s", context.get("message", "error in gRPC"), exc_info=exc if exc else None)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)


class _Transport(asyncio.Transport):
    """What grpclib's protocol writes to: a buffer that ``_writer`` sends, the writes of one
    trio scheduling batch in one ``send_all``."""

    def __init__(self, stream: trio.abc.Stream, extra: dict[str, Any]) -> None:
        super().__init__(extra)
        self._stream = stream
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._wake = trio.Event()
        self._closing = False
        self._paused = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._chunks.append(bytes(data))
        self._buffered += len(data)
        self._wake.set()
        if not self._paused and self._buffered > _HIGH_WATER and self.protocol is not None:
            self._paused = True
            self.protocol.pause_writing()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Send what is buffered, then close."""
        self._closing = True
        self._wake.set()

    def abort(self) -> None:
        self._chunks.clear()
        self.close()

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self._buffered

    async def writer(self) -> None:
        """Send until closed; then close the stream (the reader sees it closed)."""
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                if self._chunks:
                    chunks, self._chunks = self._chunks, []
                    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                    await self._stream.send_all(data)
                    self._buffered -= len(data)
                    if self._paused and self._buffered <= _LOW_WATER:
                        self._paused = False
                        if self.protocol is not None:
                            self.protocol.resume_writing()
                    if self._chunks:
                        self._wake.set()
                        continue
                if self._closing:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closing = True
        finally:
            self._chunks.clear()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self._stream.aclose()


class _Plain(trio.abc.Stream):
    """A plain TCP connection's ``SocketStream``, read and written without a scheduling round
    trip per call: the socket is tried first, and trio waits for readiness only when the
    kernel has nothing to give (or no room). trio's own calls yield twice per receive and
    once per send even when the socket is ready. Everything runs on trio's thread, so the
    descriptor cannot close between a check of ``_closed`` and the system call after it."""

    __slots__ = ("_closed", "_streak", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._closed = False
        self._streak = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError
        data, self._streak = await receive_ready(
            self.stream.socket, max_bytes or _RECEIVE_BYTES, self._streak
        )
        return data

    async def fill(self, lane: DataLane) -> bool:
        """Read the rest of ``lane``'s DATA frame straight into its buffer; False if the
        client closed first."""
        while lane.filled < len(lane.view):
            if self._closed:
                raise trio.ClosedResourceError
            got, self._streak = await receive_into_ready(
                self.stream.socket, lane.missing, self._streak
            )
            if not got:
                return False
            lane.filled += got
        return True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError
        await send_ready(self.stream.socket, data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self._closed = True
        await self.stream.aclose()


def _extra(stream: trio.abc.Stream) -> dict[str, Any]:
    """``get_extra_info`` of a connection: socket, peername, sockname, ssl_object."""
    inner: Any = stream
    ssl_object = None
    if isinstance(stream, trio.SSLStream):
        ssl_object = stream  # forwards getpeercert, selected_alpn_protocol, cipher, ...
        inner = stream.transport_stream
    extra: dict[str, Any] = {"ssl_object": ssl_object}
    if isinstance(inner, trio.SocketStream):
        sock = inner.socket
        extra["socket"] = sock
        with contextlib.suppress(OSError):
            extra["peername"] = sock.getpeername()
            extra["sockname"] = sock.getsockname()
    return extra


async def serve_connection(
    loop: HostedLoop, stream: trio.abc.Stream, protocol: asyncio.Protocol
) -> None:
    """Serve one connection with grpclib's ``protocol`` until either side closes it."""
    extra = _extra(stream)
    if isinstance(stream, trio.SocketStream):
        stream = _Plain(stream)
    transport = _Transport(stream, extra)
    transport.protocol = protocol
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.writer)
        try:
            with loop.entered():
                protocol.connection_made(transport)
            # a large DATA frame's body is read straight into its buffer (plain TCP only)
            lanes = getattr(getattr(protocol, "connection", None), "_connection", None)
            if not isinstance(stream, _Plain) or not isinstance(lanes, FrameLanes):
                lanes = None
            while not transport.is_closing():
                data = await stream.receive_some(_RECEIVE_BYTES)
                if not data:
                    break
                with loop.entered():
                    protocol.data_received(bytes(data))
                if lanes is not None and lanes.data_lane is not None:
                    assert isinstance(stream, _Plain)
                    if transport.is_closing() or not await stream.fill(lanes.data_lane):
                        break
                    with loop.entered():
                        protocol.data_received(b"")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            failure = exc
        except Exception as exc:  # a fault in the protocol: this connection ends, as in asyncio
            log.exception("gRPC connection failed")
            failure = exc
        finally:
            transport.close()
            with loop.entered():
                protocol.connection_lost(failure)
