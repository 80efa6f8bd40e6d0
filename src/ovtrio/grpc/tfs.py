"""TF Serving PredictionService and ModelService: messages -> codecs.tfs_tensor -> data plane."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .._proto.tensorflow import serving as tfs_pb
from ..codecs import tfs_tensor
from ..dataplane import DataPlane
from ..errors import InvalidArgument, Unimplemented
from ._unary import RpcSpec

__all__ = ["rpc_table"]

PREDICTION = "/tensorflow.serving.PredictionService/"
MODEL = "/tensorflow.serving.ModelService/"


def _spec_of(msg: Any) -> tfs_pb.ModelSpec:
    spec = getattr(msg, "model_spec", None)
    if spec is None:
        raise InvalidArgument("model_spec missing in request")
    return spec  # type: ignore[no-any-return]


def rpc_table(dp: DataPlane) -> dict[str, RpcSpec]:
    def version_of(spec: tfs_pb.ModelSpec) -> int | None:
        if spec.version_label:
            return dp.resolve_label(spec.name, spec.version_label)
        return spec.version or None

    async def predict(req: tfs_pb.PredictRequest) -> tfs_pb.PredictResponse:
        spec = _spec_of(req)
        request = tfs_tensor.decode_predict_request(req, max_elements=dp.max_tensor_elements)
        request.parameters.pop("version_label", None)
        request.model_version = version_of(spec)
        response = await dp.infer(request, api="TensorFlowServing", interface="gRPC")
        return tfs_tensor.encode_predict_response(response)

    async def get_model_metadata(
        req: tfs_pb.GetModelMetadataRequest,
    ) -> tfs_pb.GetModelMetadataResponse:
        spec = _spec_of(req)
        fields = list(req.metadata_field)
        # none named: the signature, as the API documents' own example asks (OVMS refuses it)
        if fields not in ([], ["signature_def"]):
            raise InvalidArgument(
                f'Invalid signature name - metadata_field must be ["signature_def"], got {fields}'
            )
        meta = dp.model_metadata(spec.name, version_of(spec))
        return tfs_tensor.model_metadata_proto(meta.name, meta.version, meta.inputs, meta.outputs)

    async def get_model_status(req: tfs_pb.GetModelStatusRequest) -> tfs_pb.GetModelStatusResponse:
        spec = _spec_of(req)
        statuses = dp.model_status(spec.name, version_of(spec))
        return tfs_tensor.model_status_proto(spec.name, statuses)

    def unimplemented(what: str) -> Callable[[Any], Awaitable[Any]]:
        async def handler(_req: Any) -> Any:
            raise Unimplemented(f"{what} is not implemented: ovtrio serves Predict only")

        return handler

    return {
        PREDICTION + "Predict": RpcSpec(predict, tfs_pb.PredictRequest, tfs_pb.PredictResponse),
        PREDICTION + "GetModelMetadata": RpcSpec(
            get_model_metadata, tfs_pb.GetModelMetadataRequest, tfs_pb.GetModelMetadataResponse
        ),
        PREDICTION + "Classify": RpcSpec(
            unimplemented("Classify"), tfs_pb.ClassificationRequest, tfs_pb.ClassificationResponse
        ),
        PREDICTION + "Regress": RpcSpec(
            unimplemented("Regress"), tfs_pb.RegressionRequest, tfs_pb.RegressionResponse
        ),
        PREDICTION + "MultiInference": RpcSpec(
            unimplemented("MultiInference"),
            tfs_pb.MultiInferenceRequest,
            tfs_pb.MultiInferenceResponse,
        ),
        MODEL + "GetModelStatus": RpcSpec(
            get_model_status, tfs_pb.GetModelStatusRequest, tfs_pb.GetModelStatusResponse
        ),
        MODEL + "HandleReloadConfigRequest": RpcSpec(
            unimplemented("HandleReloadConfigRequest (use POST /v1/config/reload)"),
            tfs_pb.ReloadConfigRequest,
            tfs_pb.ReloadConfigResponse,
        ),
    }
