"""One version of a model: its state, its life (``ModelVersion.serve``) and its inferences.

A version is served by one task in the registry's nursery: it compiles the model in a worker
thread, chooses the version's scheduler (the batcher, or direct), runs it in its own nursery
while AVAILABLE, and on unload waits for the requests holding the version before it ends.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import trio

from ..batching import Batcher, BatcherStatistics, why_not_batchable
from ..config import ConfigError, ModelConfig
from ..errors import VERSION_RETIRED, NotFound, OvtrioError
from ..runtime import CompiledModel, LoadError, compile_version, ov_core
from ..scheduler import DirectScheduler, Scheduler
from ..tensors import TensorSpec
from ._discovery import read_mapping
from ._storage import StorageError, fetch_version, release_version

if TYPE_CHECKING:
    from ._registry import Model

__all__ = ["ModelState", "ModelVersion", "VersionStatistics"]

log = logging.getLogger(__name__)


class ModelState(enum.IntEnum):
    """TF Serving's numbering, which OVMS reports on every API."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


class ModelVersion:
    """One version of a model: state, status, and (while AVAILABLE) the compiled model."""

    def __init__(self, model: Model, version: int, path: Path) -> None:
        self.model = model
        self.version = version
        self.path = path
        """The version's folder on this machine (a remote version's cached copy)."""
        self.state = ModelState.START
        self.error_code = "OK"
        self.error_message = ""
        self.compiled: CompiledModel | None = None
        self.scheduler: Scheduler | None = None
        """How requests reach ``compiled`` (set while AVAILABLE)."""
        self._changed = trio.Event()
        self._unload = trio.Event()
        self._holders = 0
        self._idle = trio.Event()
        self.stats = _Counters()
        self.retry = False
        """It failed to load for a storage reason: the next poll tries again."""

    # -- state ---------------------------------------------------------------------------------
    def _set_state(self, state: ModelState, code: str = "OK", message: str = "") -> None:
        self.state, self.error_code, self.error_message = state, code, message
        log.info(
            "%s version %d: %s%s",
            self.model.name,
            self.version,
            state.name,
            f" ({message})" if message else "",
        )
        self._changed.set()
        self._changed = trio.Event()

    @property
    def holders(self) -> int:
        """Requests holding this version (``use``: queued or running)."""
        return self._holders

    @property
    def available(self) -> bool:
        return self.state is ModelState.AVAILABLE and self.compiled is not None

    @property
    def failed(self) -> bool:
        """It failed to load: OVMS reports it LOADING, with an error code."""
        return self.state is ModelState.LOADING and self.error_code != "OK"

    @property
    def loading(self) -> bool:
        """Not loaded yet, and not failed."""
        return self.state <= ModelState.LOADING and not self.failed

    @property
    def batch_axes(self) -> tuple[int | None, ...]:
        """Each input's batch axis (None: the input has none)."""
        assert self.compiled is not None
        return self.compiled.batch_index

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        assert self.compiled is not None
        return self.compiled.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        assert self.compiled is not None
        return self.compiled.outputs

    async def wait_changed(self) -> None:
        await self._changed.wait()

    # -- life ----------------------------------------------------------------------------------
    async def serve(
        self,
        limiter: trio.CapacityLimiter,
        *,
        task_status: trio.TaskStatus[bool] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Load, serve until unloaded, drain, end. ``started(ok)``: AVAILABLE or failed."""
        cfg = self.model.config
        self._set_state(ModelState.LOADING)
        began = time.monotonic()
        try:
            self.path = await fetch_version(self.model.storage, self.version)
        except StorageError as exc:
            log.error("%s version %d failed to load: %s", cfg.name, self.version, exc.reason)
            self.retry = True
            self._set_state(ModelState.LOADING, "UNKNOWN", exc.reason)
            task_status.started(False)
            return
        try:
            compiled, inputs, outputs, batch_index = await trio.to_thread.run_sync(
                _compile, cfg, self.path, limiter=limiter
            )
            self.compiled = CompiledModel(compiled, inputs, outputs, batch_index, cfg.nireq)
            log.debug(
                "%s version %d: compiled %s for %s in %.2f s, %d infer requests; inputs %s;"
                " outputs %s",
                cfg.name,
                self.version,
                self.path,
                cfg.target_device,
                time.monotonic() - began,
                self.compiled.nireq,
                _specs(inputs),
                _specs(outputs),
            )
            self.compiled.load = self.model.load
            if self.model.observer_factory is not None:
                self.compiled.observer = self.model.observer_factory(cfg.name, self.version)
        except LoadError as exc:
            log.error("%s version %d failed to load: %s", cfg.name, self.version, exc)
            self._set_state(ModelState.LOADING, "UNKNOWN", str(exc))
            await self._release()
            task_status.started(False)
            return
        except Exception as exc:  # a bug or an OpenVINO surprise must not take the server down
            log.exception("%s version %d failed to load", cfg.name, self.version)
            self._set_state(ModelState.LOADING, "UNKNOWN", f"{type(exc).__name__}: {exc}")
            await self._release()
            task_status.started(False)
            return
        try:
            scheduler = await self._scheduler_for(self.compiled)
        except OvtrioError as exc:
            log.error("%s version %d failed its warm-up: %s", cfg.name, self.version, exc)
            self.compiled.close()
            self.compiled = None
            self._set_state(ModelState.LOADING, "UNKNOWN", f"warm-up failed: {exc}")
            await self._release()
            task_status.started(False)
            return
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(scheduler.run)
                self.scheduler = scheduler
                self._set_state(ModelState.AVAILABLE)
                task_status.started(True)
                await self._unload.wait()
                self._set_state(ModelState.UNLOADING)
                if self._holders:
                    log.debug(
                        "%s version %d: waiting for %d requests before unloading",
                        cfg.name,
                        self.version,
                        self._holders,
                    )
                    await self._idle.wait()
                nursery.cancel_scope.cancel()
        finally:
            if self.compiled is not None:
                self.compiled.close()
            self.compiled = None
            self.scheduler = None
            await self._release()
            if self.state is not ModelState.END:
                self._set_state(ModelState.END)

    async def _release(self) -> None:
        """Remove a remote version's cached copy (a later load downloads it again), unless a
        newer instance of this version, loaded while this one drained, reads it now."""
        if self.model.remote and self.model.versions.get(self.version) is self:
            with trio.CancelScope(shield=True):
                await release_version(self.model.storage, self.version)

    async def _scheduler_for(self, compiled: CompiledModel) -> Scheduler:
        """The batcher when batching applies and pays (measured at its warm-up), else the
        direct scheduler. Raises OvtrioError when the warm-up fails."""
        cfg = self.model.config
        batcher = Batcher.for_model(cfg.name, self.version, compiled, cfg.batching)
        if batcher is not None:
            await batcher.warm_up()
            if batcher.allowed != (1,) or cfg.batching.mode != "auto":
                return batcher
            log.info(
                "%s version %d: batching does not pay for this model (measured at warm-up); "
                "requests run one by one",
                cfg.name,
                self.version,
            )
        return DirectScheduler(
            cfg.name,
            compiled,
            cfg.batching.max_queue_size,
            check_rows=not why_not_batchable(compiled),
        )

    def unload(self) -> None:
        self._unload.set()

    def _hold(self) -> Scheduler:
        """Hold the version for one request (then ``_unhold``); unloading waits for every
        holder."""
        scheduler = self.scheduler
        if scheduler is None or self.state is not ModelState.AVAILABLE:
            raise NotFound(VERSION_RETIRED)
        self._holders += 1
        return scheduler

    def _unhold(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            self._idle.set()
            self._idle = trio.Event()

    def unequal_batch_sizes(self, arrays: Sequence[np.ndarray[Any, Any]]) -> dict[str, int] | None:
        """Input name -> batch size when they differ and the version's scheduler needs them
        equal (``Scheduler.unequal_batch_sizes``), else None."""
        scheduler = self.scheduler
        return scheduler.unequal_batch_sizes(arrays) if scheduler is not None else None

    async def infer(self, arrays: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        """One request's inference, through the version's scheduler."""
        started = time.perf_counter_ns()
        ok = False
        try:
            scheduler = self._hold()
            try:
                result = await scheduler.submit(arrays)
            finally:
                self._unhold()
            ok = True
            return result
        finally:
            self.stats.record(ok, time.perf_counter_ns() - started)

    def statistics(self) -> VersionStatistics:
        """A snapshot for the statistics API and metrics."""
        compiled = self.compiled
        scheduler = self.scheduler
        return VersionStatistics(
            version=self.version,
            success_count=self.stats.success_count,
            success_ns=self.stats.success_ns,
            fail_count=self.stats.fail_count,
            fail_ns=self.stats.fail_ns,
            last_inference_ms=self.stats.last_inference_ms,
            inferences_completed=compiled.completed if compiled else 0,
            inferences_cancelled=compiled.cancelled if compiled else 0,
            inferences_abandoned=compiled.abandoned if compiled else 0,
            repair_inferences=compiled.repairs if compiled else 0,
            inferences_inline=compiled.inlined if compiled else 0,
            compute_ns=compiled.compute_ns if compiled else 0,
            nireq=compiled.nireq if compiled else 0,
            queue_length=scheduler.queue_length if scheduler else 0,
            rejected=scheduler.rejected if scheduler else 0,
            batcher=scheduler.statistics() if scheduler else None,
        )


def _compile(
    cfg: ModelConfig, path: Path
) -> tuple[Any, tuple[TensorSpec, ...], tuple[TensorSpec, ...], tuple[int | None, ...]]:
    """Read the version folder's ``mapping_config.json`` and compile the version (blocking).

    The mapping's problems are load errors: a file ovtrio cannot honour fails the version.
    """
    try:
        mapping = read_mapping(path)
    except ConfigError as exc:
        raise LoadError(str(exc)) from None
    return compile_version(ov_core(), cfg, path, mapping)


@dataclass(slots=True)
class _Counters:
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    last_inference_ms: int = 0

    def record(self, ok: bool, elapsed_ns: int) -> None:
        """One request answered (``ok``) or failed after ``elapsed_ns``."""
        if ok:
            self.success_count += 1
            self.success_ns += elapsed_ns
            self.last_inference_ms = int(time.time() * 1000)
        else:
            self.fail_count += 1
            self.fail_ns += elapsed_ns


@dataclass(frozen=True, slots=True)
class VersionStatistics:
    version: int
    success_count: int
    success_ns: int
    fail_count: int
    fail_ns: int
    last_inference_ms: int
    inferences_completed: int
    """OpenVINO inferences that ran to completion (a batch counts once)."""
    inferences_cancelled: int
    """OpenVINO inferences cancelled while running."""
    inferences_abandoned: int
    """Inferences run to completion after their callers left (cancelling was not safe)."""
    repair_inferences: int
    """Small inferences run after a cancel to re-align OpenVINO's shape state."""
    inferences_inline: int
    """Inferences of the sole request in the server, run synchronously (fast models)."""
    compute_ns: int
    """Wall time of the completed OpenVINO inferences."""
    nireq: int
    queue_length: int
    """Requests waiting for their inference to start (``Scheduler.queue_length``)."""
    rejected: int
    """Requests refused because the queue was full."""
    batcher: BatcherStatistics | None


def _specs(specs: Sequence[TensorSpec]) -> str:
    """``name DATATYPE (d0,d1,...) [layout]`` per tensor, for the load log line."""
    return ", ".join(
        f"{s.name} {s.datatype.kserve} ({','.join(map(str, s.shape))})"
        + (f" {s.layout}" if s.layout else "")
        for s in specs
    )
