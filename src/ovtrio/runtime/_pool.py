"""A compiled model version and its pool of infer requests.

``CompiledModel.infer`` runs one inference through ``start_async`` and hands the completion
back to trio, so the event loop does not block on inference. The one exception: the sole
request in the server on a fast model runs synchronously (see ``INLINE_BELOW_NS``).

Cancellation: if the awaiting task is cancelled while OpenVINO computes, the inference is
cancelled with ``InferRequest.cancel()``; for dynamic input shapes, ``_cancel_workaround``
decides (an OpenVINO 2026.4 bug). OpenVINO fires no callback for a cancelled request, so this
module waits for the request to become idle (in a worker thread, shielded, which takes a few
milliseconds) and replaces it. ``AsyncInferQueue`` is not used because one cancel breaks it
for good.

Memory: an inference that moves ``LARGE_BYTES`` or more leaves its size behind. The infer
request's tensors only grow, and the stream's graph keeps its input and output bound to them
until the request's next inference. After one, the request gets empty tensors and runs one
small *flush* inference (zeros in the shapes of the last inference before it), which lets go
of them; the graph's intermediate memory goes with ``release_memory``, which the keeper task
(``ovtrio._malloc``) calls once the pool is idle. With several streams the flush may run on
another stream than the large inference (OpenVINO picks it), whose graph then keeps that
input and output bound until its own next inference: at most one large input and output per
stream, never per request.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openvino as ov
import trio

from .. import _malloc
from .._inbox import TrioInbox
from ..errors import InferenceFailed
from ..load import Load
from ..tensors import TensorSpec
from . import _cancel_workaround
from ._compile import first_line

__all__ = ["INLINE_BELOW_NS", "LARGE_BYTES", "POOL_PER_OPTIMAL", "CompiledModel"]

log = logging.getLogger(__name__)

INLINE_AFTER = 16
INLINE_BELOW_NS = 1_000_000
"""A model with at least ``INLINE_AFTER`` inferences done whose recent ones took less than
this (moving average, from the copy of the inputs to OpenVINO's completion) runs the sole
request in the server (``load.Load.sole_request``) synchronously in trio's thread, when no
other inference of the model is in flight: one thread wake-up instead of the completion
callback's round trip through the GIL and trio's wake-up socket (about 10 % of a tiny
model's latency and server CPU per request). Never under load: with other requests in the
server, blocking the event loop for even 0.1 ms costs throughput. Not cancellable, which at
that length does not matter. The measure leaves out the hand-back to trio, which is what
inlining saves, but holds OpenVINO's own thread wake-ups (0.1-0.3 ms for a tiny model on an
idle two-core machine), so the bound is the one batching uses for a fast model
(``batching.PIPELINE_FROM_S``)."""

POOL_PER_OPTIMAL = 2
"""Default pool: this many infer requests per one OpenVINO calls optimal. A completed
inference reaches Python through its callback, the GIL and trio before the next one can start
on its request; with one request per stream, that stream idles meanwhile. A second request per
stream, already started, keeps it computing (8-15 % more requests per second unbatched with 4
clients; scripts/bench measures both pool sizes)."""

LARGE_BYTES = 16 << 20
"""An inference whose inputs or outputs hold this many bytes gives its memory back (module
doc): what a request may keep is below it, so a pool never holds ``nireq`` times the largest
tensor a client may send. Giving back costs the next large inference fresh tensors (their
page faults) and the large request one small flush inference. In a process that ran one
64 MiB inference on a ``[-1,16]`` model, RSS stayed 190 MiB up without it, 0 with it (a model
with a 128 MiB intermediate tensor: 320 up, then 128 until ``release_memory``, then 0)."""

_PRIVATE_INFER_CHECKED = "2026.4"
"""The OpenVINO release whose private ``_pyopenvino.InferRequest.infer`` signature
``_sync_infer`` was checked against."""


@functools.cache
def _sync_infer() -> Callable[[ov.InferRequest], object]:
    """Run an infer request synchronously on the inputs already set on it.

    OpenVINO's private ``_pyopenvino.InferRequest.infer`` skips the Python wrapper's input
    dispatch and output dict; used only on the release it was checked against, else the
    public ``InferRequest.infer``."""
    version = ov.get_version()
    try:
        import openvino._pyopenvino as _pyov

        private = _pyov.InferRequest.infer
    except (ImportError, AttributeError):
        private = None
    if private is not None and version.startswith(_PRIVATE_INFER_CHECKED):
        return lambda req: private(req, {}, True, False)
    log.info(
        "OpenVINO %s: inline inferences use the public InferRequest.infer (the private fast "
        "path is used with OpenVINO %s only)",
        version,
        _PRIVATE_INFER_CHECKED,
    )
    return lambda req: req.infer(None, share_outputs=True, decode_strings=False)


@dataclass(slots=True)
class _Call:
    event: trio.Event = field(default_factory=trio.Event)
    outputs: list[np.ndarray[Any, Any]] | None = None
    error: BaseException | None = None
    done_ns: int = 0
    """When OpenVINO's completion callback ran (perf_counter_ns), before the hand-back."""


@dataclass(slots=True)
class _Slot:
    """What an infer request's completion callback (set once) delivers to: the call of the
    inference running on it and the way into its trio run."""

    call: _Call | None = None
    inbox: TrioInbox | None = None


@dataclass(slots=True)
class _Lease:
    """The infer request one caller holds; replaced in place when it must be renewed."""

    request: ov.InferRequest
    flush: tuple[tuple[int, ...], ...] | None = None
    """Set for a large inference: the input shapes of the flush inference (module doc)."""


@dataclass(frozen=True, slots=True)
class _EmptyPort:
    """A port whose tensor can grow, and the empty tensor's type and shape that replace it."""

    index: int
    type: ov.Type
    shape: tuple[int, ...]
    """The port's smallest shape (0 for every unbounded dimension)."""


def _empty_ports(ports: Sequence[Any]) -> tuple[_EmptyPort, ...]:
    """The ports of dynamic shape, which a large inference makes grow."""
    out = []
    for i, port in enumerate(ports):
        shape = port.get_partial_shape()
        if shape.is_dynamic and not shape.rank.is_dynamic:
            dims = tuple(int(d.get_min_length()) for d in shape)
            out.append(_EmptyPort(i, port.get_element_type(), dims))
    return tuple(out)


class CompiledModel:
    """A compiled model version and its pool of infer requests (a ``scheduler.Runtime``).

    Args:
        compiled: the OpenVINO compiled model.
        nireq: pool size; 0 takes twice ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``
            (``POOL_PER_OPTIMAL``).
    """

    def __init__(
        self,
        compiled: ov.CompiledModel,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        batch_index: tuple[int | None, ...],
        nireq: int,
    ) -> None:
        self.compiled = compiled
        self.inputs = inputs
        self.outputs = outputs
        self.batch_index = batch_index
        try:
            optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        except (RuntimeError, TypeError, ValueError):
            optimal = 0
        if nireq <= 0:
            nireq = POOL_PER_OPTIMAL * max(1, optimal)
        self.nireq = max(1, nireq)
        self.optimal = min(self.nireq, optimal) if optimal > 0 else self.nireq
        """OpenVINO's optimal number of requests in flight (at most the pool): the number
        that keeps every stream computing if each next inference started the moment the last
        one ended."""
        self._string_outputs = [o.datatype.kserve == "BYTES" for o in outputs]
        self._slots: dict[int, _Slot] = {}
        """id(request) -> its completion callback's slot."""
        self._closed = False
        self._sync_infer = _sync_infer()
        self._free = [self._new_request() for _ in range(self.nireq)]
        self._sem = trio.Semaphore(self.nireq)
        self._string_inputs = [i.datatype.kserve == "BYTES" for i in inputs]
        self.completed = 0
        """Inferences that ran to completion (tests count these to prove cancellation)."""
        self.cancelled = 0
        """Inferences cancelled inside OpenVINO."""
        self.waiting = 0
        """Callers waiting for a free infer request."""
        self.wrong_shapes = 0
        """Answers discarded because their row count did not match the batch."""
        self.compute_ns = 0
        """Wall time of completed inferences, from start_async to the completion."""
        self.abandoned = 0
        """Inferences whose callers left but which ran to completion (see the module doc)."""
        self.repairs = 0
        """Repair inferences run after a cancel of a dynamic-shape inference."""
        self.inlined = 0
        """Inferences run synchronously in trio's thread (``INLINE_BELOW_NS``)."""
        self._recent_ns = INLINE_BELOW_NS
        """Moving average (1/8 weight per inference) of recent inference times, each counted
        as at most twice ``INLINE_BELOW_NS``: the warm-up's large batches and the first, slow
        inferences fade from it, and one hiccup of the machine does not tip it."""
        streams: int | None
        try:
            streams = int(compiled.get_property("NUM_STREAMS"))
        except (RuntimeError, TypeError, ValueError):
            streams = None
        self.streams = streams or 1
        self.streams_one = streams == 1
        """OpenVINO reports exactly one stream."""
        self._static = all(-1 not in spec.shape for spec in inputs)
        self._empty_inputs = _empty_ports(compiled.inputs)
        self._empty_outputs = _empty_ports(compiled.outputs)
        self._grows = bool(self._empty_inputs or self._empty_outputs)
        """A large inference can make this model's memory grow (a dynamic shape)."""
        self.flushes = 0
        """Flush inferences run after large ones (module doc)."""
        self.shapes = _cancel_workaround.ShapeMemory()
        self._inbox: TrioInbox | None = None
        self.observer: Callable[[str, float], None] | None = None
        """Metrics hook: ("wait", seconds waited for a request) and ("inference", seconds)."""
        self.load: Load | None = None
        """The server's requests; None: inferences never run inline."""

    def _inbox_for_this_run(self) -> TrioInbox:
        """The completion callbacks' way into trio (one per trio run: tests run several)."""
        token = trio.lowlevel.current_trio_token()
        inbox = self._inbox
        if inbox is None or inbox.token is not token:
            inbox = self._inbox = TrioInbox(token)
        return inbox

    @property
    def busy(self) -> int:
        return self.nireq - len(self._free)

    async def infer(
        self, arrays: Sequence[np.ndarray[Any, Any]], expect_rows: int | None = None
    ) -> list[np.ndarray[Any, Any]]:
        """Run one inference on arrays given in the order of ``self.inputs``.

        Returns output arrays (copies, owned by the caller) in the order of ``self.outputs``.

        Cancellation: waiting for a free request is cancellable; an inference in flight is
        cancelled inside OpenVINO and the request goes back to the pool.

        Error handling: an OpenVINO error becomes ``InferenceFailed`` (INTERNAL / 500).

        ``expect_rows``: the number of rows every output must have (the batch). OpenVINO 2026.4
        (CPU) can answer in the shape of an earlier cancelled inference, with rows of another
        request; such an answer is discarded, the request replaced and the inference run once
        more on the new one, and a second wrong answer is ``InferenceFailed``.
        """
        try:
            # A free request is taken without a checkpoint (a trip through trio's scheduler,
            # ~5 us): the wait for the inference below is one. A caller already cancelled
            # leaves here, before anything starts.
            await trio.lowlevel.checkpoint_if_cancelled()
            self._sem.acquire_nowait()
            waited = 0.0
        except trio.WouldBlock:
            self.waiting += 1
            waited_from = time.perf_counter()
            try:
                await self._sem.acquire()
            finally:
                self.waiting -= 1
            waited = time.perf_counter() - waited_from
        if self.observer is not None:
            self.observer("wait", waited)
        try:
            lease = _Lease(self._free.pop())
            if self._grows and _nbytes(arrays) >= LARGE_BYTES:
                lease.flush = self._flush_shapes(arrays)
            try:
                outputs = await self._run(lease, arrays, may_inline=True)
                if self._grows and lease.flush is None and _nbytes(outputs) >= LARGE_BYTES:
                    lease.flush = self._flush_shapes(arrays)
                if expect_rows is None or _rows_ok(outputs, expect_rows):
                    return outputs
                self.wrong_shapes += 1
                log.warning(
                    "OpenVINO answered %s rows for a batch of %d; running it again on a new "
                    "infer request",
                    [o.shape[0] for o in outputs if o.ndim],
                    expect_rows,
                )
                self.renew(lease)
                outputs = await self._run(lease, arrays)
                if _rows_ok(outputs, expect_rows):
                    return outputs
                self.renew(lease)
                raise InferenceFailed(
                    "Internal inference error - the outputs do not match the batch size of "
                    "the inputs"
                )
            finally:
                if lease.flush is not None and not self._closed:
                    with trio.CancelScope(shield=True):
                        await self._shed(lease, arrays, lease.flush)
                if self._closed:
                    self._drop(lease.request)
                else:
                    self._free.append(lease.request)
        finally:
            self._sem.release()

    def _flush_shapes(self, arrays: Sequence[np.ndarray[Any, Any]]) -> tuple[tuple[int, ...], ...]:
        """The flush inference's input shapes: those of the last inference when it was small,
        else the large one's with every dynamic dimension at its smallest non-zero size."""
        last = self.shapes.last
        if (
            last
            and len(last) == len(arrays)
            and all(
                math.prod(shape) * a.itemsize < LARGE_BYTES
                for shape, a in zip(last, arrays, strict=True)
            )
        ):
            return last
        smallest = {p.index: p.shape for p in self._empty_inputs}
        shapes = []
        for i, a in enumerate(arrays):
            low = smallest.get(i)
            if low is None or len(low) != a.ndim:
                shapes.append(a.shape)
            else:
                shapes.append(tuple(max(1, d) for d in low))
        return tuple(shapes)

    async def _shed(
        self,
        lease: _Lease,
        arrays: Sequence[np.ndarray[Any, Any]],
        shapes: tuple[tuple[int, ...], ...],
    ) -> None:
        """Give back what a large inference left on the leased request (module doc). Runs
        shielded: one small inference."""
        req = lease.request
        for port in self._empty_inputs:
            req.set_input_tensor(port.index, ov.Tensor(port.type, ov.Shape(list(port.shape))))
        for port in self._empty_outputs:
            req.set_output_tensor(port.index, ov.Tensor(port.type, ov.Shape(list(port.shape))))
        flush = [
            np.full(shape, b"", dtype=object) if a.dtype == object else np.zeros(shape, a.dtype)
            for shape, a in zip(shapes, arrays, strict=True)
        ]
        try:
            await self._run(lease, flush, counted=False)
            self.flushes += 1
        except InferenceFailed as exc:  # the request was renewed: its tensors went with it
            log.debug("the flush inference after a large one failed: %s", exc)
        _malloc.note_large(self)

    def release_memory(self) -> bool:
        """Let OpenVINO free the graphs' intermediate memory (``_malloc.Releasable``); False
        while an inference runs (OpenVINO refuses then)."""
        if self._closed:
            return True
        if self.busy:
            return False
        try:
            self.compiled.release_memory()
        except RuntimeError:
            return False
        return True

    def renew(self, lease: _Lease) -> None:
        """Replace a request that was cancelled or failed: OpenVINO may answer the next
        inference on it with stale shapes or data from the interrupted one (2026.4: another
        caller's rows after a cancel; a cached shape after a failure)."""
        # The completion callback closes over the request: drop it, or the request (held by its
        # own callback, through C++) would never be freed (see ``close``).
        self._drop(lease.request)
        lease.request = self._new_request()

    def _new_request(self) -> ov.InferRequest:
        """An infer request with its completion callback (set once: setting it per inference
        costs ~10 us)."""
        req = self.compiled.create_infer_request()
        slot = _Slot()
        self._slots[id(req)] = slot
        req.set_callback(self._make_callback(req), slot)
        return req

    def close(self) -> None:
        """Let OpenVINO free the compiled model once its requests are idle.

        Each request holds its completion callback in C++, and the callback holds the request:
        a cycle Python's collector cannot see, which would keep every unloaded version's
        compiled model (and its memory) alive. Dropping the callbacks breaks it: now for the
        requests in the pool, for a request still in use (a caller cancelled at shutdown,
        finishing shielded) when it comes back."""
        self._closed = True
        for req in self._free:
            self._drop(req)
        self._free.clear()

    def _drop(self, req: ov.InferRequest) -> None:
        req.set_callback(_no_callback, None)
        self._slots.pop(id(req), None)

    async def run_uncounted(
        self, lease: _Lease, arrays: Sequence[np.ndarray[Any, Any]]
    ) -> list[np.ndarray[Any, Any]]:
        """One inference on the leased request that no statistic counts (a repair)."""
        return await self._run(lease, arrays, counted=False)

    async def _run(
        self,
        lease: _Lease,
        arrays: Sequence[np.ndarray[Any, Any]],
        counted: bool = True,
        may_inline: bool = False,
    ) -> list[np.ndarray[Any, Any]]:
        req = lease.request
        call = _Call()
        started = time.perf_counter_ns()
        slot = self._slots[id(req)]
        slot.call, slot.inbox = call, self._inbox_for_this_run()
        inlined = may_inline and self._inline_now()
        try:
            # Copied into the request's own input tensors (not shared: OpenVINO may compute in
            # place on input memory, and the arrays may be read-only views of a message).
            # Done here rather than by start_async(inputs): its generic dispatch costs ~45 us
            # per call on a tiny model, mostly reading the tensor's shape back.
            for i, a in enumerate(arrays):
                if self._string_inputs[i]:
                    t = ov.Tensor(ov.Type.string, ov.Shape(list(a.shape)))
                    t.bytes_data = [
                        x if isinstance(x, bytes) else str(x).encode() for x in a.reshape(-1)
                    ]
                    req.set_input_tensor(i, t)
                else:
                    t = req.get_input_tensor(i)
                    t.shape = a.shape
                    t.data[...] = a
            if inlined:
                slot.call = None  # no callback comes: the call is answered here
                self._infer_inline(req, call)
                if call.error is None:
                    self.inlined += 1
            else:
                req.start_async()
        except (RuntimeError, TypeError, ValueError) as exc:
            raise InferenceFailed(f"Internal inference error - {first_line(exc)}") from exc
        if not inlined:
            try:
                await self.wait_done(lease, call)
            except trio.Cancelled:
                if not call.event.is_set():
                    with trio.CancelScope(shield=True):
                        await self._stop(lease, call, arrays)
                raise
        if call.error is not None:
            self.shapes.lost()
            self.renew(lease)
            raise InferenceFailed(f"Internal inference error - {first_line(call.error)}")
        assert call.outputs is not None
        self.shapes.completed(arrays)
        if not counted:
            return call.outputs
        self.completed += 1
        took = time.perf_counter_ns() - started
        self.compute_ns += took
        computed = min((call.done_ns or started + took) - started, 2 * INLINE_BELOW_NS)
        self._recent_ns += (computed - self._recent_ns) // 8
        if self.observer is not None:
            self.observer("inference", took / 1e9)
        return call.outputs

    def _inline_now(self) -> bool:
        """Whether this inference may block the event loop: the model is fast, this is its
        only inference in flight, and its request is the only one in the server."""
        return (
            self.busy == 1
            and self.waiting == 0
            and self.completed >= INLINE_AFTER
            and self._recent_ns < INLINE_BELOW_NS
            and self.load is not None
            and self.load.sole_request()
        )

    def _infer_inline(self, req: ov.InferRequest, call: _Call) -> None:
        """Run ``req`` synchronously and answer ``call`` as its completion callback would."""
        try:
            self._sync_infer(req)
            call.outputs = _read_outputs(req, self._string_outputs)
        except Exception as exc:  # surfaced to the caller as InferenceFailed
            call.error = exc
        call.done_ns = time.perf_counter_ns()

    async def _stop(
        self, lease: _Lease, call: _Call, arrays: Sequence[np.ndarray[Any, Any]]
    ) -> None:
        """The caller of a running inference left: cancel it (module doc). Runs shielded;
        returns once the request in ``lease`` may serve the next caller."""
        if self._static:
            await self.cancel(lease)
        else:
            await _cancel_workaround.stop_dynamic(self, lease, call, arrays)

    async def cancel(self, lease: _Lease) -> None:
        """Cancel the leased request's inference inside OpenVINO, wait until the request is
        idle and replace it."""
        req = lease.request
        req.cancel()
        self.cancelled += 1
        await trio.to_thread.run_sync(_wait_idle, req)
        self.renew(lease)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold every other infer request of the pool: no other inference starts meanwhile
        (the caller holds one; the others must be free)."""
        others = self.nireq - 1
        for _ in range(others):
            self._sem.acquire_nowait()
        try:
            yield
        finally:
            for _ in range(others):
                self._sem.release()

    async def wait_done(self, lease: _Lease, call: _Call) -> None:
        """Wait for the completion callback of ``call``, running on the leased request.

        OpenVINO calls no callback when an inference *fails*, so while waiting the request is
        checked now and then (``wait_for(0)`` does not block and raises the inference's error):
        first after 50 ms, then at doubling intervals up to a second. Successful inferences
        shorter than that are never polled.
        """
        req = lease.request
        interval = 0.05
        while True:
            with trio.move_on_after(interval):
                await call.event.wait()
                return
            try:
                req.wait_for(0)
            except RuntimeError as exc:
                if not call.event.is_set():
                    call.error = exc
                    call.event.set()
                return
            interval = min(interval * 2, 1.0)

    def _make_callback(self, req: ov.InferRequest) -> Callable[[_Slot], None]:
        string_outputs = self._string_outputs

        def on_done(slot: _Slot) -> None:  # OpenVINO thread
            # The next inference on ``req`` starts only after this one's _finish ran (or after
            # ``req`` was replaced), so the slot still holds this inference's call. Emptied
            # here: it would otherwise keep the call's outputs alive until the next inference.
            call, inbox = slot.call, slot.inbox
            slot.call = None
            assert call is not None
            assert inbox is not None
            call.done_ns = time.perf_counter_ns()
            outputs: list[np.ndarray[Any, Any]] | None = None
            error: BaseException | None = None
            try:
                outputs = _read_outputs(req, string_outputs)
            except Exception as exc:  # surfaced to the caller as InferenceFailed
                error, outputs = exc, None
            try:
                inbox.run_sync_soon(_finish, call, outputs, error)
            except trio.RunFinishedError:
                pass

        return on_done


def _nbytes(arrays: Sequence[np.ndarray[Any, Any]]) -> int:
    return sum(a.nbytes for a in arrays)


def _rows_ok(outputs: list[np.ndarray[Any, Any]], rows: int) -> bool:
    return all(o.ndim == 0 or o.shape[0] == rows for o in outputs)


def _read_outputs(req: ov.InferRequest, string_outputs: list[bool]) -> list[np.ndarray[Any, Any]]:
    """Copies of the request's outputs (owned by the caller)."""
    outputs = []
    for i, is_string in enumerate(string_outputs):
        t = req.get_output_tensor(i)
        if is_string:
            shape = tuple(t.shape)
            if t.get_size() == 0:  # reading bytes_data of an empty tensor crashes
                outputs.append(np.empty(shape, dtype=object))
            else:
                outputs.append(np.array(t.bytes_data, dtype=object).reshape(shape))
        else:
            outputs.append(t.data.copy())
    return outputs


def _no_callback(_userdata: Any) -> None:
    return None


def _finish(
    call: _Call, outputs: list[np.ndarray[Any, Any]] | None, error: BaseException | None
) -> None:
    call.outputs, call.error = outputs, error
    call.event.set()


def _wait_idle(req: ov.InferRequest) -> None:
    try:
        req.wait()
    except RuntimeError:
        pass  # "Infer Request was canceled": expected after cancel()
