"""The transport-neutral core: health, metadata, status and inference.

REST and gRPC handlers decode their wire form into ``tensors.InferRequest``, call this module,
and encode what it returns. Validation follows OVMS' order and messages (reference 1.12):
input count -> for each model input, sorted by name: presence -> precision -> rank -> batch
-> shape. Before it, strings sent to a 2-D UINT8 input become zero-padded rows (``text``), and
encoded images sent to a 4-D input are decoded (``images``); after inference, 2-D UINT8 outputs
named ``*_string`` go back as strings.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import trio

from ._version import __version__
from .config import ConfigError, ServerConfig
from .errors import (
    VERSION_NOT_FOUND,
    VERSION_NOT_LOADED_YET,
    VERSION_RETIRED,
    GrpcStatus,
    InvalidArgument,
    ModelNotLoadedYet,
    NotFound,
    OvtrioError,
    PipelineInvalid,
    Unavailable,
)
from .images import ImageOptions, decode_images, is_image_input
from .load import Load
from .repository import (
    ModelRegistry,
    ModelState,
    ModelVersion,
    Pipeline,
    PipelineDefinition,
    VersionStatistics,
    run_pipeline,
)
from .runtime import find_model_file
from .tensors import (
    InferRequest,
    InferResponse,
    Tensor,
    TensorSpec,
    datatype,
    datatype_of_array,
)
from .text import is_text_input, is_text_output, rows_to_strings, strings_to_rows

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = [
    "EXTENSIONS",
    "SERVER_NAME",
    "ConfigView",
    "DataPlane",
    "ModelMetadata",
    "VersionStatus",
]

log = logging.getLogger(__name__)

SERVER_NAME = "ovtrio"
EXTENSIONS = (
    "binary_tensor_data",
    "statistics",
    "model_configuration",
    "model_repository",
)
"""KServe/Triton protocol extensions this server implements."""
RELOAD_FAILED = "Reloading config file failed. Check server logs for more info."
"""OVMS' answer to a reload that left a pipeline invalid."""


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[int, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    version: int


@dataclass(frozen=True, slots=True)
class ConfigView:
    """Everything the configuration document says about one model version."""

    name: str
    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]
    batch_index: Sequence[int | None]
    policy: dict[str, Any]
    """Triton's version_policy object, e.g. ``{"latest": {"num_versions": 1}}``."""
    batcher_max_batch: int | None
    """The batcher's largest batch, or None when requests are not batched."""
    preferred_batch_sizes: Sequence[int]
    max_delay_us: int
    nireq: int
    device: str
    model_file: str


@dataclass(frozen=True, slots=True)
class VersionStatus:
    version: int
    state: ModelState
    error_code: str
    error_message: str


def _fmt(shape: tuple[int, ...] | list[int]) -> str:
    return "(" + ",".join(str(d) for d in shape) + ")"


def _fmt_spec(spec: TensorSpec) -> str:
    parts = []
    for d, (lo, hi) in zip(spec.shape, spec.ranges, strict=True):
        if d >= 0:
            parts.append(str(d))
        elif hi < 0 and lo <= 0:
            parts.append("-1")
        else:
            parts.append(f"{lo}:{hi}")
    return "(" + ",".join(parts) + ")"


def _dim_ok(actual: int, expected: int, rng: tuple[int, int]) -> bool:
    if expected >= 0:
        return actual == expected
    lo, hi = rng
    return actual >= lo and (hi < 0 or actual <= hi)


def image_options(cfg: ServerConfig) -> ImageOptions:
    """The image decoding options the configuration asks for (``--image_*``)."""
    return ImageOptions(color_order=cfg.image_color_order, max_pixels=cfg.image_max_pixels)


ImageTargets = dict[str, tuple[TensorSpec, bool]]
"""Input name -> (the 4-D spec encoded images sent to it decode to, whether each image is one
shard of a pipeline's demultiplexed input, ``[N, 1, H, W, C]``)."""


def image_targets(mv: ModelVersion | PipelineDefinition) -> ImageTargets:
    """The inputs of ``mv`` that a BYTES tensor of encoded images may be sent to."""
    targets: ImageTargets = {}
    for spec in mv.inputs:
        if spec.datatype.kserve == "BYTES":
            continue
        shard = mv.shard_image_spec(spec.name) if isinstance(mv, PipelineDefinition) else None
        if shard is not None:
            targets[spec.name] = (shard, True)
        elif len(spec.shape) == 4:
            targets[spec.name] = (spec, False)
    return targets


class DataPlane:
    def __init__(
        self,
        registry: ModelRegistry,
        image_options: ImageOptions | None = None,
        metrics: Metrics | None = None,
        *,
        max_tensor_elements: int = 1 << 31,
        max_json_depth: int = 1024,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.max_tensor_elements = max_tensor_elements
        """Largest element count an input may declare; transports pass it to the codecs."""
        self.max_json_depth = max_json_depth
        """Deepest nesting of a REST JSON body; the REST transport passes it to the codecs."""
        self._use_images(image_options or ImageOptions())
        self.shutting_down = False
        """Set when the graceful shutdown starts: ``infer`` refuses new requests."""
        self.load: Load = registry.load
        """The server's requests: transports register their counts here (``add_transport``)
        and ``infer`` enters each inference request."""
        self._idle = trio.Event()
        self._idle.set()
        self.log_requests = log.isEnabledFor(logging.DEBUG)
        """One DEBUG line per inference request (``--log_level DEBUG``), decided once here."""

    def _use_images(self, options: ImageOptions) -> None:
        self.image_options = options
        self.image_limiter = trio.CapacityLimiter(max(1, os.cpu_count() or 1))
        """Encoded images decode in worker threads, at most one per core at a time."""

    @property
    def in_flight(self) -> int:
        """Inference requests being served (graceful shutdown waits for 0)."""
        return self.load.inferences

    async def wait_idle(self) -> None:
        """Return once no inference request is in flight."""
        while self.in_flight:
            await self._idle.wait()

    # -- health -----------------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.registry.ready and not self.shutting_down

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    # -- models -----------------------------------------------------------------------------
    def pipeline(self, name: str) -> Pipeline | None:
        """The pipeline ``name`` names, unless a model does (models come first, as in OVMS)."""
        if name in self.registry.models:
            return None
        return self.registry.pipelines.get(name)

    def model_ready(self, name: str, version: int | None) -> bool:
        """True if the version (default: the default version) is AVAILABLE.

        Raises NotFound for an unknown model name or a version that does not exist.
        A pipeline's version is ignored.
        """
        pipeline = self.pipeline(name)
        if pipeline is not None:
            return pipeline.available
        model = self.registry.get_model(name)
        if not version:
            default = model.default_version()
            return default is not None
        return self.registry.get_version(name, version).available

    def model_metadata(self, name: str, version: int | None) -> ModelMetadata:
        pipeline = self.pipeline(name)
        if pipeline is not None:  # any version: pipelines have version 1 only
            definition = pipeline.definition_for_request()
            return ModelMetadata(
                name,
                (definition.version,),
                "OpenVINO",
                definition.inputs,
                definition.outputs,
                definition.version,
            )
        mv = self.registry.get_version(name, version)
        if not mv.available:
            if mv.state >= ModelState.UNLOADING:
                raise NotFound(VERSION_RETIRED)
            raise ModelNotLoadedYet(VERSION_NOT_LOADED_YET)
        model = self.registry.get_model(name)
        return ModelMetadata(
            name=name,
            versions=tuple(model.available_versions()),
            platform="OpenVINO",
            inputs=mv.inputs,
            outputs=mv.outputs,
            version=mv.version,
        )

    def model_config(self, name: str, version: int | None) -> ConfigView:
        """What Triton's model configuration extension reports for a version."""
        mv = self.registry.get_version(name, version)
        if not mv.available:
            raise ModelNotLoadedYet(VERSION_NOT_LOADED_YET)
        assert mv.compiled is not None
        assert mv.scheduler is not None
        cfg = mv.model.config
        policy = cfg.version_policy
        policy_doc: dict[str, Any]
        if policy.kind == "latest":
            policy_doc = {"latest": {"num_versions": policy.num_versions}}
        elif policy.kind == "specific":
            policy_doc = {"specific": {"versions": list(policy.versions)}}
        else:
            policy_doc = {"all": {}}
        return ConfigView(
            name=name,
            inputs=mv.inputs,
            outputs=mv.outputs,
            batch_index=mv.batch_axes,
            policy=policy_doc,
            batcher_max_batch=mv.scheduler.max_batch,
            preferred_batch_sizes=mv.scheduler.allowed,
            max_delay_us=cfg.batching.max_delay_us,
            nireq=mv.compiled.nireq,
            device=cfg.target_device,
            model_file=find_model_file(mv.path).name,
        )

    def resolve_label(self, name: str, label: str) -> int:
        """The version a ``version_labels`` label of the model's config names."""
        model = self.registry.get_model(name)
        version = model.config.version_labels.get(label)
        if version is None:
            known = ", ".join(sorted(model.config.version_labels)) or "none configured"
            raise NotFound(f"Model {name} has no version label {label!r} (labels: {known})")
        return version

    def model_status(self, name: str, version: int | None) -> list[VersionStatus]:
        """Status of one version, or of every version when version is None or 0 (a pipeline:
        its one version, whatever version is asked for).

        While the model's repository cannot be listed, the reason is each version's message
        (a serving version stays AVAILABLE/OK), and a model without versions reports it as
        version 0, LOADING/UNKNOWN.
        """
        pipeline = self.pipeline(name)
        if pipeline is not None:
            return [
                VersionStatus(
                    PipelineDefinition.version,
                    pipeline.state,
                    pipeline.error_code,
                    pipeline.error_message,
                )
            ]
        model = self.registry.get_model(name)
        if version:
            mv = model.versions.get(version)
            if mv is None:
                raise NotFound(VERSION_NOT_FOUND)
            chosen = [mv]
        else:
            chosen = sorted(model.versions.values(), key=lambda v: v.version)
        problem = model.storage_error
        if problem and not chosen:
            return [VersionStatus(0, ModelState.LOADING, "UNKNOWN", problem)]
        return [
            VersionStatus(v.version, v.state, v.error_code, v.error_message or problem)
            for v in chosen
        ]

    def model_statistics(
        self, name: str | None, version: int | None
    ) -> list[tuple[str, VersionStatistics]]:
        """Statistics of a model's versions, of one version, or (name None) of every model
        and then every pipeline. A pipeline's version is ignored (it reports version 1)."""
        pipelines = self.registry.pipelines.pipelines
        if name is None:
            models = list(self.registry.models.values())
        elif (pipeline := self.pipeline(name)) is not None:
            return [(name, pipeline.statistics())]
        else:
            models, pipelines = [self.registry.get_model(name)], {}
        out: list[tuple[str, VersionStatistics]] = []
        for model in models:
            if version:
                chosen = [self.registry.get_version(model.name, version)]
            else:
                chosen = sorted(model.versions.values(), key=lambda v: v.version)
            out.extend((model.name, mv.statistics()) for mv in chosen)
        out.extend((p, pipelines[p].statistics()) for p in sorted(pipelines))
        return out

    # -- repository -------------------------------------------------------------------------
    async def reload_config(self) -> bool:
        """Re-read config.json and apply it; True if anything changed.

        Raises InvalidArgument (the running configuration stays) if the file is invalid, and
        PipelineInvalid (after applying the file) while a pipeline in it fails validation.
        """
        try:
            changed = await self.registry.reload()
        except ConfigError as exc:
            raise InvalidArgument(f"Reloading config file failed - {exc}") from None
        for pipeline in self.registry.pipelines.pipelines.values():
            if pipeline.failure is not None:  # OVMS: the first invalid pipeline's code
                raise PipelineInvalid(pipeline.failure.code, RELOAD_FAILED)
        return changed

    def all_statuses(self) -> dict[str, list[VersionStatus]]:
        names = self.registry.models.keys() | self.registry.pipelines.pipelines.keys()
        return {name: self.model_status(name, None) for name in sorted(names)}

    def repository_index(self, ready_only: bool) -> list[dict[str, str]]:
        """Triton's repository index: one entry per model version, then one per pipeline."""
        out = []
        for name in sorted(self.registry.models):
            model = self.registry.models[name]
            if not model.versions:
                if not ready_only:
                    out.append(
                        {
                            "name": name,
                            "version": "",
                            "state": "UNAVAILABLE",
                            "reason": model.storage_error or "no version loaded",
                        }
                    )
                continue
            for number, mv in sorted(model.versions.items()):
                if ready_only and not mv.available:
                    continue
                state = "READY" if mv.available else "LOADING" if mv.loading else "UNAVAILABLE"
                out.append(
                    {
                        "name": name,
                        "version": str(number),
                        "state": state,
                        "reason": mv.error_message or model.storage_error,
                    }
                )
        for pipeline in sorted(self.registry.pipelines.pipelines.values(), key=lambda p: p.name):
            if pipeline.available or not ready_only:
                out.append(pipeline.index_entry())
        return out

    async def load_model(self, name: str) -> None:
        await self.registry.load_model(name)
        if self.registry.get_model(name).default_version() is None:
            raise InvalidArgument(f"Model {name} failed to load - see its version status")

    async def unload_model(self, name: str) -> None:
        await self.registry.unload_model(name)

    # -- inference --------------------------------------------------------------------------
    def _refuse_when_shutting_down(self) -> None:
        if self.shutting_down:
            raise Unavailable("Server is shutting down")

    async def version_for_infer(
        self, name: str, version: int | None
    ) -> ModelVersion | PipelineDefinition:
        """The version an inference request names (``ModelRegistry.get_available``), or the
        pipeline's definition, for a transport that needs its input specs to decode the request
        before ``infer``. Raises Unavailable during the graceful shutdown."""
        self._refuse_when_shutting_down()
        return await self._choose(name, version)

    async def infer(
        self,
        request: InferRequest,
        *,
        api: str = "KServe",
        interface: str = "gRPC",
        version: ModelVersion | PipelineDefinition | None = None,
    ) -> InferResponse:
        """Run one inference. ``api`` (KServe | TensorFlowServing) and ``interface``
        (gRPC | REST) label the request in the metrics. ``version``: the version
        ``version_for_infer`` chose (None: look it up from the request).

        Raises Unavailable (gRPC UNAVAILABLE / HTTP 503) during the graceful shutdown."""
        self._refuse_when_shutting_down()
        if self.in_flight == 0:
            self._idle = trio.Event()
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            with self.load.serving():
                if version is None:
                    version = await self._choose(request.model_name, request.model_version)
                return await self._route(request, version, api, interface)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if self.in_flight == 0:
                self._idle.set()
            seconds = time.perf_counter() - started
            if self.metrics is not None:
                method = "ModelInfer" if api == "KServe" else "Predict"
                self.metrics.request(
                    api,
                    interface,
                    method,
                    request.model_name,
                    request.model_version,
                    failure is None,
                    seconds,
                )
            if self.log_requests:
                _log_request(api, interface, request, version, failure, seconds)

    async def _choose(self, name: str, version: int | None) -> ModelVersion | PipelineDefinition:
        """What a request names: a pipeline's definition, or a model's available version."""
        pipeline = self.pipeline(name)
        if pipeline is not None:
            return pipeline.definition_for_request()
        return await self.registry.get_available(name, version)

    async def _route(
        self,
        request: InferRequest,
        version: ModelVersion | PipelineDefinition,
        api: str,
        interface: str,
    ) -> InferResponse:
        """A model version's inference, or a pipeline's."""
        if isinstance(version, ModelVersion):
            return await self._infer(request, version)
        request.model_version = version.version
        method = "ModelInfer" if api == "KServe" else "Predict"
        metrics = self.metrics

        def observe(model: str, number: int, ok: bool, seconds: float) -> None:
            if metrics is not None:
                metrics.request(api, interface, method, model, number, ok, seconds)

        await self._decode_images(version, request)
        outputs = await run_pipeline(
            version,
            self._pipeline_inputs(version, request),
            models=self.registry.get_available,
            limiter=self.registry.pipelines.limiter,
            observe=observe,
        )
        return InferResponse(
            model_name=request.model_name,
            model_version=version.version,
            outputs=[
                Tensor(name, datatype_of_array(array), array)
                for name, array in sorted(outputs.items())
            ],
            id=request.id,
        )

    @staticmethod
    def _pipeline_inputs(
        definition: PipelineDefinition, request: InferRequest
    ) -> dict[str, np.ndarray[Any, Any]]:
        """The request checked against the pipeline's inputs as its metadata reports them, in
        OVMS' order (count, then by name: presence, precision, rank, shape)."""
        given = {t.name: t for t in request.inputs}
        if len(given) != len(request.inputs):
            raise InvalidArgument("Duplicate input names in request")
        specs = definition.inputs
        if len(given) != len(specs):
            raise InvalidArgument(
                f"Invalid number of inputs - Expected: {len(specs)}; Actual: {len(given)}"
            )
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        for spec in specs:  # sorted by name
            tensor = given.get(spec.name)
            if tensor is None:
                raise InvalidArgument(
                    f"Missing input with specific name - Required input: {spec.name}"
                )
            if spec.datatype.kserve == "INVALID":  # passed straight to the response
                arrays[spec.name] = tensor.data
            else:
                arrays[spec.name] = _check_tensor(spec, tensor, None)
        return arrays

    async def _infer(self, request: InferRequest, mv: ModelVersion) -> InferResponse:
        await self._decode_images(mv, request)
        arrays = self.validate(mv, request)
        outputs = await mv.infer(arrays)
        return InferResponse(
            model_name=request.model_name,
            model_version=mv.version,
            outputs=self._select_outputs(mv, request, outputs),
            id=request.id,
        )

    async def _decode_images(
        self, mv: ModelVersion | PipelineDefinition | ImageTargets, request: InferRequest
    ) -> None:
        """Replace BYTES tensors aimed at 4-D numeric inputs by their decoded JPEG/PNG images
        (a pipeline's 5-D input under its request demultiplexer: ``[N, 1, H, W, C]``).
        ``mv``: the version or pipeline the request runs on, or its ``image_targets``.

        Decoding runs in a worker thread under ``image_limiter``, so a burst of large images
        does not stall the event loop (health checks, other models).
        """
        if all(t.datatype.kserve != "BYTES" for t in request.inputs):
            return  # the usual request: no input to look at, nothing to compute per version
        targets = mv if isinstance(mv, dict) else image_targets(mv)
        for i, tensor in enumerate(request.inputs):
            target = targets.get(tensor.name)
            if target is None or tensor.datatype.kserve != "BYTES":
                continue
            spec, sharded = target
            if not is_image_input(spec):
                raise InvalidArgument(
                    f"Binary (encoded image) input is supported only for NHWC inputs; input "
                    f"{spec.name} has layout {spec.layout or 'NCHW'} - serve the model with "
                    f"--layout NHWC:NCHW to accept images; input name: {spec.name}"
                )
            if tensor.data.ndim > 1:
                raise InvalidArgument(
                    f"Invalid shape of an encoded-image input - Expected: [N] (one item per "
                    f"image); Actual: {list(tensor.shape)}; input name: {spec.name}"
                )
            # a scalar is one image: TensorFlow's make_tensor_proto(data) sends no shape
            items = list(tensor.data.reshape(-1))
            decoded = await trio.to_thread.run_sync(
                decode_images, items, spec, self.image_options, limiter=self.image_limiter
            )
            if sharded:
                decoded = decoded[:, None]
            request.inputs[i] = Tensor(tensor.name, spec.datatype, decoded)

    @staticmethod
    def validate(mv: ModelVersion, request: InferRequest) -> list[np.ndarray[Any, Any]]:
        """Check the request against the model; return arrays in the model's input order."""
        specs = mv.inputs
        given = {t.name: t for t in request.inputs}
        if len(given) != len(request.inputs):
            raise InvalidArgument("Duplicate input names in request")
        if len(given) != len(specs):
            raise InvalidArgument(
                f"Invalid number of inputs - Expected: {len(specs)}; Actual: {len(given)}"
            )
        by_name: dict[str, np.ndarray[Any, Any]] = {}
        axes = dict(zip((s.name for s in specs), mv.batch_axes, strict=True))
        for spec in sorted(specs, key=lambda s: s.name):
            tensor = given.get(spec.name)
            if tensor is None:
                raise InvalidArgument(
                    f"Missing input with specific name - Required input: {spec.name}"
                )
            if tensor.datatype is _BYTES and is_text_input(spec):
                tensor = _text_rows(spec, tensor)
            by_name[spec.name] = _check_tensor(spec, tensor, axes[spec.name])
            if spec.datatype.kserve == "BYTES" and tensor.data.size == 0:
                # OpenVINO cannot take an empty string tensor (it crashes the process)
                raise InvalidArgument(
                    f"Invalid input shape - a BYTES input must have at least one element; "
                    f"Actual: {list(tensor.shape)}; input name: {spec.name}"
                )
        arrays = [by_name[s.name] for s in specs]
        sizes = mv.unequal_batch_sizes(arrays)
        if sizes is not None:
            raise InvalidArgument(
                "Invalid input batch size - the inputs of one request must share their "
                f"batch size; got {sizes}"
            )
        return arrays

    @staticmethod
    def _select_outputs(
        mv: ModelVersion, request: InferRequest, arrays: list[np.ndarray[Any, Any]]
    ) -> list[Tensor]:
        tensors = [_output(s, a) for s, a in zip(mv.outputs, arrays, strict=True)]
        if request.outputs is None:
            return tensors
        by_name = {t.name: t for t in tensors}
        chosen = []
        for wanted in request.outputs:
            t = by_name.get(wanted.name)
            if t is None:
                raise InvalidArgument(
                    f"Invalid output name - {wanted.name!r} is not an output of the model; "
                    f"outputs: {', '.join(sorted(by_name))}"
                )
            chosen.append(t)
        return chosen


_GRPC_NAMES: Final = {
    code: name for name, code in vars(GrpcStatus).items() if name.isupper() and type(code) is int
}


def _log_request(
    api: str,
    interface: str,
    request: InferRequest,
    version: ModelVersion | PipelineDefinition | None,
    failure: BaseException | None,
    seconds: float,
) -> None:
    """The operator's line for one inference request: API and transport, model, version,
    the status the transport answers (HTTP code or gRPC code name) and the time taken."""
    rest = interface == "REST"
    if failure is None:
        status = "200" if rest else "OK"
    elif isinstance(failure, OvtrioError):
        status = str(failure.http_status) if rest else _GRPC_NAMES[failure.grpc_status]
        status += f" ({failure.message})"
    elif isinstance(failure, trio.Cancelled):
        status = "cancelled (client gone, deadline passed or shutdown)"
    else:
        status = f"{500 if rest else 'INTERNAL'} ({type(failure).__name__}: {failure})"
    number = version.version if version is not None else request.model_version or "default"
    log.debug(
        "%s %s request: model %s version %s: %s in %.3f ms",
        api,
        interface,
        request.model_name,
        number,
        status,
        seconds * 1000,
    )


_BYTES = datatype("BYTES")


def _text_rows(spec: TensorSpec, tensor: Tensor) -> Tensor:
    """A BYTES tensor of N strings sent to a 2-D UINT8 input, as the input's ``[N, W]`` rows
    (``text.strings_to_rows``). The width must fit the input's second dimension."""
    name = spec.name
    if tensor.data.ndim != 1:
        raise InvalidArgument(
            f"Invalid number of shape dimensions - Expected number of input shape dimensions: "
            f"1 (one string per row); Actual: {tensor.data.ndim}; input name: {name}"
        )
    rows = strings_to_rows(list(tensor.data), name)
    width = rows.shape[1]
    if not _dim_ok(width, spec.shape[1], spec.ranges[1]):
        raise InvalidArgument(
            f"Invalid input shape - Expected: {_fmt_spec(spec)}; Actual: {_fmt(rows.shape)} "
            f"({rows.shape[0]} strings, the longest {width - 1} bytes plus its terminating "
            f"zero); input name: {name}"
        )
    return Tensor(tensor.name, spec.datatype, rows)


def _output(spec: TensorSpec, array: np.ndarray[Any, Any]) -> Tensor:
    """A model output as the response carries it: strings for a 2-D UINT8 ``*_string``."""
    if is_text_output(spec) and array.ndim == 2:
        return Tensor(spec.name, _BYTES, rows_to_strings(array))
    return Tensor(spec.name, spec.datatype, array)


def _check_tensor(spec: TensorSpec, tensor: Tensor, axis: int | None) -> np.ndarray[Any, Any]:
    name = spec.name
    if tensor.datatype is not spec.datatype:
        raise InvalidArgument(
            f"Invalid input precision - Expected: {spec.datatype.kserve}; "
            f"Actual: {tensor.datatype.kserve}; input name: {name}"
        )
    shape = tensor.shape
    if len(shape) != len(spec.shape):
        raise InvalidArgument(
            f"Invalid number of shape dimensions - Expected: {_fmt_spec(spec)}; "
            f"Actual: {_fmt(shape)}; input name: {name}"
        )
    if axis is not None and not _dim_ok(shape[axis], spec.shape[axis], spec.ranges[axis]):
        expected = spec.shape[axis] if spec.shape[axis] >= 0 else "{}:{}".format(*spec.ranges[axis])
        raise InvalidArgument(
            f"Invalid input batch size - Expected: {expected}; Actual: {shape[axis]}; "
            f"input name: {name}"
        )
    for i, (actual, expected) in enumerate(zip(shape, spec.shape, strict=True)):
        if i != axis and not _dim_ok(actual, expected, spec.ranges[i]):
            raise InvalidArgument(
                f"Invalid input shape - Expected: {_fmt_spec(spec)}; Actual: {_fmt(shape)}; "
                f"input name: {name}"
            )
    return tensor.data
