"""How a model version's requests reach its runtime: the ``Scheduler`` interface.

A version is served by one scheduler, chosen at load (``ModelVersion.serve``): the dynamic
batcher (``batching.Batcher``) when batching applies and pays, else ``DirectScheduler``, which
sends each request straight to the runtime's pool of infer requests. Both refuse a request at
once when ``max_queue_size`` requests already wait (``QueueLimit``), and both tell the runtime
how many rows each output must have when the outputs are batch-first (``request_rows``).

``Runtime`` is what a scheduler needs of a compiled model; ``runtime.CompiledModel``
implements it, and the batcher's tests use a fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import trio

from .errors import ResourceExhausted
from .tensors import TensorSpec

if TYPE_CHECKING:
    from .batching import BatcherStatistics

__all__ = ["DirectScheduler", "QueueLimit", "Runtime", "Scheduler", "request_rows"]

Arrays = Sequence[np.ndarray[Any, Any]]


class Runtime(Protocol):
    """A compiled model version as a scheduler sees it."""

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def batch_index(self) -> tuple[int | None, ...]:
        """Each input's batch axis (None: the input has none)."""
        ...

    @property
    def nireq(self) -> int:
        """Infer requests in the pool: the most inferences running or queued at once."""
        ...

    @property
    def optimal(self) -> int:
        """Inferences in flight that keep every stream of the device computing."""
        ...

    @property
    def waiting(self) -> int:
        """Callers waiting for a free infer request."""
        ...

    async def infer(
        self, arrays: Arrays, expect_rows: int | None = None
    ) -> list[np.ndarray[Any, Any]]:
        """One inference of ``arrays`` (in input order); outputs in output order. With
        ``expect_rows``, an answer whose outputs do not have that many rows is an error."""
        ...


class Scheduler(Protocol):
    """Runs a model version's requests on its runtime."""

    @property
    def max_batch(self) -> int | None:
        """The largest batch (in rows) it forms; None when it does not batch."""
        ...

    @property
    def allowed(self) -> tuple[int, ...]:
        """Batch sizes it forms (empty when it does not batch)."""
        ...

    @property
    def queue_length(self) -> int:
        """Requests waiting for their inference to start."""
        ...

    @property
    def rejected(self) -> int:
        """Requests refused because the queue was full."""
        ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The scheduler's task, run in the version's nursery while it serves."""
        ...

    async def submit(self, arrays: Arrays) -> list[np.ndarray[Any, Any]]:
        """One request's inference. Raises ResourceExhausted when the queue is full."""
        ...

    def unequal_batch_sizes(self, arrays: Arrays) -> dict[str, int] | None:
        """Input name -> batch size when they differ and this scheduler needs them equal (it
        concatenates requests along the batch axis), else None."""
        ...

    def statistics(self) -> BatcherStatistics | None:
        """The batcher's own numbers (None for a scheduler that does not batch)."""
        ...


class QueueLimit:
    """``max_queue_size``: a request that finds this many waiting is refused at once."""

    __slots__ = ("limit", "model", "rejected")

    def __init__(self, model: str, limit: int) -> None:
        self.model = model
        self.limit = limit
        self.rejected = 0

    def admit(self, queued: int) -> None:
        """Raise ResourceExhausted (gRPC RESOURCE_EXHAUSTED / HTTP 503) if ``queued`` is at
        the limit."""
        if queued >= self.limit:
            self.rejected += 1
            raise ResourceExhausted(
                f"Model {self.model} is overloaded: its queue of {self.limit} requests is "
                "full; retry later"
            )


def request_rows(arrays: Arrays, axes: Sequence[int | None]) -> int | None:
    """The request's batch size when every input with a batch axis agrees on it, else None.

    Passed to ``Runtime.infer`` as ``expect_rows`` when the outputs are batch-first: OpenVINO
    2026.4 (CPU) can answer in the shape of an earlier cancelled inference (runtime module
    doc), and such an answer must not reach the caller."""
    sizes = {int(a.shape[ax]) for a, ax in zip(arrays, axes, strict=True) if ax is not None}
    return sizes.pop() if len(sizes) == 1 else None


class DirectScheduler:
    """No batching: each request waits for a free infer request of the runtime's pool.

    Args:
        model: the model's name (for the queue-full message).
        runtime: the compiled version.
        max_queue_size: most callers waiting for an infer request.
        check_rows: the outputs are batch-first (a batchable model served without batching):
            answers are checked to have as many rows as the inputs.
    """

    max_batch = None
    allowed: tuple[int, ...] = ()

    def __init__(self, model: str, runtime: Runtime, max_queue_size: int, check_rows: bool) -> None:
        self.runtime = runtime
        self._limit = QueueLimit(model, max_queue_size)
        self._check_rows = check_rows

    @property
    def queue_length(self) -> int:
        return self.runtime.waiting

    @property
    def rejected(self) -> int:
        return self._limit.rejected

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def submit(self, arrays: Arrays) -> list[np.ndarray[Any, Any]]:
        runtime = self.runtime
        self._limit.admit(runtime.waiting)
        rows = request_rows(arrays, runtime.batch_index) if self._check_rows else None
        return await runtime.infer(arrays, expect_rows=rows)

    def unequal_batch_sizes(self, arrays: Arrays) -> dict[str, int] | None:
        return None

    def statistics(self) -> BatcherStatistics | None:
        return None
