"""Cancelling a dynamic-shape inference safely on OpenVINO 2026.4's CPU plugin.

The upstream bug: the CPU plugin keeps per-node shape state in the stream's graph. An
inference cancelled half way (``InferRequest.cancel()``) leaves nodes whose output memory has
the cancelled shape while they remember the shape of the inference before it, and the next
inference *with that earlier shape* on the same stream is answered in the cancelled shape,
holding the cancelled inference's rows (another client's data in a server). Static input
shapes have no shape state and are not affected.

How to check it: ``python scripts/ov_cancel_bug.py`` (standalone, no ovtrio) reports how many
answers came back in the cancelled shape; tests/test_runtime_cancel.py checks this module's
answers against a model that is never cancelled. Once the script reports none on the
supported OpenVINO versions, delete this module: ``CompiledModel._stop`` then always cancels
(``CompiledModel._cancel``), and ``ShapeMemory`` goes with it.

What this module does instead of a plain cancel:

* dynamic input shapes on one stream with no other inference in flight: the pool is held,
  the inference cancelled, and a small *repair* inference (one to three rows of the cancelled
  input, in a shape different from both the cancelled and the last completed one) re-aligns
  every node before any other inference may start; also on a fresh graph, where a later
  inference of the cancelled shape could come back in the shape run after it. None when the
  cancelled shapes equal the last completed ones (every node already holds them);
* otherwise (several streams, other inferences queued behind it, or an unknown last shape):
  the inference is abandoned (left to finish, its result discarded), because nothing can steer
  a repair to the right stream in time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InferenceFailed

if TYPE_CHECKING:
    from ._pool import CompiledModel, _Call, _Lease

__all__ = ["ShapeMemory", "stop_dynamic"]

log = logging.getLogger(__name__)

Shapes = tuple[tuple[int, ...], ...]

FRESH: Shapes = ()
"""The last shapes of a graph that has run no inference yet."""


class ShapeMemory:
    """Input shapes of the last inference that completed on a compiled model: ``FRESH``
    before the first one (a fresh graph re-infers every shape), None when unknown (after a
    failure)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: Shapes | None = FRESH

    def completed(self, arrays: Sequence[np.ndarray[Any, Any]]) -> None:
        self.last = tuple(a.shape for a in arrays)

    def lost(self) -> None:
        self.last = None


def repair_inputs(
    arrays: Sequence[np.ndarray[Any, Any]],
    last: Shapes | None,
    batch_index: Sequence[int | None],
) -> list[np.ndarray[Any, Any]] | None:
    """Inputs of the repair inference after cancelling one on ``arrays``: 1-3 rows of
    them, in shapes that are neither the cancelled one nor the last completed one; ``[]``
    when none is needed (the cancelled shapes equal the last completed ones, which stay
    the last ones); None when cancelling is not safe (last shapes unknown, an empty batch to
    take rows from, no batch axis to vary).

    Also on a fresh graph: a cancel there without a repair answered a later inference of
    the cancelled shape in the shape of the inference run after it (106 of 4,345 tries under
    CPU load; 0 of 3,902 with the repair)."""
    if last is None:
        return None
    shapes = tuple(a.shape for a in arrays)
    if shapes == last:
        return []
    avoid = {shapes} if last is FRESH else {shapes, last}
    for rows in (1, 2, 3):
        repair = []
        for a, ax in zip(arrays, batch_index, strict=True):
            if ax is None or a.ndim == 0:
                repair.append(a)
            elif a.shape[ax] == 0:
                return None
            else:  # rows of the request, repeated when it has fewer
                repair.append(np.take(a, [i % a.shape[ax] for i in range(rows)], ax))
        if tuple(r.shape for r in repair) not in avoid:
            return repair
    return None  # no batch axis to vary: let it run to its end


async def stop_dynamic(
    pool: CompiledModel, lease: _Lease, call: _Call, arrays: Sequence[np.ndarray[Any, Any]]
) -> None:
    """The caller of a running dynamic-shape inference left: cancel it and repair the
    stream's shape state, or abandon it (module doc). Runs shielded; returns once the
    request in ``lease`` may serve the next caller."""
    alone = pool.streams_one and pool.busy == 1
    repair = repair_inputs(arrays, pool.shapes.last, pool.batch_index) if alone else None
    if repair is None:
        pool.abandoned += 1
        await pool.wait_done(lease, call)
        if call.error is not None:
            pool.shapes.lost()
            pool.renew(lease)
        else:
            pool.shapes.completed(arrays)
            pool.completed += 1
        return
    # Exclusive: no other inference may start on the stream before the repair has run.
    with pool.exclusive():
        await pool.cancel(lease)
        if repair:
            pool.repairs += 1
            try:
                await pool.run_uncounted(lease, repair)
            except InferenceFailed:
                log.warning("the repair inference after a cancel failed", exc_info=True)
