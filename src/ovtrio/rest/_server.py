"""The REST server: hypercorn's trio worker, composed by ovtrio.

``serve`` is hypercorn's ``worker_serve`` (the lifespan, the listeners, graceful shutdown)
with ovtrio's own connection handler in the ``trio.serve_listeners`` loop. The handler
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
    """The listeners for ``config.bind`` (TLS when ``config`` has a certificate), and their URLs."""
    sockets = config.create_sockets()
    ssl_context = config.create_ssl_context()
    listeners: list[trio.abc.Listener[Any]] = []
    binds = []
    for sock in sockets.secure_sockets:
        assert ssl_context is not None  # hypercorn makes secure sockets only with a certificate
        sock.listen(config.backlog)
        listeners.append(
            trio.SSLListener(
                trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
                ssl_context,
                https_compatible=True,
            )
        )
        bind = repr_socket_addr(sock.family, sock.getsockname())
        binds.append(f"https://{bind}")
        await config.log.info(f"Running on https://{bind} (CTRL + C to quit)")
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        bind = repr_socket_addr(sock.family, sock.getsockname())
        binds.append(f"http://{bind}")
        await config.log.info(f"Running on http://{bind} (CTRL + C to quit)")
    return listeners, binds
