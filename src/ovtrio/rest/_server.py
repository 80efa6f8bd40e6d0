"""The REST server: hypercorn's trio worker, composed by ovtrio.

``serve`` is hypercorn's ``worker_serve`` (the lifespan, the listeners, graceful shutdown)
with ovtrio's own connection handler in the ``trio.serve_listeners`` loop, on ovtrio's own
listening sockets: one per address of ``config.bind``, and an address that cannot be bound
is named in the error. The handler
enforces ``--max_connections`` (a connection beyond the limit is closed at once; hypercorn
has no such setting), gives each connection one idle timer (``_patches.hypercorn.IdleTimer``)
and contains a connection's ordinary exceptions: one broken connection ends only that
connection instead of the nursery of ``serve_listeners`` and with it the server (cancellation
and any other ``BaseException`` still propagate).

The patches this server relies on (the body lane, the send-lock close, the disconnect hook,
one write per answer) are installed by ``ovtrio._patches.install`` at start.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr, wrap_app

from .._patches.h11 import set_max_body_bytes
from .._patches.hypercorn import DISCONNECT_HOOK, DisconnectHook, IdleTimer

__all__ = ["DISCONNECT_HOOK", "DisconnectHook", "serve"]

log = logging.getLogger("hypercorn.error")


@dataclass(slots=True)
class _Connections:
    limit: int
    """0: no limit."""
    open: int = 0


async def _handle_connection(
    app: Any,
    config: Config,
    context: WorkerContext,
    state: Any,
    connections: _Connections,
    stream: Any,
) -> None:
    """Serve one accepted connection with hypercorn's ``TCPServer``, within the limit."""
    if connections.limit and connections.open >= connections.limit:
        log.warning(
            "connection refused: %d connections are open (--max_connections)", connections.open
        )
        await stream.aclose()
        return
    connections.open += 1
    try:
        server = TCPServer(app, config, context, state, stream)
        server.idle_task = IdleTimer(server)  # type: ignore[assignment]
        await server.run()
    except Exception as exc:  # contained: one connection's failure ends only that connection
        log.debug("connection ended by an error: %r", exc)
    finally:
        connections.open -= 1


async def serve(
    app: Any,
    config: Config,
    *,
    max_connections: int = 0,
    max_body_bytes: int = 1 << 30,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI ``app`` as ``config`` says until ``shutdown_trigger`` returns.

    ``max_connections`` 0 means no limit; ``max_body_bytes`` bounds the bodies read into one
    buffer (larger ones are the app's to refuse). Reports the bound URLs through
    ``task_status``; raises ``OSError`` if a socket cannot be bound.
    """
    set_max_body_bytes(config, max_body_bytes)
    config.set_statsd_logger_class(StatsdLogger)
    app = wrap_app(app, config.wsgi_max_body_size, None)
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    connections = _Connections(max_connections)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()

        async with trio.open_nursery() as server_nursery:
            listeners, binds = await _listen(config)
            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    handler = partial(
                        _handle_connection,
                        app,
                        config,
                        context,
                        ConnectionState(lifespan_state.copy()),
                        connections,
                    )
                    nursery.start_soon(
                        partial(
                            trio.serve_listeners, handler, listeners, handler_nursery=server_nursery
                        )
                    )
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors from None
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout

        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


async def _listen(config: Config) -> tuple[list[trio.abc.Listener[Any]], list[str]]:
    """The listeners for ``config.bind`` (TLS when ``config`` has a certificate), and their URLs.

    Raises ``OSError`` naming the address that cannot be bound (the sockets bound before it
    are closed)."""
    sockets: list[socket.socket] = []
    try:
        for bind in config.bind:
            sockets.append(
                _bound_socket(
                    bind,
                    config.backlog,
                    several=len(config.bind) > 1,
                    reuse_port=config.workers > 1,
                )
            )
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    ssl_context = config.create_ssl_context() if config.ssl_enabled else None
    scheme = "https" if ssl_context is not None else "http"
    listeners: list[trio.abc.Listener[Any]] = []
    binds = []
    for sock in sockets:
        listener: trio.abc.Listener[Any] = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        if ssl_context is not None:
            listener = trio.SSLListener(listener, ssl_context, https_compatible=True)
        listeners.append(listener)
        bind = repr_socket_addr(sock.family, sock.getsockname())
        binds.append(f"{scheme}://{bind}")
        await config.log.info(f"Running on {scheme}://{bind} (CTRL + C to quit)")
    return listeners, binds


def _bound_socket(bind: str, backlog: int, *, several: bool, reuse_port: bool) -> socket.socket:
    """A listening TCP socket for ``bind`` (``host:port``, ``[v6]:port``), set up as hypercorn
    sets up its own. With ``several`` binds an IPv6 socket takes IPv6 only, so that ``::``
    and ``0.0.0.0`` can share a port (one IPv6 wildcard alone keeps the system's dual stack).
    ``reuse_port``: other processes of the server serve the same port (``SO_REUSEPORT``), as
    hypercorn does when its config has several workers."""
    host, _, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and several:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, int(port)))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(f"Failed to start REST server at {bind}: {exc.strerror or exc}") from None
    return sock
