"""KServe v2 ``inference.GRPCInferenceService``: messages -> codecs.kserve_grpc -> data plane."""

from __future__ import annotations

from .._proto import inference as pb
from .._proto import inference_raw as raw_pb
from ..codecs import kserve_grpc, kserve_stats, triton_config
from ..dataplane import DataPlane
from ..tensors import TensorSpec
from ._unary import RpcSpec

__all__ = ["rpc_table"]

SERVICE = "/inference.GRPCInferenceService/"


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponseTensorMetadata:
    return pb.ModelMetadataResponseTensorMetadata(
        name=spec.name, datatype=spec.datatype.kserve, shape=list(spec.shape)
    )


def rpc_table(dp: DataPlane) -> dict[str, RpcSpec]:
    async def server_live(_req: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=dp.live())

    async def server_ready(_req: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=dp.ready())

    async def server_metadata(_req: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        meta = dp.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=list(meta["extensions"])
        )

    async def model_ready(req: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        version = kserve_grpc.parse_version(req.version)
        return pb.ModelReadyResponse(ready=dp.model_ready(req.name, version))

    async def model_metadata(req: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        meta = dp.model_metadata(req.name, kserve_grpc.parse_version(req.version))
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=[str(v) for v in meta.versions],
            platform=meta.platform,
            inputs=[_tensor_metadata(s) for s in meta.inputs],
            outputs=[_tensor_metadata(s) for s in meta.outputs],
        )

    async def model_config(req: pb.ModelConfigRequest) -> pb.ModelConfigResponse:
        view = dp.model_config(req.name, kserve_grpc.parse_version(req.version))
        return pb.ModelConfigResponse(config=triton_config.model_config_proto(view))

    async def model_statistics(req: pb.ModelStatisticsRequest) -> pb.ModelStatisticsResponse:
        stats = dp.model_statistics(req.name or None, kserve_grpc.parse_version(req.version))
        return pb.ModelStatisticsResponse(
            model_stats=[kserve_stats.statistics_proto(n, st) for n, st in stats]
        )

    async def repository_index(req: pb.RepositoryIndexRequest) -> pb.RepositoryIndexResponse:
        return pb.RepositoryIndexResponse(
            models=[
                pb.RepositoryIndexResponseModelIndex(**entry)
                for entry in dp.repository_index(req.ready)
            ]
        )

    async def repository_load(req: pb.RepositoryModelLoadRequest) -> pb.RepositoryModelLoadResponse:
        await dp.load_model(req.model_name)
        return pb.RepositoryModelLoadResponse()

    async def repository_unload(
        req: pb.RepositoryModelUnloadRequest,
    ) -> pb.RepositoryModelUnloadResponse:
        await dp.unload_model(req.model_name)
        return pb.RepositoryModelUnloadResponse()

    async def model_infer(
        req: kserve_grpc.WireInferRequest | raw_pb.ModelInferRequest | pb.ModelInferRequest,
    ) -> kserve_grpc.EncodedResponse:
        request = kserve_grpc.decode_infer_request(req, max_elements=dp.max_tensor_elements)
        response = await dp.infer(request)
        return kserve_grpc.encode_infer_response(response)

    return {
        SERVICE + "ServerLive": RpcSpec(server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
        SERVICE + "ServerReady": RpcSpec(
            server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse
        ),
        SERVICE + "ServerMetadata": RpcSpec(
            server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse
        ),
        SERVICE + "ModelReady": RpcSpec(model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
        SERVICE + "ModelMetadata": RpcSpec(
            model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse
        ),
        SERVICE + "ModelConfig": RpcSpec(
            model_config, pb.ModelConfigRequest, pb.ModelConfigResponse
        ),
        SERVICE + "ModelStatistics": RpcSpec(
            model_statistics, pb.ModelStatisticsRequest, pb.ModelStatisticsResponse
        ),
        SERVICE + "RepositoryIndex": RpcSpec(
            repository_index, pb.RepositoryIndexRequest, pb.RepositoryIndexResponse
        ),
        SERVICE + "RepositoryModelLoad": RpcSpec(
            repository_load, pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse
        ),
        SERVICE + "RepositoryModelUnload": RpcSpec(
            repository_unload, pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse
        ),
        SERVICE + "ModelInfer": RpcSpec(
            model_infer, kserve_grpc.InferRequestReader, kserve_grpc.EncodedResponse
        ),
    }
