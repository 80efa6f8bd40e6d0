"""Triton's model configuration extension (``model_config.proto``) for a served model. No I/O.

What perf_analyzer and model-analyzer read: ``max_batch_size`` (0 when the model has no
dynamic first dimension, else the largest batch a request may carry), ``input``/``output``
with ``data_type`` and ``dims`` (without the batch dimension when ``max_batch_size`` > 0, as
Triton does), and ``dynamic_batching`` when ovtrio's batcher serves the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._proto import inference as pb
from ..tensors import TensorSpec

if TYPE_CHECKING:  # the type only: importing the data plane would load trio and the runtime
    from ..dataplane import ConfigView

__all__ = ["model_config_json", "model_config_proto"]

DEFAULT_MAX_BATCH = 64
"""max_batch_size reported for a dynamic batch dimension without a batcher or upper bound."""


def _batched(view: ConfigView) -> int:
    """max_batch_size: > 0 only when every input has a dynamic first (batch) dimension."""
    if not view.inputs:
        return 0
    hi_all = []
    for spec, axis in zip(view.inputs, view.batch_index, strict=True):
        if axis != 0 or not spec.shape or spec.shape[0] >= 0:
            return 0
        hi_all.append(spec.ranges[0][1])
    for out in view.outputs:
        if not out.shape or out.shape[0] >= 0:
            return 0
    if view.batcher_max_batch is not None:
        return view.batcher_max_batch
    bounded = [h for h in hi_all if h > 0]
    return min(bounded) if bounded else DEFAULT_MAX_BATCH


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    return list(spec.shape[1:] if batched else spec.shape)


def _kind(device: str) -> str:
    return "KIND_CPU" if device.upper().startswith("CPU") else "KIND_MODEL"


def model_config_json(view: ConfigView) -> dict[str, Any]:
    """The REST document (``GET /v2/models/{m}/config``), field names as in Triton's JSON."""
    max_batch = _batched(view)
    doc: dict[str, Any] = {
        "name": view.name,
        "platform": "openvino",
        "backend": "openvino",
        "version_policy": view.policy,
        "max_batch_size": max_batch,
        "input": [
            {
                "name": s.name,
                "data_type": s.datatype.triton_config,
                "format": "FORMAT_NONE",
                "dims": _dims(s, max_batch > 0),
                "is_shape_tensor": False,
                "allow_ragged_batch": False,
                "optional": False,
            }
            for s in view.inputs
        ],
        "output": [
            {
                "name": s.name,
                "data_type": s.datatype.triton_config,
                "dims": _dims(s, max_batch > 0),
                "label_filename": "",
                "is_shape_tensor": False,
            }
            for s in view.outputs
        ],
        "instance_group": [
            {
                "name": view.name,
                "kind": _kind(view.device),
                "count": view.nireq,
                "gpus": [],
                "profile": [],
                "passive": False,
                "host_policy": "",
            }
        ],
        "default_model_filename": view.model_file,
        "parameters": {},
    }
    if view.batcher_max_batch is not None:
        doc["dynamic_batching"] = {
            "preferred_batch_size": list(view.preferred_batch_sizes),
            "max_queue_delay_microseconds": view.max_delay_us,
            "preserve_ordering": False,
        }
    return doc


def model_config_proto(view: ConfigView) -> pb.ModelConfig:
    """The same document as the gRPC ``ModelConfig`` message."""
    doc = model_config_json(view)
    policy = None
    if "latest" in view.policy:
        policy = pb.ModelVersionPolicy(
            latest=pb.ModelVersionPolicyLatest(num_versions=view.policy["latest"]["num_versions"])
        )
    elif "specific" in view.policy:
        policy = pb.ModelVersionPolicy(
            specific=pb.ModelVersionPolicySpecific(versions=view.policy["specific"]["versions"])
        )
    else:
        policy = pb.ModelVersionPolicy(all=pb.ModelVersionPolicyAll())
    config = pb.ModelConfig(
        name=doc["name"],
        platform=doc["platform"],
        backend=doc["backend"],
        version_policy=policy,
        max_batch_size=doc["max_batch_size"],
        input=[
            pb.ModelInput(name=i["name"], data_type=pb.DataType[i["data_type"]], dims=i["dims"])
            for i in doc["input"]
        ],
        output=[
            pb.ModelOutput(name=o["name"], data_type=pb.DataType[o["data_type"]], dims=o["dims"])
            for o in doc["output"]
        ],
        instance_group=[
            pb.ModelInstanceGroup(
                name=view.name,
                kind=pb.ModelInstanceGroupKind[_kind(view.device).removeprefix("KIND_")],
                count=view.nireq,
            )
        ],
        default_model_filename=view.model_file,
    )
    if "dynamic_batching" in doc:
        config.dynamic_batching = pb.ModelDynamicBatching(
            preferred_batch_size=list(view.preferred_batch_sizes),
            max_queue_delay_microseconds=view.max_delay_us,
        )
    return config
