"""gRPC on trio's thread: listening, grpclib's protocol per connection, a trio task per call.

grpclib's HTTP/2 protocol runs on a ``HostedLoop`` (an asyncio loop run by a trio task,
``_hosted``), so the protocol, the calls, the codecs, the data plane and the batchers share
trio's thread. Each call is a trio task in the RPC nursery (``_unary``); a client cancel
(RST_STREAM) or deadline cancels that task's scope, so the data plane sees ``trio.Cancelled``.

Listening: one socket per address of each bind host, all on the same port and handlers, so
an address that cannot be bound is named in the error; ``--max_connections`` counts the
connections of every address.

Shutdown: ``stop()`` stops listening at once; in-flight RPCs finish (the caller bounds that
with its grace deadline); then every connection gets GOAWAY and is closed
(``_server.Server.close_connections``).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ._hosted import HostedLoop, serve_connection
from ._server import DEFAULT_MAX_STREAMS, Server
from ._unary import Calls, RpcTable

__all__ = ["GrpcEndpoint", "serve"]

log = logging.getLogger(__name__)

_BACKLOG = 1024


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

    Cancellation: cancelling this task cancels the RPCs' trio tasks (their clients get
    UNAVAILABLE), stops listening, sends what the RPCs answered, then GOAWAY, and closes
    every connection (``_close``). The loop and the connections run in a shielded nursery
    until then, so that the answers of the cancelled RPCs still reach their clients.
    """
    listeners = _listen(hosts, port, ssl_context, reuse_port=reuse_port)
    loop = HostedLoop()  # type: ignore[abstract]  # asyncio's I/O methods: not grpclib's
    accepting = trio.CancelScope()
    server: Server | None = None
    try:
        async with trio.open_nursery() as top:
            machinery: trio.Nursery = await top.start(_shielded_nursery)
            try:
                await machinery.start(loop.run)
                async with trio.open_nursery() as rpc_nursery:
                    calls = Calls(
                        table,
                        rpc_nursery,
                        loop,
                        api_keys=api_keys,
                        max_message_bytes=max_message_bytes,
                    )
                    server = Server(calls, max_connections=max_connections, max_streams=max_streams)
                    machinery.start_soon(_accept_all, accepting, listeners, loop, server, machinery)
                    task_status.started(
                        GrpcEndpoint(tuple(hosts), port, accepting.cancel, lambda: calls.active)
                    )
                    await trio.sleep_forever()
            finally:
                accepting.cancel()
                if server is not None:
                    with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_S):
                        await _close(server)
                machinery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for listener in listeners:  # closed already, unless the start failed early
                await listener.aclose()


_CLOSE_S = 5.0
"""Longest wait, once cancelled, for RPCs to answer and connections to close."""


async def _shielded_nursery(task_status: trio.TaskStatus[trio.Nursery]) -> None:
    """A nursery whose tasks the caller's cancellation does not reach (its own scope does)."""
    with trio.CancelScope(shield=True):
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()  # until the nursery's own scope is cancelled


async def _close(server: Server) -> None:
    """GOAWAY and close every connection (the calls have ended: the RPC nursery is done), and
    wait until their writers have sent what the calls answered and closed them."""
    server.close_connections()
    while server.open_connections():  # noqa: ASYNC110 - each ends in its own task
        await trio.sleep(0.005)


async def _accept_all(
    scope: trio.CancelScope,
    listeners: Sequence[trio.abc.Listener[Any]],
    loop: HostedLoop,
    server: Server,
    connections: trio.Nursery,
) -> None:
    """Accept on every listener until ``scope`` is cancelled; then close the listeners."""
    with scope:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept, listener, loop, server, connections)
    for listener in listeners:
        await listener.aclose()


async def _accept(
    listener: trio.abc.Listener[Any],
    loop: HostedLoop,
    server: Server,
    connections: trio.Nursery,
) -> None:
    """Accept connections until cancelled; each is served by a task in ``connections``."""
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:  # EMFILE and the like: keep listening
            log.warning("gRPC accept failed: %s", exc)
            await trio.sleep(0.1)
            continue
        with loop.entered():
            protocol = server._protocol_factory()
        connections.start_soon(serve_connection, loop, stream, protocol)


def _listen(
    hosts: Sequence[str], port: int, ssl_context: ssl.SSLContext | None, *, reuse_port: bool
) -> list[trio.abc.Listener[Any]]:
    """A listener per address of each host; an OSError names the address that cannot be
    bound (one line, as OVMS logs it), the sockets bound before it are closed."""
    sockets: list[socket.socket] = []
    try:
        for host in hosts:
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                infos = socket.getaddrinfo(
                    host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
                for family, kind, proto, _, addr in dict.fromkeys(infos):
                    sock = socket.socket(family, kind, proto)
                    sockets.append(sock)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if reuse_port:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if family == socket.AF_INET6:  # "::" and "0.0.0.0" may share the port
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind(addr)
                    sock.listen(_BACKLOG)
                    sock.setblocking(False)
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise OSError(f"Failed to start gRPC server at {address}: {reason}") from None
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    listeners: list[trio.abc.Listener[Any]] = []
    for sock in sockets:
        listener: trio.abc.Listener[Any] = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        if ssl_context is not None:
            listener = trio.SSLListener(listener, ssl_context)
        listeners.append(listener)
    return listeners
