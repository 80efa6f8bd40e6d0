"""Dynamic batching: one batcher task per model version coalesces concurrent requests.

Flow: ``submit`` appends a pending entry to the version's bounded queue and waits. The batcher
task waits until an OpenVINO infer request is free, then (optionally after waiting up to
``max_delay_us`` for more work) takes the oldest entry and every queued entry whose non-batch
dimensions match, up to the largest *allowed* batch size, concatenates them along the batch
axis, runs one inference in a child task and splits the outputs back to each caller.

Allowed batch sizes are powers of two up to ``max_batch_size``; each is warmed up (and timed)
at load, so no request pays OpenVINO's first-inference cost for a new batch size. In mode
``auto`` a size whose per-sample time is not at least 10 % better than the next smaller
allowed size's is dropped: on a compute-bound model batching turns itself off instead of
costing throughput. Mode ``on`` keeps every size.

Cancellation:
* a caller cancelled while queued leaves the queue (never computed);
* a caller cancelled while its batch runs has its share dropped; if every caller of the batch
  is gone, the batch's task is cancelled, which cancels the OpenVINO request;
* ``submit`` never swallows ``trio.Cancelled``.

Back-pressure: when ``max_queue_size`` entries wait, ``submit`` raises ResourceExhausted at
once (gRPC RESOURCE_EXHAUSTED / HTTP 503).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import trio

from .scheduler import QueueLimit, Runtime

if TYPE_CHECKING:
    from .config import BatchingConfig

__all__ = ["Batcher", "BatcherStatistics", "why_not_batchable"]

log = logging.getLogger(__name__)

PIPELINE_FROM_S = 1e-3
"""Batch-1 inferences at least this long keep the whole pool running even when batched (see
``Batcher._limit_running``): above the ~0.3-1 ms a completion takes to reach the next
start through Python, a stream's idle time costs more than a bigger next batch gains."""


@dataclass(frozen=True, slots=True)
class BatcherStatistics:
    queue_length: int
    max_queue_size: int
    allowed_batch_sizes: tuple[int, ...]
    batches: int
    requests: int
    batch_size_histogram: dict[int, int]
    cancelled_queued: int
    cancelled_running: int
    rejected: int
    inference_time_s: float
    """Total wall time of the batches' inferences."""
    running: tuple[int, ...]
    """Sizes (requests) of the batches OpenVINO is computing now."""


@dataclass(slots=True, eq=False)
class _Pending:
    arrays: Sequence[np.ndarray[Any, Any]]
    size: int
    key: tuple[Any, ...]
    event: trio.Event = field(default_factory=trio.Event)
    outputs: list[np.ndarray[Any, Any]] | None = None
    error: BaseException | None = None
    cancelled: bool = False
    batch: _Batch | None = None


@dataclass(slots=True, eq=False)
class _Batch:
    members: list[_Pending]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class Batcher:
    """Coalesces requests to one compiled model version (a ``scheduler.Scheduler``). Build it
    with ``for_model``."""

    def __init__(self, name: str, compiled: Runtime, cfg: BatchingConfig) -> None:
        self.name = name
        self.compiled = compiled
        self.cfg = cfg
        self.axes = tuple(i if i is not None else 0 for i in compiled.batch_index)
        self.max_batch = cfg.max_batch_size
        for spec, ax in zip(compiled.inputs, self.axes, strict=True):
            hi = spec.ranges[ax][1]
            if hi > 0:
                self.max_batch = min(self.max_batch, hi)
        self.allowed: tuple[int, ...] = (1,)
        self._queue: deque[_Pending] = deque()
        self._has_work = trio.Event()
        self._free = trio.Semaphore(compiled.nireq)
        self.max_running = compiled.nireq
        """Most batches computing at once (``_limit_running``)."""
        self._limit = QueueLimit(name.rsplit(":", 1)[0], cfg.max_queue_size)
        self._batches = 0
        self._requests = 0
        self._hist: dict[int, int] = {}
        self._cancelled_queued = 0
        self._cancelled_running = 0
        self._infer_time = 0.0
        self._running: set[_Batch] = set()

    @classmethod
    def for_model(
        cls, name: str, version: int, compiled: Runtime, cfg: BatchingConfig
    ) -> Batcher | None:
        """A batcher if batching applies to this model, else None (requests go straight through).

        Batching applies when every input has a batch axis whose size may vary (dynamic) and
        every output has a dynamic first dimension. Mode ``off`` never batches; ``auto`` and
        ``on`` batch when the model allows it (``on`` had the batch dimension made dynamic at
        load, see the runtime). Without a batcher, requests wait for a free infer request of
        the pool (``scheduler.DirectScheduler``, with the same queue limit).
        """
        if cfg.mode == "off" or cfg.max_batch_size <= 1:
            return None
        reason = why_not_batchable(compiled)
        if reason:
            if cfg.mode == "on":
                log.warning("%s version %d: dynamic batching refused: %s", name, version, reason)
            return None
        return cls(f"{name}:{version}", compiled, cfg)

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    @property
    def rejected(self) -> int:
        return self._limit.rejected

    def unequal_batch_sizes(self, arrays: Sequence[np.ndarray[Any, Any]]) -> dict[str, int] | None:
        if len(arrays) < 2:
            return None
        sizes = {
            s.name: int(a.shape[ax])
            for s, a, ax in zip(self.compiled.inputs, arrays, self.axes, strict=True)
        }
        return sizes if len(set(sizes.values())) > 1 else None

    def statistics(self) -> BatcherStatistics:
        return BatcherStatistics(
            queue_length=len(self._queue),
            max_queue_size=self.cfg.max_queue_size,
            allowed_batch_sizes=self.allowed,
            batches=self._batches,
            requests=self._requests,
            batch_size_histogram=dict(self._hist),
            cancelled_queued=self._cancelled_queued,
            cancelled_running=self._cancelled_running,
            rejected=self._limit.rejected,
            inference_time_s=self._infer_time,
            running=tuple(len(b.members) for b in self._running),
        )

    # -- the caller's side --------------------------------------------------------------------
    async def submit(self, arrays: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        """Queue one request (arrays in model input order) and wait for its outputs."""
        self._limit.admit(len(self._queue))
        size = int(arrays[0].shape[self.axes[0]]) if arrays and arrays[0].ndim else 1
        key = tuple(
            (a.dtype.str, a.shape[:ax] + a.shape[ax + 1 :])
            for a, ax in zip(arrays, self.axes, strict=True)
        )
        pending = _Pending(arrays, size, key)
        if not self._queue and self._free.value > 0 and self.cfg.max_delay_us == 0:
            # Fast path: nothing to coalesce with and an infer request is free, so run in the
            # caller's task (saves the hop through the batcher task; cancellation is direct).
            self._free.acquire_nowait()
            solo = _Batch([pending])
            pending.batch = solo
            try:
                await self._run_batch(solo, scoped=False)
            except trio.Cancelled:
                self._cancelled_running += 1
                raise
            if pending.error is not None:
                raise pending.error
            assert pending.outputs is not None
            return pending.outputs
        self._queue.append(pending)
        self._has_work.set()
        try:
            await pending.event.wait()
        except trio.Cancelled:
            if not pending.event.is_set():
                pending.cancelled = True
                batch = pending.batch
                if batch is None:  # still queued: it leaves the queue (and its count)
                    self._cancelled_queued += 1
                    self._queue.remove(pending)
                else:
                    self._cancelled_running += 1
                    if all(m.cancelled for m in batch.members):
                        batch.scope.cancel()
            raise
        if pending.error is not None:
            raise pending.error
        assert pending.outputs is not None
        return pending.outputs

    # -- the batcher task ---------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The batcher task. Call ``warm_up`` first."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                if not self._queue:
                    self._has_work = trio.Event()
                    await self._has_work.wait()
                    continue
                await self._free.acquire()
                try:
                    if self.cfg.max_delay_us > 0:
                        await self._linger()
                    batch = self._take()
                except BaseException:
                    self._free.release()
                    raise
                if batch is None:
                    self._free.release()
                    continue
                nursery.start_soon(self._run_batch, batch)
                del batch  # held until the next batch, it would keep this one's arrays alive

    async def _linger(self) -> None:
        deadline = trio.current_time() + self.cfg.max_delay_us / 1e6
        target = self.allowed[-1]
        while self._queued_samples() < target and trio.current_time() < deadline:
            self._has_work = trio.Event()
            with trio.move_on_at(deadline):
                await self._has_work.wait()

    def _queued_samples(self) -> int:
        return sum(p.size for p in self._queue)

    def _take(self) -> _Batch | None:
        queue = self._queue
        if not queue:  # every waiting caller left meanwhile
            return None
        first = queue.popleft()
        members = [first]
        total = first.size
        limit = self.allowed[-1]
        if total < limit and queue:
            skipped: list[_Pending] = []
            while queue and total < limit:
                p = queue.popleft()
                if p.key == first.key and total + p.size <= limit:
                    members.append(p)
                    total += p.size
                else:
                    skipped.append(p)
                    if len(skipped) > 64:
                        break
            queue.extendleft(reversed(skipped))
        # Round down to a warmed size; the rest goes back to the queue's front.
        if len(members) > 1:
            fit = max(s for s in self.allowed if s <= total) if total >= 1 else 1
            while total > fit and len(members) > 1:
                back = members.pop()
                total -= back.size
                queue.appendleft(back)
        batch = _Batch(members)
        for m in members:
            m.batch = batch
        return batch

    async def _run_batch(self, batch: _Batch, *, scoped: bool = True) -> None:
        """``scoped``: run the inference in ``batch.scope``, which cancels it once every caller
        left. Not for a batch of one run in its caller's task: that caller's own cancellation
        reaches it directly (and a cancel scope costs ~5 us)."""
        try:
            members = [m for m in batch.members if not m.cancelled]
            if not members:
                return
            if len(members) == 1:
                arrays = list(members[0].arrays)
            else:
                arrays = [
                    np.concatenate([m.arrays[i] for m in members], axis=ax)
                    for i, ax in enumerate(self.axes)
                ]
            total = sum(m.size for m in members)
            started = time.perf_counter()
            outputs: list[np.ndarray[Any, Any]] | None = None
            error: BaseException | None = None
            self._running.add(batch)
            try:
                with batch.scope if scoped else contextlib.nullcontext():
                    try:
                        outputs = await self.compiled.infer(arrays, expect_rows=total)
                    except Exception as exc:  # delivered to every caller of the batch
                        error = exc
            finally:
                self._running.discard(batch)
            self._infer_time += time.perf_counter() - started
            if outputs is None and error is None:
                return  # cancelled: every caller already left
            self._batches += 1
            self._requests += len(members)
            self._hist[total] = self._hist.get(total, 0) + 1
            if error is not None:
                for m in members:
                    m.error = error
                    m.event.set()
                return
            assert outputs is not None
            if len(members) == 1:
                members[0].outputs = outputs
                members[0].event.set()
                return
            offset = 0
            for m in members:
                m.outputs = [o[offset : offset + m.size] for o in outputs]
                offset += m.size
                m.event.set()
        finally:
            self._free.release()
            # Every member is answered or gone: break the member <-> batch cycle, so the
            # request's arrays are freed now rather than at the next garbage collection.
            for m in batch.members:
                m.batch = None

    def _limit_running(self, inference_s: float | None) -> None:
        """Most batches running at once, set once the warm-up has chosen the sizes (before
        the batcher task starts). ``inference_s``: one batch-1 inference's time, if timed.

        The whole pool (one inference queued behind each running one, see
        ``POOL_PER_OPTIMAL``) when batch size 1 is the only size or when an inference takes
        ``PIPELINE_FROM_S`` or more: a stream would idle for the round trip through Python
        between two inferences. OpenVINO's optimal number for a fast model batched in sizes
        above 1: the requests arriving while those run make the next batch bigger, which pays
        more (a tiny model at 64 clients costs 4-11 % less server CPU per request).
        """
        pipeline = len(self.allowed) == 1 or (
            inference_s is not None and inference_s >= PIPELINE_FROM_S
        )
        limit = self.compiled.nireq if pipeline else self.compiled.optimal
        self._free = trio.Semaphore(limit)
        self.max_running = limit

    async def _round(self, arrays: list[np.ndarray[Any, Any]]) -> float:
        """Seconds to run one inference of ``arrays`` on every infer request concurrently."""
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(self.compiled.nireq):
                nursery.start_soon(self.compiled.infer, arrays)
        return time.perf_counter() - t0

    async def warm_up(self) -> None:
        """Run each power-of-two batch size, time it, keep the sizes that pay."""
        specs = self.compiled.inputs
        if any(
            d < 0
            for s, ax in zip(specs, self.axes, strict=True)
            for i, d in enumerate(s.shape)
            if i != ax
        ):
            sizes = [1]
            b = 2
            while b <= self.max_batch:
                sizes.append(b)
                b *= 2
            self.allowed = tuple(sizes)  # other dims dynamic: cannot warm, allow all
            self._limit_running(None)
            return
        per_sample: dict[int, float] = {}
        b = 1
        while b <= self.max_batch:
            arrays: list[np.ndarray[Any, Any]] = []
            for s, ax in zip(specs, self.axes, strict=True):
                shape = list(s.shape)
                if shape:
                    shape[ax] = b
                arrays.append(np.zeros(shape, dtype=s.datatype.numpy))
            # Every infer request at once, as under load (with several streams, one big
            # request can leave streams idle that separate requests would use). The first
            # round prepares kernels and is not timed; then the best of up to two rounds.
            await self._round(arrays)
            best = float("inf")
            spent = 0.0
            for _ in range(2):
                took = await self._round(arrays)
                best, spent = min(best, took), spent + took
                if spent > 0.5:
                    break
            per_sample[b] = best / (b * self.compiled.nireq)
            b *= 2
        allowed = [1]
        for size in sorted(per_sample):
            if size > 1 and (
                self.cfg.mode == "on" or per_sample[size] < 0.9 * per_sample[allowed[-1]]
            ):
                allowed.append(size)
        self.allowed = tuple(allowed)
        self._limit_running(per_sample[1] * self.compiled.optimal)
        log.info(
            "%s: batch sizes %s (per-sample ms: %s)",
            self.name,
            list(self.allowed),
            ", ".join(f"{k}:{v * 1e3:.3f}" for k, v in per_sample.items()),
        )


def why_not_batchable(compiled: Runtime) -> str:
    """Why the model's requests cannot be batched ("" when they can: every input has a
    dynamic batch axis and every output a dynamic first dimension, its batch)."""
    if not compiled.inputs:
        return "the model has no inputs"
    for spec, ax in zip(compiled.inputs, compiled.batch_index, strict=True):
        if ax is None or not spec.shape:
            return f"input {spec.name!r} has no batch dimension"
        lo, hi = spec.ranges[ax]
        if spec.shape[ax] >= 0 or lo > 1 or (0 <= hi < 2):
            return f"the batch dimension of input {spec.name!r} is static ({spec.shape})"
    for out in compiled.outputs:
        if not out.shape or out.shape[0] >= 0:
            return f"output {out.name!r} has no dynamic batch dimension"
    return ""
