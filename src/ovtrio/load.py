"""How many requests the server holds: the fact behind "the sole request runs inline".

Transports register a count of the requests they hold (``add_transport``); the data plane
enters every inference request (``serving``); the runtime asks ``sole_request`` before it
lets a fast inference block the event loop (``runtime.INLINE_BELOW_NS``).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["Load"]


class Load:
    """The requests in the server, for one server (one trio run)."""

    __slots__ = ("_requests", "_transports")

    def __init__(self) -> None:
        self._transports: list[Callable[[], int]] = []
        self._requests: set[trio.lowlevel.Task] = set()

    def add_transport(self, count: Callable[[], int]) -> None:
        """Register a transport's count of the requests it holds (received, not yet
        answered; any route)."""
        self._transports.append(count)

    @property
    def inferences(self) -> int:
        """Inference requests in the data plane."""
        return len(self._requests)

    def serving(self) -> _Serving:
        """Count the calling task's inference request while the block runs."""
        return _Serving(self._requests)

    def sole_request(self) -> bool:
        """Whether the calling task serves an inference request and it is the only request
        in the server, from its arrival at a transport to its answer. Not for other tasks (a
        batcher's, a warm-up): they never count as the sole request. Without transports
        registered (in-process use), the data plane's inference requests count."""
        if trio.lowlevel.current_task() not in self._requests:
            return False
        if not self._transports:
            return len(self._requests) <= 1
        return sum(count() for count in self._transports) <= 1


class _Serving:
    """``Load.serving``: a class, not a generator, as every inference enters it."""

    __slots__ = ("_requests", "_task")

    def __init__(self, requests: set[trio.lowlevel.Task]) -> None:
        self._requests = requests
        self._task: trio.lowlevel.Task | None = None

    def __enter__(self) -> None:
        task = self._task = trio.lowlevel.current_task()
        self._requests.add(task)

    def __exit__(self, *exc: object) -> None:
        self._requests.discard(self._task)
