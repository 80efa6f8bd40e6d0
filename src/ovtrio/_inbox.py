"""Calls from other threads into the trio run, one wake-up per burst. No I/O of its own."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["TrioInbox"]


class TrioInbox:
    """``run_sync_soon`` for threads that call into one trio run often.

    ``TrioToken.run_sync_soon`` writes to trio's wake-up socket on every call: a system call
    that releases the GIL, so on a busy two-core machine nearly every call from an OpenVINO
    callback (or another thread) also hands the GIL over and back. Calls queued here while
    a drain is already on its way ride along with it: under load one wake-up carries many.

    Ordering: calls run in the order they were queued. Thread safety relies on the GIL
    (``deque.append``/``popleft`` are atomic); the flag may let two drains be scheduled,
    never none: ``_drain`` clears it before it looks at the queue.
    """

    __slots__ = ("_queue", "_scheduled", "token")

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self.token = token
        self._queue: collections.deque[tuple[Callable[..., object], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._scheduled = False

    def run_sync_soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` in the trio thread soon; any thread. Raises
        ``trio.RunFinishedError`` once the run is over."""
        self._queue.append((fn, args))
        if not self._scheduled:
            self._scheduled = True
            try:
                self.token.run_sync_soon(self._drain)
            except BaseException:
                self._scheduled = False
                raise

    def _drain(self) -> None:
        self._scheduled = False
        queue = self._queue
        while queue:
            fn, args = queue.popleft()
            fn(*args)
