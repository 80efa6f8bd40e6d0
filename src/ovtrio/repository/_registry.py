"""The registry of models: which versions load and unload as the config and folders change,
and which version serves a request.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from ..config import (
    IGNORED_MODEL_KEYS,
    BatchingConfig,
    ConfigError,
    ModelConfig,
    parse_config_json,
)
from ..errors import (
    MODEL_NOT_FOUND,
    VERSION_NOT_FOUND,
    VERSION_NOT_LOADED_YET,
    VERSION_RETIRED,
    ModelNotLoadedYet,
    NotFound,
)
from ..load import Load
from ..pipelines import LibraryConfig, PipelineConfig
from ._pipelines import PipelineRegistry
from ._storage import (
    LocalStorage,
    Storage,
    StorageError,
    is_remote,
    list_versions,
    open_storage,
)
from ._version import ModelState, ModelVersion

__all__ = ["Model", "ModelRegistry"]

log = logging.getLogger(__name__)

ObserverFactory = Callable[[str, int], Callable[[str, float], None]]
"""(model name, version) -> the runtime's metrics hook."""

LOADING_WAIT_S = 10.0
"""How long an inference waits for a LOADING version (OVMS: 10 s)."""


class Model:
    """A named model from the config, with its versions."""

    def __init__(
        self,
        config: ModelConfig,
        observer_factory: ObserverFactory | None = None,
        load: Load | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.config = config
        self.storage = storage or open_storage(
            config.base_path, Path(tempfile.gettempdir()) / "ovtrio-models"
        )
        """Where the version folders are (``open_storage`` of ``config.base_path``)."""
        self.remote = not isinstance(self.storage, LocalStorage)
        """The versions are downloaded to a local cache (object storage)."""
        self.storage_error = ""
        """Why the last listing of ``base_path`` failed (empty when it worked)."""
        self.observer_factory = observer_factory
        """Metrics hook handed to each version's compiled model (None: no metrics)."""
        self.load = load
        """The server's requests, handed to each version's compiled model (None: inferences
        never run inline)."""
        self.versions: dict[int, ModelVersion] = {}
        self.failed: set[int] = set()
        """Versions that failed to load; retried only after their folder disappears."""
        self.retired = False
        """Removed from the config (or unloaded through the API): versions END, no reload."""
        for key in config.ignored_keys:
            log.warning(
                "%s.config.%s is accepted for OVMS compatibility but has no effect: %s",
                config.source,
                key,
                IGNORED_MODEL_KEYS[key],
            )

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
        return mv is not None and not mv.failed and mv.state <= ModelState.AVAILABLE

    async def sync(self, nursery: trio.Nursery, limiter: trio.CapacityLimiter) -> bool:
        """Make the loaded versions match the policy and the version folders.

        New versions load first (a version that fails is reported in its status, and the
        policy falls back to the next one); only then are the versions no longer wanted
        unloaded, each after its in-flight and queued requests finish. A repository that
        cannot be listed changes nothing (``storage_error`` says why; the next poll retries).
        Returns whether anything changed.
        """
        if self.retired:
            return False
        try:
            on_disk = await list_versions(self.storage)
        except StorageError as exc:
            if exc.reason != self.storage_error:
                log.error("%s: %s (loaded versions keep serving)", self.name, exc.reason)
            self.storage_error = exc.reason
            return False
        if self.storage_error:
            log.info("%s: %s can be listed again", self.name, self.storage.url)
            self.storage_error = ""
        if not on_disk and not self.versions:
            log.error("%s: no version folders under %s", self.name, self.config.base_path)
        changed = False
        for number in sorted(self.failed - set(on_disk)):  # folder gone: forget the failure
            self.failed.discard(number)
            mv = self.versions.get(number)
            if mv is not None and mv.state is not ModelState.END:
                mv._set_state(ModelState.END)
                changed = True
        if self.remote:
            await self._forget_changed_failures()
        retry: set[int] = set()  # failed to download: skipped now, tried again next poll
        while True:
            candidates = [v for v in on_disk if v not in self.failed and v not in retry]
            wanted = set(self.config.version_policy.select(candidates))
            todo = [v for v in sorted(wanted, reverse=True) if not self._live(v)]
            if not todo:
                break
            for number in todo:
                mv = ModelVersion(self, number, self.storage.local_path(number))
                self.versions[number] = mv
                changed = True
                if not await nursery.start(mv.serve, limiter):
                    (retry if mv.retry else self.failed).add(number)
        for number, mv in sorted(self.versions.items()):
            if number not in wanted and self._live(number):
                mv.unload()
                changed = True
        return changed

    async def _forget_changed_failures(self) -> None:
        """Remote versions that failed to load load again once their files change (an upload
        in progress when the version was first listed)."""
        for number in sorted(self.failed):
            try:
                again = await trio.to_thread.run_sync(
                    self.storage.changed, number, abandon_on_cancel=True
                )
            except StorageError:
                continue  # the listing failed: the next poll asks again
            if again:
                log.info("%s version %d: its files changed; loading it again", self.name, number)
                self.failed.discard(number)

    def retire(self) -> None:
        """Unload every version (each drains first); the model stays listed, versions END."""
        self.retired = True
        for mv in self.versions.values():
            if mv.failed:
                mv._set_state(ModelState.END)
            mv.unload()

    async def close_storage(self) -> None:
        """Once every version has ended: remove the model's cached versions, close the client."""
        if not self.remote:
            return
        for mv in list(self.versions.values()):
            while mv.state is not ModelState.END and not mv.failed:
                await mv.wait_changed()
        await trio.to_thread.run_sync(self._clear_storage)

    def _clear_storage(self) -> None:
        self.storage.clear()
        self.storage.close()


class ModelRegistry:
    """Name -> Model. ``run`` owns every version's task and applies config/folder changes.

    Args:
        models: the initial configuration.
        config_path: config.json to re-read on polls and reloads (None: single-model mode).
        batching_defaults: server-wide batching settings config.json entries override.
        poll_wait_s: seconds between polls of the folders and the config file; 0 = off.
        observer_factory: each version's metrics hook (None: no metrics).
        load: the server's requests, which the runtime reads (None: a new one).
        pipelines, libraries: config.json's pipelines and custom node libraries.
    """

    def __init__(
        self,
        models: Sequence[ModelConfig],
        *,
        config_path: Path | None = None,
        batching_defaults: BatchingConfig | None = None,
        poll_wait_s: float = 0,
        observer_factory: ObserverFactory | None = None,
        load: Load | None = None,
        pipelines: Sequence[PipelineConfig] = (),
        libraries: Sequence[LibraryConfig] = (),
    ) -> None:
        self.observer_factory = observer_factory
        self.pipelines = PipelineRegistry(pipelines, libraries)
        """Pipelines beside the models, validated after every change to the models."""
        self.load = load or Load()
        """The server's requests (transports and the data plane keep it)."""
        self.cache_root: Path | None = None
        """The temporary folder remote models download their versions to (made on first use,
        removed when ``run`` ends); each Model instance has a folder of its own there."""
        self._instances = 0
        self.models: dict[str, Model] = {m.name: self._new_model(m) for m in models}
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

    def _new_model(self, config: ModelConfig) -> Model:
        if is_remote(str(config.base_path)):
            storage = open_storage(config.base_path, self._model_cache(config.name))
        else:
            storage = LocalStorage(Path(config.base_path))
        return Model(config, self.observer_factory, self.load, storage)

    def _model_cache(self, name: str) -> Path:
        """A cache folder per Model instance: a reloaded model never shares its predecessor's."""
        self._instances += 1
        if self.cache_root is None:
            self.cache_root = Path(tempfile.mkdtemp(prefix="ovtrio-models-"))
        return self.cache_root / f"{name}.{self._instances}"

    def _retire(self, model: Model) -> None:
        """``Model.retire``, then its cached versions are removed once they have ended."""
        assert self._nursery is not None
        model.retire()
        self._nursery.start_soon(model.close_storage)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(task_status)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._clear_caches)

    def _clear_caches(self) -> None:
        """At the end: every remote model's cache and client, then the cache root."""
        for model in self.models.values():
            if model.remote:
                model._clear_storage()
        if self.cache_root is not None:
            shutil.rmtree(self.cache_root, ignore_errors=True)

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
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
            async with self._lock:
                await self.pipelines.refresh(self.models)
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
                        self.pipelines.configure(parsed.pipelines, parsed.libraries)
            changed |= await self._sync_all()
            changed |= await self.pipelines.refresh(self.models)
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
                self.pipelines.configure(parsed.pipelines, parsed.libraries)
            changed |= await self._sync_all()
            changed |= await self.pipelines.refresh(self.models)
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
                self._retire(model)
                changed = True
        for name, cfg in wanted.items():
            old = self.models.get(name)
            if old is not None and not old.retired and old.config == cfg:
                continue
            new = self._new_model(cfg)
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
                self._retire(new)
                continue
            self.models[name] = new
            self._retire(old)
            changed = True
        return changed

    async def load_model(self, name: str) -> None:
        """Repository extension ``load``: (re)load a model of the config."""
        async with self._lock:
            model = self.get_model(name)
            assert self._nursery is not None
            if model.retired:
                fresh = self._new_model(model.config)
                self.models[name] = fresh
                model = fresh
            await model.sync(self._nursery, self._limiter)

    async def unload_model(self, name: str) -> None:
        """Repository extension ``unload``: unload every version of a model."""
        async with self._lock:
            self._retire(self.get_model(name))

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
                    loading = [v for v in model.versions.values() if v.loading]
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
                if mv.failed:
                    raise ModelNotLoadedYet(VERSION_NOT_LOADED_YET)
                await mv.wait_changed()
        raise ModelNotLoadedYet(VERSION_NOT_LOADED_YET)
