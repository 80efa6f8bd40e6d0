"""The only module that imports OpenVINO.

``compile_version`` reads, reshapes and compiles a model version (blocking: call it in a
worker thread). ``CompiledModel`` owns the compiled model and its own pool of
``InferRequest`` objects; ``CompiledModel.infer`` runs one inference through
``start_async`` and hands the completion back to trio, so the event loop does not block on
inference. The one exception: the sole request in the server on a fast model runs
synchronously (``infer(inline=True)``: under a millisecond, nobody else waiting).

Cancellation: if the awaiting task is cancelled while OpenVINO computes, the inference is
cancelled with ``InferRequest.cancel()`` when that is safe, and otherwise left to finish with
its result discarded ("abandoned"). OpenVINO 2026.4's CPU plugin keeps per-node shape state in
the stream's graph: an inference cancelled half way leaves nodes whose output memory has the
cancelled shape while they remember the shape of the inference before it, and the next
inference *with that earlier shape* on the same stream is answered in the cancelled shape,
holding the cancelled inference's rows (another client's data; scripts/ov_cancel_bug.py shows
it standalone). Hence:

* static input shapes: no shape state, always cancelled;
* dynamic input shapes on one stream with no other inference in flight: the pool is held,
  the inference cancelled, and a small *repair* inference (one to three rows of the cancelled
  input, in a shape different from both the cancelled and the last completed one) re-aligns
  every node before any other inference may start; also on a fresh graph, where a later
  inference of the cancelled shape could come back in the shape run after it. None when the
  cancelled shapes equal the last completed ones (every node already holds them);
* otherwise (several streams, other inferences queued behind it, or an unknown last shape):
  abandoned, because nothing can steer a repair to the right stream in time.

OpenVINO fires no callback for a cancelled request, so this module waits for the request to
become idle (in a worker thread, shielded, which takes a few milliseconds) and replaces it.
``AsyncInferQueue`` is not used because one cancel breaks it for good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino._pyopenvino as _pyov
import trio

from .._inbox import TrioInbox
from ..config import Dim, ModelConfig, ShapeSpec
from ..errors import InferenceFailed
from ..tensors import TensorSpec, datatype_of_ov
from ._preprocess import apply_preprocess

__all__ = ["CompiledModel", "LoadError", "compile_version", "find_model_file"]

log = logging.getLogger(__name__)

_MODEL_SUFFIXES = (".xml", ".onnx", ".pdmodel", ".tflite", ".pb")


_ov_infer = _pyov.InferRequest.infer
"""OpenVINO's synchronous infer without the Python wrapper's input dispatch and output dict."""

INLINE_AFTER = 16
INLINE_BELOW_NS = 1_000_000
"""A model with at least ``INLINE_AFTER`` inferences done whose recent ones took less than
this (moving average, from the copy of the inputs to OpenVINO's completion) may run the sole
request in the server synchronously (``CompiledModel.infer(inline=True)``). The measure
leaves out the hand-back to trio, which is what inlining saves, but holds OpenVINO's own
thread wake-ups: 0.1-0.3 ms for a tiny model on an idle two-core machine, so the bound is
the one batching uses for a fast model (``batching.PIPELINE_FROM_S``)."""


class LoadError(Exception):
    """A version could not be loaded; the message goes into the version's status."""


def find_model_file(version_dir: Path) -> Path:
    """The model file in a version folder, in OVMS' search order (IR, ONNX, Paddle, TFLite, TF)."""
    for suffix in _MODEL_SUFFIXES:
        found = sorted(p for p in version_dir.iterdir() if p.suffix == suffix and p.is_file())
        if found:
            return found[0]
    if (version_dir / "saved_model.pb").exists():
        return version_dir
    raise LoadError(f"no model file (.xml/.onnx/.pdmodel/.tflite/.pb) in {version_dir}")


def _dimension(dim: Dim) -> ov.Dimension:
    lo, hi = dim
    if lo == hi and lo >= 0:
        return ov.Dimension(lo)
    if hi < 0 and lo <= 0:
        return ov.Dimension()
    return ov.Dimension(lo, hi)


def _batch_index(layout: ov.Layout, rank: int) -> int | None:
    if layout.has_name("N"):
        idx = int(ov.layout_helpers.batch_idx(layout))
        return idx % rank if rank > 0 else None
    if layout.empty:
        return 0 if rank > 0 else None
    return None


def _apply_layout(model: ov.Model, layout: str | dict[str, str] | None) -> None:
    if not layout:
        return
    names = [p.get_any_name() for p in model.inputs]
    per_input = layout if isinstance(layout, dict) else dict.fromkeys(names, layout)
    out_names = {p.get_any_name() for p in model.outputs}
    ppp = ov.preprocess.PrePostProcessor(model)
    for name, spec in per_input.items():
        target, _, source = spec.partition(":")
        if name in names:
            info = ppp.input(name)
            if source:
                info.tensor().set_layout(ov.Layout(target))
                info.model().set_layout(ov.Layout(source))
            else:
                info.model().set_layout(ov.Layout(target))
        elif name in out_names:
            oinfo = ppp.output(name)
            if source:
                oinfo.tensor().set_layout(ov.Layout(target))
                oinfo.model().set_layout(ov.Layout(source))
            else:
                oinfo.model().set_layout(ov.Layout(target))
        else:
            raise LoadError(f"layout names {name!r}, which is neither an input nor an output")
    ppp.build()


def _reshape(model: ov.Model, cfg: ModelConfig) -> None:
    shapes: dict[str, ov.PartialShape] = {}
    spec = cfg.shape
    if spec is not None:
        per_input: dict[str, ShapeSpec] = (
            spec if isinstance(spec, dict) else {p.get_any_name(): spec for p in model.inputs}
        )
        known = {p.get_any_name() for p in model.inputs}
        for name, s in per_input.items():
            if name not in known:
                raise LoadError(f"shape names {name!r}, which is not an input of the model")
            rank = model.input(name).get_partial_shape().rank
            if s.auto:
                n = rank.get_length() if rank.is_static else 0
                shapes[name] = (
                    ov.PartialShape([ov.Dimension()] * n) if n else ov.PartialShape.dynamic()
                )
            else:
                shapes[name] = ov.PartialShape([_dimension(d) for d in s.dims])
        if cfg.batch_size is not None:
            log.warning("%s: both shape and batch_size are set; batch_size is ignored", cfg.name)
    elif cfg.batch_size is not None or cfg.batching.mode == "on":
        # batch_size reshapes the batch dimension; dynamic batching "on" makes a static batch
        # dimension dynamic so that requests can be coalesced.
        if cfg.batch_size is None or cfg.batch_size == "auto":
            dim = ov.Dimension()
        else:
            dim = _dimension(cfg.batch_size)
        for port in model.inputs:
            ps = port.get_partial_shape()
            if ps.rank.is_dynamic or ps.rank.get_length() == 0:
                continue
            idx = _batch_index(port.get_node().get_layout(), ps.rank.get_length())
            if idx is None:
                continue
            ps = ov.PartialShape(ps)
            ps[idx] = dim
            shapes[port.get_any_name()] = ps
    if shapes:
        try:
            model.reshape(shapes)
        except RuntimeError as exc:
            raise LoadError(f"reshape failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith("Exception from"):
            return line.strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _spec(port: Any, layout: ov.Layout | None) -> TensorSpec:
    type_name = port.get_element_type().get_type_name()
    row = datatype_of_ov(type_name)
    if row is None:
        raise LoadError(f"tensor {port.get_any_name()!r} has unsupported element type {type_name}")
    ps = port.get_partial_shape()
    if ps.rank.is_dynamic:
        raise LoadError(
            f"tensor {port.get_any_name()!r} has a dynamic rank, which is not supported"
        )
    shape: list[int] = []
    ranges: list[tuple[int, int]] = []
    for d in ps:
        if d.is_static:
            shape.append(d.get_length())
            ranges.append((d.get_length(), d.get_length()))
        else:
            shape.append(-1)
            ranges.append((d.get_min_length(), d.get_max_length()))
    text = "" if layout is None or layout.empty else layout.to_string().strip("[]").replace(",", "")
    return TensorSpec(port.get_any_name(), row, tuple(shape), tuple(ranges), text)


@dataclass(slots=True)
class _Call:
    event: trio.Event = field(default_factory=trio.Event)
    outputs: list[np.ndarray[Any, Any]] | None = None
    error: BaseException | None = None
    done_ns: int = 0
    """When OpenVINO's completion callback ran (perf_counter_ns), before the hand-back."""


def compile_version(
    core: ov.Core, cfg: ModelConfig, version_dir: Path
) -> tuple[
    ov.CompiledModel, tuple[TensorSpec, ...], tuple[TensorSpec, ...], tuple[int | None, ...]
]:
    """Read, reshape and compile one version. Blocking: run it in a worker thread.

    Returns the compiled model, input specs, output specs and each input's batch index.
    Raises LoadError with a one-line reason.
    """
    path = find_model_file(version_dir)
    try:
        model = core.read_model(str(path))
    except RuntimeError as exc:
        raise LoadError(f"cannot read {path.name}: {_first_line(exc)}") from exc
    try:
        _apply_layout(model, cfg.layout)
    except RuntimeError as exc:
        raise LoadError(f"layout {cfg.layout!r} cannot be applied: {_first_line(exc)}") from exc
    model = apply_preprocess(model, cfg.preprocess)
    _reshape(model, cfg)
    props: dict[str, Any] = dict(cfg.plugin_config)
    if "NUM_STREAMS" not in props and "PERFORMANCE_HINT" not in props:
        props["PERFORMANCE_HINT"] = "LATENCY"
    if not cfg.model_cache:
        props.setdefault("CACHE_DIR", "")  # an empty CACHE_DIR turns the core's cache off
    try:
        compiled = core.compile_model(model, cfg.target_device, props)
    except RuntimeError as exc:
        raise LoadError(f"compile on {cfg.target_device} failed: {_first_line(exc)}") from exc
    inputs = []
    batch_idx: list[int | None] = []
    for port, param in zip(compiled.inputs, model.get_parameters(), strict=True):
        layout = param.get_layout()
        spec = _spec(port, layout)
        inputs.append(spec)
        batch_idx.append(_batch_index(layout, len(spec.shape)))
    outputs = tuple(_spec(port, None) for port in compiled.outputs)
    return compiled, tuple(inputs), outputs, tuple(batch_idx)


POOL_PER_OPTIMAL = 2
"""Default pool: this many infer requests per one OpenVINO calls optimal. A completed
inference reaches Python through its callback, the GIL and trio before the next one can start
on its request; with one request per stream, that stream idles meanwhile. A second request per
stream, already started, keeps it computing. Unbatched, 4 clients: MobileNet-style 227 -> 245
req/s over gRPC (perf_analyzer), tiny 1200 -> 1381 req/s (tritonclient); in-process
AsyncInferQueue gains too (312 -> 336/s), so scripts/bench measures both pool sizes."""


class CompiledModel:
    """A compiled model version and its pool of infer requests.

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
        self._slots: dict[int, list[Any]] = {}
        """id(request) -> [the _Call of the inference running on it, its TrioInbox]: what
        the request's completion callback, set once, delivers to."""
        self._closed = False
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
        """Inferences run synchronously in trio's thread (``infer(inline=True)``)."""
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
        self._one_stream = streams == 1
        self._static = all(-1 not in spec.shape for spec in inputs)
        self._last_shapes: tuple[tuple[int, ...], ...] | None = _FRESH
        """Input shapes of the last inference that completed; ``_FRESH`` before the first
        one (a fresh graph re-infers every shape), None when unknown (after a failure)."""
        self._inbox: TrioInbox | None = None
        self.observer: Callable[[str, float], None] | None = None
        """Metrics hook: ("wait", seconds waited for a request) and ("inference", seconds)."""

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
        self,
        arrays: Sequence[np.ndarray[Any, Any]],
        expect_rows: int | None = None,
        *,
        inline: bool = False,
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

        ``inline``: the caller is the only request in the whole server. Then a fast model's
        inference (recent ones under ``INLINE_BELOW_NS`` on average) with no other inference of
        this model in flight runs synchronously in trio's thread: one thread wake-up instead
        of the completion callback's round trip through the GIL and trio's wake-up socket
        (tiny model, one gRPC client: p50 1.16 -> 1.06 ms, server CPU per request 1,094 ->
        930 us). Not under load: with other requests in the server, blocking the event loop
        for even 0.1 ms cost 5 % of throughput at 4 gRPC clients. Not cancellable, which at
        that length does not matter.
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
            holder = [self._free.pop()]
            try:
                outputs = await self._run(holder, arrays, inline=inline)
                if expect_rows is None or _rows_ok(outputs, expect_rows):
                    return outputs
                self.wrong_shapes += 1
                log.warning(
                    "OpenVINO answered %s rows for a batch of %d; running it again on a new "
                    "infer request",
                    [o.shape[0] for o in outputs if o.ndim],
                    expect_rows,
                )
                self._renew(holder)
                outputs = await self._run(holder, arrays)
                if _rows_ok(outputs, expect_rows):
                    return outputs
                self._renew(holder)
                raise InferenceFailed(
                    "Internal inference error - the outputs do not match the batch size of "
                    "the inputs"
                )
            finally:
                if self._closed:
                    self._drop(holder[0])
                else:
                    self._free.append(holder[0])
        finally:
            self._sem.release()

    def _renew(self, holder: list[ov.InferRequest]) -> None:
        """Replace a request that was cancelled or failed: OpenVINO may answer the next
        inference on it with stale shapes or data from the interrupted one (seen with
        2026.4: another caller's rows after a cancel; a cached shape after a failure)."""
        # The completion callback closes over the request: drop it, or the request (held by its
        # own callback, through C++) would never be freed (see ``close``).
        self._drop(holder[0])
        holder[0] = self._new_request()

    def _new_request(self) -> ov.InferRequest:
        """An infer request with its completion callback (set once: setting it per inference
        cost ~10 us)."""
        req = self.compiled.create_infer_request()
        slot: list[Any] = [None, None]
        self._slots[id(req)] = slot
        req.set_callback(self._make_callback(req), slot)
        return req

    def close(self) -> None:
        """Let OpenVINO free the compiled model once its requests are idle.

        Each request holds its completion callback in C++, and the callback holds the request:
        a cycle Python's collector cannot see, which kept every unloaded version's compiled
        model (and its memory) alive. Dropping the callbacks breaks it: now for the requests
        in the pool, for a request still in use (a caller cancelled at shutdown, finishing
        shielded) when it comes back."""
        self._closed = True
        for req in self._free:
            self._drop(req)
        self._free.clear()

    def _drop(self, req: ov.InferRequest) -> None:
        req.set_callback(_no_callback, None)
        self._slots.pop(id(req), None)

    async def _run(
        self,
        holder: list[ov.InferRequest],
        arrays: Sequence[np.ndarray[Any, Any]],
        counted: bool = True,
        inline: bool = False,
    ) -> list[np.ndarray[Any, Any]]:
        req = holder[0]
        call = _Call()
        started = time.perf_counter_ns()
        slot = self._slots[id(req)]
        slot[0], slot[1] = call, self._inbox_for_this_run()
        inlined = inline and self._inline_now()
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
                slot[0] = None  # no callback comes: the call is answered here
                _infer_sync(req, call, self._string_outputs)
                if call.error is None:
                    self.inlined += 1
            else:
                req.start_async()
        except (RuntimeError, TypeError, ValueError) as exc:
            raise InferenceFailed(f"Internal inference error - {_first_line(exc)}") from exc
        if not inlined:
            try:
                await self._wait(req, call)
            except trio.Cancelled:
                if not call.event.is_set():
                    with trio.CancelScope(shield=True):
                        await self._stop(holder, call, arrays)
                raise
        if call.error is not None:
            self._last_shapes = None
            self._renew(holder)
            raise InferenceFailed(f"Internal inference error - {_first_line(call.error)}")
        assert call.outputs is not None
        self._last_shapes = tuple(a.shape for a in arrays)
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
        """Whether this inference may block the event loop: it is the only one of this model
        in flight and the model is fast (see ``infer``)."""
        return (
            self.busy == 1
            and self.waiting == 0
            and self.completed >= INLINE_AFTER
            and self._recent_ns < INLINE_BELOW_NS
        )

    async def _stop(
        self, holder: list[ov.InferRequest], call: _Call, arrays: Sequence[np.ndarray[Any, Any]]
    ) -> None:
        """The caller of a running inference left: cancel it, or abandon it (module doc).

        Runs shielded; returns once the request in ``holder`` may serve the next caller.
        """
        req = holder[0]
        if self._static:
            req.cancel()
            self.cancelled += 1
            await trio.to_thread.run_sync(_wait_idle, req)
            self._renew(holder)
            return
        repair = self._repair_inputs(arrays)
        if repair is None:
            self.abandoned += 1
            await self._wait(req, call)
            if call.error is not None:
                self._last_shapes = None
                self._renew(holder)
            else:
                self._last_shapes = tuple(a.shape for a in arrays)
                self.completed += 1
            return
        # Exclusive: no other inference may start on the stream before the repair has run.
        others = self.nireq - 1
        for _ in range(others):
            self._sem.acquire_nowait()
        try:
            req.cancel()
            self.cancelled += 1
            await trio.to_thread.run_sync(_wait_idle, req)
            self._renew(holder)
            if repair:
                self.repairs += 1
                try:
                    await self._run(holder, repair, counted=False)
                except InferenceFailed:
                    log.warning("the repair inference after a cancel failed", exc_info=True)
        finally:
            for _ in range(others):
                self._sem.release()

    def _repair_inputs(
        self, arrays: Sequence[np.ndarray[Any, Any]]
    ) -> list[np.ndarray[Any, Any]] | None:
        """Inputs of the repair inference after cancelling one on ``arrays``: 1-3 rows of
        them, in shapes that are neither the cancelled one nor the last completed one; ``[]``
        when none is needed (the cancelled shapes equal the last completed ones, which stay
        the last ones); None when cancelling is not safe (several streams, other inferences in
        flight, last shapes unknown, an empty batch to take rows from, no batch axis to vary).

        Also on a fresh graph: a cancel there without a repair answered a later inference of
        the cancelled shape in the shape of the inference run after it (106 of 4,345 tries of
        the fresh-graph test's scenario with cancel points spread over 0-6 ms, under CPU load;
        0 of 3,902 with the repair)."""
        last = self._last_shapes
        if not self._one_stream or self.busy != 1 or last is None:
            return None
        shapes = tuple(a.shape for a in arrays)
        if shapes == last:
            return []
        avoid = {shapes} if last is _FRESH else {shapes, last}
        for rows in (1, 2, 3):
            repair = []
            for a, ax in zip(arrays, self.batch_index, strict=True):
                if ax is None or a.ndim == 0:
                    repair.append(a)
                elif a.shape[ax] == 0:
                    return None
                else:  # rows of the request, repeated when it has fewer
                    repair.append(np.take(a, [i % a.shape[ax] for i in range(rows)], ax))
            if tuple(r.shape for r in repair) not in avoid:
                return repair
        return None  # no batch axis to vary: let it run to its end

    async def _wait(self, req: ov.InferRequest, call: _Call) -> None:
        """Wait for the completion callback.

        OpenVINO calls no callback when an inference *fails*, so while waiting the request is
        checked now and then (``wait_for(0)`` does not block and raises the inference's error):
        first after 50 ms, then at doubling intervals up to a second. Successful inferences
        shorter than that are never polled.
        """
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

    def _make_callback(self, req: ov.InferRequest) -> Callable[[list[Any]], None]:
        string_outputs = self._string_outputs

        def on_done(slot: list[Any]) -> None:  # OpenVINO thread
            # The next inference on ``req`` starts only after this one's _finish ran (or after
            # ``req`` was replaced), so the slot still holds this inference's call. Emptied
            # here: it would otherwise keep the call's outputs alive until the next inference.
            call, inbox = slot[0], slot[1]
            slot[0] = None
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


_FRESH: tuple[tuple[int, ...], ...] = ()


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


def _infer_sync(req: ov.InferRequest, call: _Call, string_outputs: list[bool]) -> None:
    """Run ``req`` synchronously and answer ``call`` as its completion callback would."""
    try:
        _ov_infer(req, {}, True, False)
        call.outputs = _read_outputs(req, string_outputs)
    except Exception as exc:  # surfaced to the caller as InferenceFailed
        call.error = exc
    call.done_ns = time.perf_counter_ns()


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
