"""Pipelines beside the models: their libraries, their validation against the loaded models,
their status, and the per-request run through the models' own schedulers.

``PipelineRegistry.refresh`` runs after every change the model registry applies (start-up,
poll, reload): it loads the custom node libraries the config names, then validates each
pipeline whose inputs to validation changed (its config, the libraries it uses, the metadata
of the model versions it uses). A pipeline that fails validation stays registered, reported
``LOADING`` / ``FAILED_PRECONDITION`` with OVMS' message, and its requests are refused; one
named like a model is not registered at all. A new definition replaces the old one at once:
requests in flight finish with the definition they started with, whose custom nodes are
closed when the last of them leaves.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import trio

from ..errors import (
    InvalidArgument,
    ModelNotLoadedYet,
    NodeLibraryFailed,
    NotFound,
    PipelineInvalid,
)
from ..pipelines import (
    CUSTOM,
    DL_MODEL,
    CustomNodeLibrary,
    ExecutionPlan,
    LibraryConfig,
    NodeConfig,
    NodeMeta,
    PipelineConfig,
    TensorMeta,
    ThreadedNode,
    check_inputs,
    execute,
    initialize_node,
    validate,
)
from ..tensors import Datatype, TensorSpec, datatype
from ._version import ModelState, ModelVersion, VersionStatistics, _Counters

if TYPE_CHECKING:
    from ._registry import Model

__all__ = ["NodeRunObserver", "Pipeline", "PipelineDefinition", "PipelineRegistry", "run_pipeline"]

log = logging.getLogger(__name__)

PIPELINE_VERSION: Final = 1
"""Pipelines are unversioned: OVMS reports (and accepts any version as) version 1."""
NOT_LOADED_YET: Final = "Pipeline is not loaded yet"
RETIRED: Final = "Pipeline is retired"

INVALID_DATATYPE: Final = Datatype(
    kserve="INVALID",
    numpy=np.dtype(object),
    ov="undefined",
    tfs=0,
    triton_config="TYPE_INVALID",
    kserve_contents="",
    tfs_val="",
)
"""The datatype metadata reports for a request input passed straight to the response."""

NodeRunObserver = Callable[[str, int, bool, float], None]
"""(model name, version, succeeded, seconds): one DL node run, for the model's metrics."""


def _spec(name: str, meta: TensorMeta) -> TensorSpec:
    kind = INVALID_DATATYPE if meta.datatype == "INVALID" else datatype(meta.datatype)
    ranges = meta.ranges or tuple((0, -1) if d < 0 else (d, d) for d in meta.shape)
    return TensorSpec(name, kind, meta.shape, ranges)


class PipelineDefinition:
    """One validated pipeline: its plan and its initialized custom (and Python) nodes."""

    version: Final = PIPELINE_VERSION

    def __init__(self, plan: ExecutionPlan, nodes: dict[str, ThreadedNode], key: object) -> None:
        self.counters = _Counters()
        """The pipeline's request counters (its Pipeline shares them with each definition)."""
        self.plan = plan
        self.nodes = nodes
        self.key = key
        """What validation saw (config, libraries, model metadata): equal key, same result."""
        self.inputs = tuple(_spec(n, m) for n, m in plan.inputs_meta.items())
        self.outputs = tuple(_spec(n, m) for n, m in plan.outputs_meta.items())
        self._holders = 0
        self._retired = False

    @property
    def name(self) -> str:
        return self.plan.pipeline

    def shard_image_spec(self, name: str) -> TensorSpec | None:
        """For a 5-D input under the request's own demultiplexer (``[shards, 1, H, W, C]``):
        the 4-D spec its encoded images decode to, one image per shard (OVMS: ``[N, 1, H, W,
        C]``, the 1 added after decoding). None for any other input."""
        if self.plan.demultiply_count is None:
            return None
        spec = next((s for s in self.inputs if s.name == name), None)
        if spec is None or len(spec.shape) != 5:
            return None
        ranges = spec.ranges[:1] + spec.ranges[2:] if spec.ranges else ()
        return replace(spec, shape=spec.shape[:1] + spec.shape[2:], ranges=ranges)

    @contextmanager
    def use(self) -> Iterator[None]:
        """Hold the definition for one request: its nodes stay open until the last leaves."""
        self._holders += 1
        try:
            yield
        finally:
            self._holders -= 1
            if self._retired and self._holders == 0:
                self._close()

    def retire(self) -> None:
        """Replaced or removed: close the nodes now, or when the last request leaves."""
        self._retired = True
        if self._holders == 0:
            self._close()

    def _close(self) -> None:
        for node in self.nodes.values():
            node.close()


class Pipeline:
    """A configured pipeline: its current definition (None while invalid) and its status."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.definition: PipelineDefinition | None = None
        self.state = ModelState.LOADING
        self.error_code = "OK"
        self.error_message = ""
        self.failure: PipelineInvalid | None = None
        self.key: object = None
        """What the last validation saw, valid or not."""
        self.counters = _Counters()
        """Requests run on any of its definitions (statistics extension)."""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def available(self) -> bool:
        return self.state is ModelState.AVAILABLE and self.definition is not None

    def definition_for_request(self) -> PipelineDefinition:
        """The definition a request runs with.

        Raises:
            ModelNotLoadedYet: invalid (OVMS: PIPELINE_DEFINITION_NOT_LOADED_YET).
            NotFound: removed from the config (PIPELINE_DEFINITION_NOT_LOADED_ANYMORE).
        """
        if self.state is ModelState.END:
            raise NotFound(RETIRED)
        if self.definition is None:
            raise ModelNotLoadedYet(NOT_LOADED_YET)
        return self.definition

    def set_definition(
        self, definition: PipelineDefinition | None, failure: PipelineInvalid | None
    ) -> None:
        """A validation's outcome: a definition (AVAILABLE) or a failure (LOADING /
        FAILED_PRECONDITION); the previous definition retires."""
        old = self.definition
        self.definition = definition
        self.failure = failure
        if definition is not None:
            definition.counters = self.counters
            self.state, self.error_code, self.error_message = ModelState.AVAILABLE, "OK", ""
            log.info("pipeline %s: AVAILABLE", self.name)
        elif failure is not None:
            self.state, self.error_code = ModelState.LOADING, "FAILED_PRECONDITION"
            self.error_message = failure.message
            log.error("pipeline %s failed validation: %s", self.name, failure.message)
        if old is not None and old is not definition:
            old.retire()

    def statistics(self) -> VersionStatistics:
        """Its requests as the statistics extension reports a model version's (version 1;
        no inference or batch counters of its own: its model nodes count in their models)."""
        c = self.counters
        return VersionStatistics(
            version=PIPELINE_VERSION,
            success_count=c.success_count,
            success_ns=c.success_ns,
            fail_count=c.fail_count,
            fail_ns=c.fail_ns,
            last_inference_ms=c.last_inference_ms,
            inferences_completed=0,
            inferences_cancelled=0,
            inferences_abandoned=0,
            repair_inferences=0,
            inferences_inline=0,
            compute_ns=0,
            nireq=0,
            queue_length=0,
            rejected=0,
            batcher=None,
        )

    def index_entry(self) -> dict[str, str]:
        """Its row of Triton's repository index."""
        state = "READY" if self.available else "UNAVAILABLE"
        reason = RETIRED if self.state is ModelState.END else self.error_message
        return {
            "name": self.name,
            "version": str(PIPELINE_VERSION),
            "state": state,
            "reason": reason,
        }

    def retire(self) -> None:
        self.set_definition(None, None)
        self.state, self.error_code, self.error_message = ModelState.END, "OK", ""
        log.info("pipeline %s: removed from the config", self.name)


@dataclass(frozen=True, slots=True)
class _Library:
    config: LibraryConfig
    library: CustomNodeLibrary | None


def _model_meta(model: Model, version: int | None) -> tuple[int, NodeMeta] | None:
    """(version number, metadata) of the version a node names; None if not available."""
    if model.retired:
        return None
    mv = model.default_version() if version is None else model.versions.get(version)
    if mv is None or not mv.available:
        return None
    meta = NodeMeta(
        {s.name: TensorMeta.of(s) for s in mv.inputs},
        {s.name: TensorMeta.of(s) for s in mv.outputs},
        model.config.auto,
    )
    return mv.version, meta


class PipelineRegistry:
    """Name -> Pipeline, and the custom node libraries they use."""

    def __init__(
        self, pipelines: Sequence[PipelineConfig] = (), libraries: Sequence[LibraryConfig] = ()
    ) -> None:
        self.pipelines: dict[str, Pipeline] = {}
        self._configs: tuple[PipelineConfig, ...] = tuple(pipelines)
        self._library_configs: tuple[LibraryConfig, ...] = tuple(libraries)
        self._libraries: dict[str, _Library] = {}
        self._opened: list[CustomNodeLibrary] = []
        """Every library opened, in the config or not any more: shutdown unloads them."""
        self._nodes: list[ThreadedNode] = []
        """Every node initialized and not yet released: shutdown waits for them."""
        self.limiter = trio.CapacityLimiter(max(2, os.cpu_count() or 1))
        """Worker threads custom and Python nodes run in, all pipelines together."""

    def configure(
        self, pipelines: Sequence[PipelineConfig], libraries: Sequence[LibraryConfig]
    ) -> None:
        """A new config file: the next ``refresh`` applies it."""
        self._configs = tuple(pipelines)
        self._library_configs = tuple(libraries)

    def get(self, name: str) -> Pipeline | None:
        return self.pipelines.get(name)

    # -- loading ------------------------------------------------------------------------------

    async def refresh(self, models: Mapping[str, Model]) -> bool:
        """Load changed libraries, then (re)validate the pipelines whose inputs changed and
        retire the ones gone from the config. Returns whether anything changed."""
        await self._load_libraries()
        changed = False
        wanted = {c.name: c for c in self._configs}
        for name, pipeline in list(self.pipelines.items()):
            if name not in wanted and pipeline.state is not ModelState.END:
                pipeline.retire()
                changed = True
        taken = frozenset(models)  # a retired model keeps its name, as in OVMS
        for config in self._configs:
            changed |= await self._refresh_one(config, models, taken)
        return changed

    async def _load_libraries(self) -> None:
        wanted = {c.name: c for c in self._library_configs}
        for name in list(self._libraries):
            if name not in wanted:
                log.info("custom node library %s: removed from the config", name)
                del self._libraries[name]
        for name, config in wanted.items():
            current = self._libraries.get(name)
            if current is not None and current.config.path == config.path:
                continue
            library = await self._open(config)
            if library is not None:
                self._opened.append(library)
            self._libraries[name] = _Library(config, library)

    @staticmethod
    async def _open(config: LibraryConfig) -> CustomNodeLibrary | None:
        """Open a library; failures are logged only (its pipelines then fail validation)."""
        if config.path_refused:
            log.error(
                "custom node library %s: base_path %s contains '..'; not loaded",
                config.name,
                config.base_path,
            )
            return None
        try:
            library = await trio.to_thread.run_sync(CustomNodeLibrary, config.path)
        except NodeLibraryFailed as exc:
            log.error("custom node library %s: %s", config.name, exc.message)
            return None
        log.info("custom node library %s: loaded %s", config.name, config.path)
        return library

    def _key(
        self, config: PipelineConfig, metas: Mapping[tuple[str, int | None], object]
    ) -> object:
        libraries = tuple(
            (node.library_name, id(self._libraries.get(node.library_name or "")))
            for node in config.nodes
            if node.kind == CUSTOM
        )
        return (config, libraries, tuple(metas.items()))

    async def _refresh_one(
        self, config: PipelineConfig, models: Mapping[str, Model], taken: frozenset[str]
    ) -> bool:
        metas: dict[tuple[str, int | None], tuple[int, NodeMeta] | None] = {}
        for node in config.nodes:
            if node.kind == DL_MODEL and node.model_name is not None:
                model = models.get(node.model_name)
                found = None if model is None else _model_meta(model, node.version)
                metas[(node.model_name, node.version)] = found
        key = (self._key(config, metas), config.name in taken)
        pipeline = self.pipelines.get(config.name)
        if pipeline is not None and pipeline.state is not ModelState.END and pipeline.key == key:
            return False
        libraries = {name: lib.library for name, lib in self._libraries.items() if lib.library}

        def lookup(name: str, version: int | None) -> NodeMeta | None:
            found = metas.get((name, version))
            return None if found is None else found[1]

        try:
            plan, nodes = await trio.to_thread.run_sync(_validate, config, lookup, libraries, taken)
        except PipelineInvalid as exc:
            if exc.code == "PIPELINE_NAME_OCCUPIED":
                log.error("pipeline %s: %s; not registered", config.name, exc.message)
                if pipeline is not None:
                    pipeline.retire()
                    del self.pipelines[config.name]
                return pipeline is not None
            if pipeline is None or pipeline.state is ModelState.END:
                pipeline = self.pipelines[config.name] = Pipeline(config)
            pipeline.config = config
            pipeline.key = key
            pipeline.set_definition(None, exc)
            return True
        if pipeline is None or pipeline.state is ModelState.END:
            pipeline = self.pipelines[config.name] = Pipeline(config)
        pipeline.config = config
        pipeline.key = key
        self._nodes = [n for n in self._nodes if not n.shut_down] + list(nodes.values())
        pipeline.set_definition(PipelineDefinition(plan, nodes, key), None)
        return True

    async def shutdown(self, deadline: float) -> None:
        """Server shutdown, once no request runs: close every node, wait until the calls still
        running in threads (abandoned by cancelled requests) return, until ``deadline`` (trio
        time), so that each node is deinitialized; then unload the libraries no live node
        uses. A node whose call outlives the deadline keeps its library loaded."""
        for pipeline in self.pipelines.values():
            if pipeline.definition is not None:
                pipeline.definition.retire()
        for node in self._nodes:
            node.close()
        nodes = [node for node in self._nodes if not node.shut_down]
        if nodes and deadline > trio.current_time():
            seconds = deadline - trio.current_time()
            await trio.to_thread.run_sync(_wait_shut_down, nodes, seconds, abandon_on_cancel=True)
        running = [node.name for node in self._nodes if not node.shut_down]
        if running:
            log.warning("custom nodes still running at shutdown, not deinitialized: %s", running)
        closed = sum(library.close() for library in self._opened)
        if self._nodes or self._opened:
            log.info("custom nodes deinitialized; %d node libraries unloaded", closed)


def _wait_shut_down(nodes: Sequence[ThreadedNode], seconds: float) -> None:
    end = time.monotonic() + seconds
    for node in nodes:
        node.wait_shut_down(end - time.monotonic())


def _validate(
    config: PipelineConfig,
    models: Callable[[str, int | None], NodeMeta | None],
    libraries: Mapping[str, CustomNodeLibrary],
    taken: frozenset[str],
) -> tuple[ExecutionPlan, dict[str, ThreadedNode]]:
    """Validate in a worker thread (custom node libraries initialize, metadata calls block)."""
    created: dict[str, ThreadedNode] = {}

    def custom_nodes(node: NodeConfig) -> NodeMeta | None:
        instance = initialize_node(node, libraries)
        if instance is None:
            return None
        created[node.name] = instance
        return instance.metadata()

    try:
        plan = validate(config, models=models, custom_nodes=custom_nodes, taken_names=taken)
    except PipelineInvalid:
        for instance in created.values():
            instance.close()
        raise
    except Exception as exc:  # a library or a bug: only this pipeline fails
        for instance in created.values():
            instance.close()
        log.exception("pipeline %s: validation failed unexpectedly", config.name)
        raise PipelineInvalid("INTERNAL_ERROR", f"Internal server error - {exc}") from exc
    return plan, created


# -- requests ---------------------------------------------------------------------------------


async def run_pipeline(
    definition: PipelineDefinition,
    inputs: Mapping[str, np.ndarray[Any, Any]],
    *,
    models: Callable[[str, int | None], Awaitable[ModelVersion]],
    limiter: trio.CapacityLimiter,
    observe: NodeRunObserver | None = None,
) -> dict[str, np.ndarray[Any, Any]]:
    """Run one request on ``definition``: DL model nodes through their version's scheduler
    (``models``: the registry's ``get_available``), the others in worker threads."""

    async def run_model(
        node: NodeConfig, arrays: Mapping[str, np.ndarray[Any, Any]]
    ) -> dict[str, np.ndarray[Any, Any]]:
        assert node.model_name is not None
        mv = await models(node.model_name, node.version)
        check_inputs(node.name, {s.name: TensorMeta.of(s) for s in mv.inputs}, arrays)
        ordered = [np.ascontiguousarray(arrays[s.name]) for s in mv.inputs]
        sizes = mv.unequal_batch_sizes(ordered)
        if sizes is not None:
            raise InvalidArgument(
                f"Invalid input batch size - Node: {node.name} the inputs of one request must "
                f"share their batch size; got {sizes}"
            )
        started = time.perf_counter()
        ok = False
        try:
            results = await mv.infer(ordered)
            ok = True
        finally:
            if observe is not None:
                observe(node.model_name, mv.version, ok, time.perf_counter() - started)
        return {s.name: a for s, a in zip(mv.outputs, results, strict=True)}

    started = time.perf_counter_ns()
    ok = False
    try:
        with definition.use():
            outputs = await execute(
                definition.plan,
                inputs,
                run_model=run_model,
                nodes=definition.nodes,
                limiter=limiter,
            )
        ok = True
        return outputs
    finally:
        definition.counters.record(ok, time.perf_counter_ns() - started)
