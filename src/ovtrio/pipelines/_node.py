"""What custom C nodes and Python callable nodes share: a worker thread per call, the
cancellation contract, statistics, a close that waits for running calls, and OVMS' messages
for the NODE_LIBRARY_* codes.

Cancellation: ``execute`` returns at once when cancelled. The node's code cannot be interrupted
in its thread, so the call runs to its end; then its result is dropped (for a C library: its
buffers are released without being copied) and ``statistics().abandoned`` counts it. A call
cancelled before a thread was free never runs.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

import trio

from ..errors import NodeLibraryFailed
from ._meta import Array, NodeMeta

__all__ = [
    "MESSAGES",
    "Array",
    "NodeStatistics",
    "ThreadedNode",
    "library_error",
]

Work: TypeAlias = Callable[[Callable[[], bool]], dict[str, Array]]
"""One prepared call: runs in the worker thread, asking ``abandoned()`` once it has a result."""


# OVMS' messages (src/status.cpp) for the NODE_LIBRARY_* codes.
MESSAGES: Final = {
    "NODE_LIBRARY_LOAD_FAILED_OPEN": "Custom node library failed to open",
    "NODE_LIBRARY_LOAD_FAILED_SYM": "Custom node library failed to load symbol",
    "NODE_LIBRARY_INITIALIZE_FAILED": "Failure during custom node library initialization",
    "NODE_LIBRARY_METADATA_FAILED": "Custom node failed on metadata call",
    "NODE_LIBRARY_EXECUTION_FAILED": "Custom node failed during execution",
    "NODE_LIBRARY_OUTPUTS_CORRUPTED": "Custom node library has returned corrupted outputs handle",
    "NODE_LIBRARY_OUTPUTS_CORRUPTED_COUNT": (
        "Custom node library has produced corrupted number of outputs"
    ),
    "NODE_LIBRARY_INVALID_PRECISION": "Custom node has produced tensor with unspecified precision",
    "NODE_LIBRARY_INVALID_SHAPE": "Custom node has produced tensor with not matching shape",
    "NODE_LIBRARY_INVALID_CONTENT_SIZE": "Custom node output has invalid content size",
    "NODE_LIBRARY_OUTPUT_MISSING_NAME": "Custom node output is missing name",
}


def library_error(code: str, detail: str = "") -> NodeLibraryFailed:
    """A NodeLibraryFailed with OVMS' message for ``code``, then `` - detail``."""
    message = MESSAGES[code]
    return NodeLibraryFailed(code, f"{message} - {detail}" if detail else message)


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    executions: int
    """Calls that ran the node's code (to success or failure)."""
    abandoned: int
    """Of those, calls whose caller was cancelled: their result was dropped."""
    running: int
    """Calls running the node's code right now (abandoned ones included)."""


class ThreadedNode(abc.ABC):
    """One node instance (a library initialized with its params, or a Python callable)."""

    def __init__(self, name: str) -> None:
        self.name = name
        """The pipeline node's name, for messages."""
        self._lock = threading.Lock()
        self._closing = False
        self._executions = 0
        self._abandoned = 0
        self._running = 0
        self._shut = threading.Event()

    @abc.abstractmethod
    def metadata(self) -> NodeMeta:
        """Declared inputs and outputs (blocking for a C library)."""

    @abc.abstractmethod
    def _prepare(self, inputs: Mapping[str, Array]) -> Work:
        """Check and convert ``inputs`` in the caller's thread; the returned work runs the node."""

    @abc.abstractmethod
    def _shutdown(self) -> None:
        """Release what the node holds; called once, when closed and no call runs."""

    def execute_sync(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        """Run the node in the calling thread. ``inputs`` are checked against its metadata.

        Raises:
            InvalidArgument: an input is missing or does not fit the declared metadata.
            RuntimeError: the node is closed.
        """
        return self._run(self._prepare(inputs), threading.Event())

    async def execute(
        self, inputs: Mapping[str, Array], *, limiter: trio.CapacityLimiter
    ) -> dict[str, Array]:
        """``execute_sync`` in a worker thread taken under ``limiter``; see the module on
        cancellation."""
        work = self._prepare(inputs)
        abandoned = threading.Event()
        try:
            return await trio.to_thread.run_sync(
                self._run, work, abandoned, abandon_on_cancel=True, limiter=limiter
            )
        except trio.Cancelled:
            abandoned.set()
            raise

    def statistics(self) -> NodeStatistics:
        with self._lock:
            return NodeStatistics(self._executions, self._abandoned, self._running)

    @property
    def shut_down(self) -> bool:
        """Closed and released: no call runs and none can start."""
        return self._shut.is_set()

    def wait_shut_down(self, timeout: float) -> bool:
        """Block until ``shut_down`` (up to ``timeout`` seconds); returns it."""
        return self._shut.wait(max(timeout, 0))

    def close(self) -> None:
        """Release the node now, or when its last running call returns. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            now = self._running == 0
        if now:
            self._release_node()

    def _release_node(self) -> None:
        try:
            self._shutdown()
        finally:
            self._shut.set()

    def __enter__(self) -> ThreadedNode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError(f"node {self.name!r} is closed")

    def _run(self, work: Work, abandoned: threading.Event) -> dict[str, Array]:
        with self._lock:
            if abandoned.is_set():
                return {}  # cancelled before a thread was free
            self._check_open()
            self._running += 1
        try:
            return work(abandoned.is_set)
        finally:
            with self._lock:
                self._running -= 1
                self._executions += 1
                self._abandoned += abandoned.is_set()
                last = self._closing and self._running == 0
            if last:
                self._release_node()
