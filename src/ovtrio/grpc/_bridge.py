"""grpclib's thread and the bridge from its asyncio loop into trio.

grpclib runs on its own thread with a uvloop event loop. That thread is a child of a trio
task (``serve``), which the server's root nursery supervises. Every RPC crosses into trio
through ``TrioBridge.call``: the handler body runs as a trio task in the gRPC nursery, and a
client cancel (RST_STREAM) or deadline, which grpclib delivers as ``asyncio.CancelledError``,
cancels that task's scope, so trio code sees ``trio.Cancelled``.

One grpclib server per bind address (all on the same port and handlers), so an address that
cannot be bound is named in the error.

Shutdown: ``stop()`` stops listening at once; in-flight RPCs finish (the caller bounds that
with its grace deadline); then every connection gets GOAWAY and is closed
(``_server.Server.close_connections``).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import trio
import uvloop
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from .._inbox import TrioInbox
from ._servable import RpcTable, Servable
from ._server import DEFAULT_MAX_STREAMS, Server

__all__ = ["GrpcEndpoint", "TrioBridge", "serve"]

T = TypeVar("T")


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


@dataclass(slots=True)
class GrpcEndpoint:
    """What ``serve`` reports through ``task_status.started``."""

    hosts: tuple[str, ...]
    port: int
    stop: Callable[[], None]
    """Stop accepting new connections (in-flight RPCs continue)."""
    active: Callable[[], int]
    """RPCs being handled now (any route)."""


async def serve(
    table: RpcTable,
    hosts: Sequence[str],
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    api_keys: tuple[str, ...] = (),
    max_message_bytes: int = 1 << 30,
    max_connections: int = 0,
    max_streams: int = DEFAULT_MAX_STREAMS,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[GrpcEndpoint] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``table`` on port ``port`` of every address of ``hosts`` until cancelled; then
    drain and close. Raises ``OSError`` naming the first address that cannot be bound.

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
        servable = Servable(
            table, lambda: bridge, api_keys=api_keys, max_message_bytes=max_message_bytes
        )

        async def amain() -> None:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            servers = _Servers([servable], max_connections=max_connections, max_streams=max_streams)
            state["loop"], state["stop"], state["servers"] = loop, stop, servers
            try:
                await servers.start(hosts, port, ssl_context, reuse_port=reuse_port)
            except OSError as exc:
                failure.append(exc)
                token.run_sync_soon(started.set)
                return
            token.run_sync_soon(started.set)
            await stop.wait()
            servers.stop_listening()
            while servers.in_flight():  # noqa: ASYNC110 - grpclib offers no event for this
                await asyncio.sleep(0.01)
            await servers.close_connections()

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
            raise failure[0]

        def stop_listening() -> None:
            state["loop"].call_soon_threadsafe(state["servers"].stop_listening)

        task_status.started(
            GrpcEndpoint(tuple(hosts), port, stop_listening, lambda: servable.active)
        )
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


class _Servers:
    """The grpclib servers of one port, one per address, with one count of connections."""

    def __init__(self, handlers: list[Any], *, max_connections: int, max_streams: int) -> None:
        self._handlers = handlers
        self._limits: dict[str, Any] = {
            "max_connections": max_connections,
            "max_streams": max_streams,
            "live": set(),
        }
        self._servers: list[Server] = []

    async def start(
        self,
        hosts: Sequence[str],
        port: int,
        ssl_context: ssl.SSLContext | None,
        *,
        reuse_port: bool = False,
    ) -> None:
        """Listen on ``port`` of every address (``reuse_port``: shared with other processes
        serving it); an OSError names the address that cannot be bound (one line, as OVMS logs
        it), the others are closed again."""
        for host in hosts:
            server = Server(self._handlers, **self._limits)
            try:
                await server.start(
                    host, port, reuse_address=True, reuse_port=reuse_port, ssl=ssl_context
                )
            except OSError as exc:
                self.stop_listening()
                await self.close_connections()
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                raise OSError(f"Failed to start gRPC server at {address}: {reason}") from None
            self._servers.append(server)

    def stop_listening(self) -> None:
        for server in self._servers:
            server.stop_listening()

    def in_flight(self) -> int:
        return sum(server.in_flight() for server in self._servers)

    async def close_connections(self) -> None:
        await asyncio.gather(*(server.close_connections() for server in self._servers))
