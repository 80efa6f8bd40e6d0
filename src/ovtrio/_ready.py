"""Reading and writing a plain socket without trio's scheduling round trip when it is ready.

trio's socket streams yield to the scheduler on every ``receive_some`` and ``send_all``, even
when the kernel has data waiting or room for it; these calls try the socket first and wait
only when it is not ready. Reads: both transports' connections (gRPC: ``grpc._hosted``; REST:
``_patches.h11``) and the worker processes' message sockets (``workers._protocol``); writes:
gRPC connections and the worker message sockets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TypeVar

import trio

_T = TypeVar("_T")

__all__ = ["receive_into_ready", "receive_ready", "send_ready", "write_now"]

_STREAK = 16
"""Reads in a row that did not wait, after which the reader lets the other tasks run."""


async def receive_ready(
    sock: trio.socket.SocketType, max_bytes: int, streak: int, wait_s: float = math.inf
) -> tuple[bytes, int]:
    """At most ``max_bytes`` from ``sock`` (b"" at its end), as a trio stream's
    ``receive_some`` reads them, waiting at most ``wait_s`` for data (``trio.TooSlowError``).

    ``streak`` counts the reads that did not wait; pass back the count returned. Every
    ``_STREAK``-th read in a row lets the other tasks run, as a read that waits would. Raises
    ``trio.ClosedResourceError`` once the socket is closed and ``trio.BrokenResourceError`` for
    an error of the connection (reset by the peer, ...), as trio's streams do."""
    return await _read_ready(sock, lambda fd: os.read(fd, max_bytes), streak, wait_s)


async def receive_into_ready(
    sock: trio.socket.SocketType, view: memoryview, streak: int
) -> tuple[int, int]:
    """``receive_ready`` into ``view``: (bytes read, 0 at the socket's end; the new streak)."""
    return await _read_ready(sock, lambda fd: os.readv(fd, [view]), streak)


async def _read_ready(
    sock: trio.socket.SocketType, read: Callable[[int], _T], streak: int, wait_s: float = math.inf
) -> tuple[_T, int]:
    """``read(fd)`` of ``sock``'s descriptor, waiting (at most ``wait_s``) only while it has
    nothing to give; ``receive_ready``'s errors and streak."""
    while True:
        fd = sock.fileno()
        if fd == -1:
            raise trio.ClosedResourceError
        try:
            got = read(fd)
        except BlockingIOError:
            if wait_s == math.inf:
                await trio.lowlevel.wait_readable(sock)
            else:
                with trio.fail_after(wait_s):
                    await trio.lowlevel.wait_readable(sock)
            streak = 0
            continue
        except OSError as exc:
            raise trio.BrokenResourceError(exc) from exc
        streak += 1
        if streak >= _STREAK:
            streak = 0
            await trio.lowlevel.checkpoint()
        return got, streak


async def send_ready(sock: trio.socket.SocketType, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to ``sock``, waiting only while the kernel has no room. Raises
    ``trio.ClosedResourceError`` once the socket is closed and ``trio.BrokenResourceError``
    when the peer is gone (EPIPE, ECONNRESET), as trio's streams do."""
    view = memoryview(data)
    while view:
        view = write_now(sock, view)
        if view:  # the kernel's buffer is full
            await trio.lowlevel.wait_writable(sock)


def write_now(sock: trio.socket.SocketType, data: bytes | bytearray | memoryview) -> memoryview:
    """What of ``data`` ``sock`` did not take without waiting (one write; ``send_ready``'s
    errors)."""
    view = memoryview(data)
    fd = sock.fileno()
    if fd == -1:
        raise trio.ClosedResourceError
    try:
        return view[os.write(fd, view) :]
    except BlockingIOError:
        return view
    except OSError as exc:
        raise trio.BrokenResourceError(exc) from exc
