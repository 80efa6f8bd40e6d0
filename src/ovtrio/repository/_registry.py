"""Models, their versions and the states OVMS reports for them.

Every version is served by one task in the registry's nursery (``ModelVersion.serve``): it
compiles the model in a worker thread, runs the version's batcher in its own nursery while
AVAILABLE, and on unload waits for in-flight and queued requests before it ends.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trio

from ..batching import Batcher, BatcherStatistics, why_not_batchable
from ..config import BatchingConfig, ConfigError, ModelConfig, parse_config_json
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

ObserverFactory = Callable[[str, int], Callable[[str, float], None]]
"""(model name, version) -> the runtime's metrics hook."""

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
        self._check_rows = False
        """Outputs are batch-first (a batchable model served without the batcher): answers
        are checked to have as many rows as the inputs."""
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
    def in_flight(self) -> int:
        """Requests holding this version (queued or running)."""
        return self._in_flight

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
            if self.model.observer_factory is not None:
                self.compiled.observer = self.model.observer_factory(cfg.name, self.version)
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
        self._check_rows = not why_not_batchable(self.compiled)
        if batcher is not None:
            try:
                await batcher.warm_up()
            except OvtrioError as exc:
                log.error("%s version %d failed its warm-up: %s", cfg.name, self.version, exc)
                self.compiled.close()
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
            if self.compiled is not None:
                self.compiled.close()
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

    async def infer(
        self, arrays: Sequence[np.ndarray[Any, Any]], *, inline: bool = False
    ) -> list[np.ndarray[Any, Any]]:
        """One request's inference; ``inline``: see ``CompiledModel.infer``."""
        started = time.perf_counter_ns()
        ok = False
        try:
            async with self.use() as compiled:
                if self.batcher is not None:
                    result = await self.batcher.submit(arrays, inline=inline)
                else:
                    limit = self.model.config.batching.max_queue_size
                    if compiled.waiting >= limit:
                        self.stats.rejected += 1
                        raise ResourceExhausted(
                            f"Model {self.model.name} is overloaded: its queue of {limit} "
                            "requests is full; retry later"
                        )
                    rows = None
                    if self._check_rows:
                        # against OpenVINO's stale shapes after a cancel (runtime module doc),
                        # as for the batcher's batches; only when the inputs agree on the batch
                        sizes = {
                            a.shape[ax]
                            for a, ax in zip(arrays, compiled.batch_index, strict=True)
                            if ax is not None
                        }
                        rows = sizes.pop() if len(sizes) == 1 else None
                    result = await compiled.infer(arrays, expect_rows=rows, inline=inline)
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
            inferences_abandoned=compiled.abandoned if compiled else 0,
            repair_inferences=compiled.repairs if compiled else 0,
            inferences_inline=compiled.inlined if compiled else 0,
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
    """Requests waiting for a free infer request (without a batcher)."""
    rejected: int
    """Requests refused because the queue was full (without a batcher)."""
    batcher: BatcherStatistics | None


class Model:
    """A named model from the config, with its versions."""

    def __init__(
        self, config: ModelConfig, observer_factory: ObserverFactory | None = None
    ) -> None:
        self.config = config
        self.observer_factory = observer_factory
        """Metrics hook handed to each version's compiled model (None: no metrics)."""
        self.versions: dict[int, ModelVersion] = {}
        self.failed: set[int] = set()
        """Versions that failed to load; retried only after their folder disappears."""
        self.retired = False
        """Removed from the config (or unloaded through the API): versions END, no reload."""

    @property
    def name(self) -> str:
        return self.config.name

    def default_version(self) -> ModelVersion | None:
        """The highest AVAILABLE version."""
        ready = [v for v in self.versions.values() if v.available]
        return max(ready, key=lambda v: v.version) if ready else None

    def available_versions(self) -> list[int]:
        return sorted(v.version for v in self.versions.values() if v.available)

    def _live(self, number: int) -> bool:
        mv = self.versions.get(number)
        return mv is not None and mv.error_code == "OK" and mv.state <= ModelState.AVAILABLE

    async def sync(self, nursery: trio.Nursery, limiter: trio.CapacityLimiter) -> bool:
        """Make the loaded versions match the policy and the folders on disk.

        New versions load first (a version that fails is reported in its status, and the
        policy falls back to the next one); only then are the versions no longer wanted
        unloaded, each after its in-flight and queued requests finish. Returns whether
        anything changed.
        """
        if self.retired:
            return False
        on_disk = await trio.to_thread.run_sync(scan_versions, self.config.base_path)
        if not on_disk and not self.versions:
            log.error("%s: no version folders under %s", self.name, self.config.base_path)
        changed = False
        for number in sorted(self.failed - set(on_disk)):  # folder gone: forget the failure
            self.failed.discard(number)
            mv = self.versions.get(number)
            if mv is not None and mv.state is not ModelState.END:
                mv._set_state(ModelState.END)
                changed = True
        while True:
            candidates = sorted(v for v in on_disk if v not in self.failed)
            wanted = set(self.config.version_policy.select(candidates))
            todo = [v for v in sorted(wanted, reverse=True) if not self._live(v)]
            if not todo:
                break
            for number in todo:
                mv = ModelVersion(self, number, on_disk[number])
                self.versions[number] = mv
                changed = True
                if not await nursery.start(mv.serve, limiter):
                    self.failed.add(number)
        for number, mv in sorted(self.versions.items()):
            if number not in wanted and self._live(number):
                mv.unload()
                changed = True
        return changed

    def retire(self) -> None:
        """Unload every version (each drains first); the model stays listed, versions END."""
        self.retired = True
        for mv in self.versions.values():
            if mv.state is ModelState.LOADING and mv.error_code != "OK":
                mv._set_state(ModelState.END)
            mv.unload()


class ModelRegistry:
    """Name -> Model. ``run`` owns every version's task and applies config/folder changes.

    Args:
        models: the initial configuration.
        config_path: config.json to re-read on polls and reloads (None: single-model mode).
        batching_defaults: server-wide batching settings config.json entries override.
        poll_wait_s: seconds between polls of the folders and the config file; 0 = off.
    """

    def __init__(
        self,
        models: Sequence[ModelConfig],
        *,
        config_path: Path | None = None,
        batching_defaults: BatchingConfig | None = None,
        poll_wait_s: float = 0,
        observer_factory: ObserverFactory | None = None,
    ) -> None:
        self.observer_factory = observer_factory
        self.models: dict[str, Model] = {m.name: Model(m, observer_factory) for m in models}
        self.ready = False
        """True once the initial configuration was processed (OVMS' server readiness)."""
        self.loaded = trio.Event()
        """Set once the initial configuration was processed."""
        self.config_path = config_path
        self.batching_defaults = batching_defaults or BatchingConfig()
        self.poll_wait_s = poll_wait_s
        self.config_error = ""
        """The last config.json problem (empty when the file in use is valid)."""
        self._config_text: str | None = None
        self._nursery: trio.Nursery | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._lock = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            if self.config_path is not None:
                try:
                    self._config_text = await trio.to_thread.run_sync(self._read_config_text)
                except OSError:
                    self._config_text = None
            async with self._lock, trio.open_nursery() as loaders:
                for model in self.models.values():
                    loaders.start_soon(model.sync, nursery, self._limiter)
            self.ready = True
            self.loaded.set()
            log.info(
                "initial configuration loaded: %s",
                ", ".join(f"{m.name} {m.available_versions()}" for m in self.models.values())
                or "no models",
            )
            if self.poll_wait_s <= 0:
                await trio.sleep_forever()
            while True:
                await trio.sleep(self.poll_wait_s)
                await self.poll()

    def _read_config_text(self) -> str:
        assert self.config_path is not None
        return self.config_path.read_text(encoding="utf-8")

    async def poll(self) -> bool:
        """One poll: apply a changed config.json (if valid), then sync every model's folders."""
        changed = False
        async with self._lock:
            if self.config_path is not None:
                try:
                    text = await trio.to_thread.run_sync(self._read_config_text)
                except OSError as exc:
                    self._config_problem(f"{self.config_path}: cannot read: {exc}")
                    text = None
                if text is not None and text != self._config_text:
                    try:
                        parsed = parse_config_json(text, self.config_path, self.batching_defaults)
                    except ConfigError as exc:
                        self._config_problem(str(exc))
                    else:
                        self._config_text = text
                        self.config_error = ""
                        log.info("config file changed: applying %s", self.config_path)
                        changed |= await self._apply(parsed.models)
            changed |= await self._sync_all()
        return changed

    async def reload(self) -> bool:
        """``POST /v1/config/reload``: re-read config.json now and sync every model.

        Raises ConfigError (the running configuration stays) if the file is unreadable or
        invalid.
        """
        async with self._lock:
            changed = False
            if self.config_path is not None:
                try:
                    text = await trio.to_thread.run_sync(self._read_config_text)
                except OSError as exc:
                    raise ConfigError(f"{self.config_path}: cannot read: {exc}") from None
                parsed = parse_config_json(text, self.config_path, self.batching_defaults)
                self._config_text, self.config_error = text, ""
                changed |= await self._apply(parsed.models)
            changed |= await self._sync_all()
            return changed

    def _config_problem(self, message: str) -> None:
        if message != self.config_error:
            log.error("config not applied, the running configuration stays: %s", message)
        self.config_error = message

    async def _sync_all(self) -> bool:
        assert self._nursery is not None
        changed = False
        for model in list(self.models.values()):
            changed |= await model.sync(self._nursery, self._limiter)
        return changed

    async def _apply(self, configs: Sequence[ModelConfig]) -> bool:
        """Apply a new model list: add, retire, and reload changed models without a gap."""
        assert self._nursery is not None
        wanted = {c.name: c for c in configs}
        changed = False
        for name, model in list(self.models.items()):
            if name not in wanted and not model.retired:
                log.info("%s: removed from the config; unloading", name)
                model.retire()
                changed = True
        for name, cfg in wanted.items():
            old = self.models.get(name)
            if old is not None and not old.retired and old.config == cfg:
                continue
            new = Model(cfg, self.observer_factory)
            if old is None or old.retired:
                log.info("%s: added to the config; loading", name)
                self.models[name] = new
                await new.sync(self._nursery, self._limiter)
                changed = True
                continue
            # Changed settings: load the new instance while the old one keeps serving.
            log.info("%s: settings changed; reloading (the current instance still serves)", name)
            await new.sync(self._nursery, self._limiter)
            if new.default_version() is None and old.default_version() is not None:
                log.error("%s: the new settings did not load; the previous instance stays", name)
                new.retire()
                continue
            self.models[name] = new
            old.retire()
            changed = True
        return changed

    async def load_model(self, name: str) -> None:
        """Repository extension ``load``: (re)load a model of the config."""
        async with self._lock:
            model = self.get_model(name)
            assert self._nursery is not None
            if model.retired:
                fresh = Model(model.config, self.observer_factory)
                self.models[name] = fresh
                model = fresh
            await model.sync(self._nursery, self._limiter)

    async def unload_model(self, name: str) -> None:
        """Repository extension ``unload``: unload every version of a model."""
        async with self._lock:
            self.get_model(name).retire()

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
        # the usual case first, without a cancel scope (a deadline per request costs)
        if version is None or version == 0:
            mv = model.default_version()
        else:
            mv = model.versions.get(version)
            mv = mv if mv is not None and mv.available else None
        if mv is not None:
            return mv
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
