"""Models, their versions and the states OVMS reports for them.

Every version is served by one task in the registry's nursery (``ModelVersion.serve``): it
compiles the model in a worker thread, runs the version's batcher in its own nursery while
AVAILABLE, and on unload waits for in-flight and queued requests before it ends.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trio

from ..batching import Batcher, BatcherStatistics
from ..config import ModelConfig
from ..errors import (
    MODEL_NOT_FOUND,
    VERSION_NOT_FOUND,
    VERSION_NOT_LOADED_YET,
    VERSION_RETIRED,
    ModelNotLoadedYet,
    NotFound,
    OvtrioError,
    ResourceExhausted,
)
from ..runtime import CompiledModel, LoadError, compile_version, ov_core
from ..tensors import TensorSpec
from ._discovery import scan_versions

__all__ = ["Model", "ModelRegistry", "ModelState", "ModelVersion", "VersionStatistics"]

log = logging.getLogger(__name__)

LOADING_WAIT_S = 10.0
"""How long an inference waits for a LOADING version (OVMS: 10 s)."""


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
        self.state = ModelState.START
        self.error_code = "OK"
        self.error_message = ""
        self.compiled: CompiledModel | None = None
        self.batcher: Batcher | None = None
        self._changed = trio.Event()
        self._unload = trio.Event()
        self._in_flight = 0
        self._idle = trio.Event()
        self.stats = _Counters()

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
    def available(self) -> bool:
        return self.state is ModelState.AVAILABLE and self.compiled is not None

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
        try:
            compiled, inputs, outputs, batch_index = await trio.to_thread.run_sync(
                compile_version, ov_core(), cfg, self.path, limiter=limiter
            )
            self.compiled = CompiledModel(compiled, inputs, outputs, batch_index, cfg.nireq)
        except LoadError as exc:
            log.error("%s version %d failed to load: %s", cfg.name, self.version, exc)
            self._set_state(ModelState.LOADING, "UNKNOWN", str(exc))
            task_status.started(False)
            return
        except Exception as exc:  # a bug or an OpenVINO surprise must not take the server down
            log.exception("%s version %d failed to load", cfg.name, self.version)
            self._set_state(ModelState.LOADING, "UNKNOWN", f"{type(exc).__name__}: {exc}")
            task_status.started(False)
            return
        batcher = Batcher.for_model(cfg.name, self.version, self.compiled, cfg.batching)
        if batcher is not None:
            try:
                await batcher.warm_up()
            except OvtrioError as exc:
                log.error("%s version %d failed its warm-up: %s", cfg.name, self.version, exc)
                self.compiled = None
                self._set_state(ModelState.LOADING, "UNKNOWN", f"warm-up failed: {exc}")
                task_status.started(False)
                return
            if batcher.allowed == (1,) and cfg.batching.mode == "auto":
                log.info(
                    "%s version %d: batching does not pay for this model (measured at warm-up); "
                    "requests run one by one",
                    cfg.name,
                    self.version,
                )
                batcher = None
        try:
            async with trio.open_nursery() as nursery:
                if batcher is not None:
                    await nursery.start(batcher.run)
                    self.batcher = batcher
                self._set_state(ModelState.AVAILABLE)
                task_status.started(True)
                await self._unload.wait()
                self._set_state(ModelState.UNLOADING)
                if self._in_flight:
                    await self._idle.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.compiled = None
            self.batcher = None
            if self.state is not ModelState.END:
                self._set_state(ModelState.END)

    def unload(self) -> None:
        self._unload.set()

    @asynccontextmanager
    async def use(self) -> AsyncIterator[CompiledModel]:
        """Hold the version for one request; unloading waits for every holder."""
        compiled = self.compiled
        if compiled is None or self.state is not ModelState.AVAILABLE:
            raise NotFound(VERSION_RETIRED)
        self._in_flight += 1
        try:
            yield compiled
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
                self._idle = trio.Event()

    async def infer(self, arrays: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        started = time.perf_counter_ns()
        ok = False
        try:
            async with self.use() as compiled:
                if self.batcher is not None:
                    result = await self.batcher.submit(arrays)
                else:
                    limit = self.model.config.batching.max_queue_size
                    if compiled.waiting >= limit:
                        self.stats.rejected += 1
                        raise ResourceExhausted(
                            f"Model {self.model.name} is overloaded: its queue of {limit} "
                            "requests is full; retry later"
                        )
                    result = await compiled.infer(arrays)
            ok = True
            return result
        finally:
            stats = self.stats
            elapsed = time.perf_counter_ns() - started
            if ok:
                stats.success_count += 1
                stats.success_ns += elapsed
                stats.last_inference_ms = int(time.time() * 1000)
            else:
                stats.fail_count += 1
                stats.fail_ns += elapsed

    def statistics(self) -> VersionStatistics:
        """A snapshot for the statistics API and metrics."""
        compiled = self.compiled
        return VersionStatistics(
            version=self.version,
            success_count=self.stats.success_count,
            success_ns=self.stats.success_ns,
            fail_count=self.stats.fail_count,
            fail_ns=self.stats.fail_ns,
            last_inference_ms=self.stats.last_inference_ms,
            inferences_completed=compiled.completed if compiled else 0,
            inferences_cancelled=compiled.cancelled if compiled else 0,
            compute_ns=compiled.compute_ns if compiled else 0,
            nireq=compiled.nireq if compiled else 0,
            queue_length=compiled.waiting if compiled else 0,
            rejected=self.stats.rejected,
            batcher=self.batcher.statistics() if self.batcher is not None else None,
        )


@dataclass(slots=True)
class _Counters:
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    last_inference_ms: int = 0
    rejected: int = 0


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
    compute_ns: int
    """Wall time of the completed OpenVINO inferences."""
    nireq: int
    queue_length: int
    """Requests waiting for a free infer request (without a batcher)."""
    rejected: int
    """Requests refused because the queue was full (without a batcher)."""
    batcher: BatcherStatistics | None


class Model:
    """A named model from the config, with its versions."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.versions: dict[int, ModelVersion] = {}

    @property
    def name(self) -> str:
        return self.config.name

    def default_version(self) -> ModelVersion | None:
        """The highest AVAILABLE version."""
        ready = [v for v in self.versions.values() if v.available]
        return max(ready, key=lambda v: v.version) if ready else None

    def available_versions(self) -> list[int]:
        return sorted(v.version for v in self.versions.values() if v.available)

    async def load(self, nursery: trio.Nursery, limiter: trio.CapacityLimiter) -> None:
        """Load the versions the policy selects; a version that fails makes the policy fall back."""
        on_disk = scan_versions(self.config.base_path)
        if not on_disk:
            log.error("%s: no version folders under %s", self.name, self.config.base_path)
        failed: set[int] = set()
        while True:
            wanted = self.config.version_policy.select(sorted(set(on_disk) - failed))
            todo = [v for v in wanted if v not in self.versions or not self.versions[v].available]
            todo = [v for v in todo if v not in failed]
            if not todo:
                return
            for number in sorted(todo, reverse=True):
                mv = ModelVersion(self, number, on_disk[number])
                self.versions[number] = mv
                if not await nursery.start(mv.serve, limiter):
                    failed.add(number)


class ModelRegistry:
    """Name -> Model. ``run`` owns every version's task."""

    def __init__(self, models: Sequence[ModelConfig]) -> None:
        self.models: dict[str, Model] = {m.name: Model(m) for m in models}
        self.ready = False
        """True once the initial configuration was processed (OVMS' server readiness)."""
        self._nursery: trio.Nursery | None = None
        self.loaded = trio.Event()
        """Set once the initial configuration was processed."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        limiter = trio.CapacityLimiter(1)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            async with trio.open_nursery() as loaders:
                for model in self.models.values():
                    loaders.start_soon(model.load, nursery, limiter)
            self.ready = True
            self.loaded.set()
            log.info(
                "initial configuration loaded: %s",
                ", ".join(f"{m.name} {m.available_versions()}" for m in self.models.values())
                or "no models",
            )
            await trio.sleep_forever()

    async def unload_all(self) -> None:
        """Unload every version and wait for them to drain (used at shutdown)."""
        for model in self.models.values():
            for mv in model.versions.values():
                mv.unload()

    def get_model(self, name: str) -> Model:
        model = self.models.get(name)
        if model is None:
            raise NotFound(MODEL_NOT_FOUND)
        return model

    def get_version(self, name: str, version: int | None) -> ModelVersion:
        """The requested version in whatever state, for status and metadata calls."""
        model = self.get_model(name)
        if version is None or version == 0:
            mv = model.default_version()
            if mv is None:
                raise NotFound(VERSION_NOT_FOUND)
            return mv
        mv = model.versions.get(version)
        if mv is None:
            raise NotFound(VERSION_NOT_FOUND)
        return mv

    async def get_available(self, name: str, version: int | None) -> ModelVersion:
        """The version to infer with; waits up to LOADING_WAIT_S for a LOADING one."""
        model = self.get_model(name)
        with trio.move_on_after(LOADING_WAIT_S):
            while True:
                if version is None or version == 0:
                    mv = model.default_version()
                    if mv is not None:
                        return mv
                    loading = [
                        v
                        for v in model.versions.values()
                        if v.state <= ModelState.LOADING and v.error_code == "OK"
                    ]
                    if not loading:
                        raise NotFound(VERSION_NOT_FOUND)
                    await loading[0].wait_changed()
                    continue
                mv = model.versions.get(version)
                if mv is None:
                    raise NotFound(VERSION_NOT_FOUND)
                if mv.available:
                    return mv
                if mv.state >= ModelState.UNLOADING:
                    raise NotFound(VERSION_RETIRED)
                if mv.error_code != "OK":
                    raise ModelNotLoadedYet(VERSION_NOT_LOADED_YET)
                await mv.wait_changed()
        raise ModelNotLoadedYet(VERSION_NOT_LOADED_YET)
