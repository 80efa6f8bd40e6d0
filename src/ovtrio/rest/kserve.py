"""KServe v2 REST routes: ``/v2/...`` -> codecs.kserve_rest -> data plane."""

from __future__ import annotations

from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..codecs import kserve_rest
from ..dataplane import DataPlane, ModelMetadata
from ..errors import InvalidArgument, NotFound, Unavailable
from ..repository import VersionStatistics
from ..tensors import TensorSpec

__all__ = ["metadata_json", "register"]

INFERENCE_HEADER = "Inference-Header-Content-Length"


def _tensor_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype.kserve, "shape": list(spec.shape)}


def metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    return {
        "name": meta.name,
        "versions": [str(v) for v in meta.versions],
        "platform": meta.platform,
        "inputs": [_tensor_json(s) for s in meta.inputs],
        "outputs": [_tensor_json(s) for s in meta.outputs],
    }


def _duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}


def statistics_json(name: str, st: VersionStatistics) -> dict[str, Any]:
    """Triton's statistics extension format, plus ovtrio's batcher counters under "ovtrio"."""
    b = st.batcher
    batch_stats = []
    extra: dict[str, Any] = {
        "inferences_completed": st.inferences_completed,
        "inferences_cancelled": st.inferences_cancelled,
        "infer_requests": st.nireq,
        "queue_length": st.queue_length,
        "rejected": st.rejected,
        "cancelled_queued": 0,
        "cancelled_running": st.inferences_cancelled,
    }
    if b is not None:
        per_batch_ns = int(b.inference_time_s * 1e9 / b.batches) if b.batches else 0
        batch_stats = [
            {"batch_size": size, "compute_infer": _duration(count, count * per_batch_ns)}
            for size, count in sorted(b.batch_size_histogram.items())
        ]
        extra.update(
            queue_length=b.queue_length,
            max_queue_size=b.max_queue_size,
            allowed_batch_sizes=list(b.allowed_batch_sizes),
            batches=b.batches,
            cancelled_queued=b.cancelled_queued,
            cancelled_running=b.cancelled_running,
            rejected=b.rejected,
            running_batches=list(b.running),
        )
    return {
        "name": name,
        "version": str(st.version),
        "last_inference": st.last_inference_ms,
        "inference_count": st.success_count,
        "execution_count": st.inferences_completed,
        "inference_stats": {
            "success": _duration(st.success_count, st.success_ns),
            "fail": _duration(st.fail_count, st.fail_ns),
        },
        "batch_stats": batch_stats,
        "ovtrio": extra,
    }


def register(app: QuartTrio, dp: DataPlane) -> None:
    from .app import json_response

    @app.get("/v2/health/live")
    async def live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        if not dp.ready():
            raise Unavailable("Server is not ready")
        return json_response({"ready": True})

    @app.get("/v2")
    async def server_metadata() -> Response:
        return json_response(dp.server_metadata())

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<int:version>/ready")
    async def model_ready(name: str, version: int | None = None) -> Response:
        if not dp.model_ready(name, version):
            # OVMS: a model that exists but is not ready answers 404 on REST.
            raise NotFound(f"Model {name} is not ready")
        return json_response({"name": name, "ready": True})

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<int:version>")
    async def model_metadata(name: str, version: int | None = None) -> Response:
        return json_response(metadata_json(dp.model_metadata(name, version)))

    @app.get("/v2/models/stats")
    @app.get("/v2/models/<name>/stats")
    @app.get("/v2/models/<name>/versions/<int:version>/stats")
    async def model_stats(name: str | None = None, version: int | None = None) -> Response:
        stats = dp.model_statistics(name, version)
        return json_response({"model_stats": [statistics_json(n, st) for n, st in stats]})

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<int:version>/infer")
    async def infer(name: str, version: int | None = None) -> Response:
        header = request.headers.get(INFERENCE_HEADER)
        header_length: int | None = None
        if header is not None:
            try:
                header_length = int(header)
            except ValueError:
                raise InvalidArgument(
                    f"{INFERENCE_HEADER} header is not an integer: {header!r}"
                ) from None
        body = await request.get_data(cache=False)
        assert isinstance(body, bytes)
        req = kserve_rest.decode_infer_request(
            body, header_length, model_name=name, model_version=version or None
        )
        resp = await dp.infer(req)
        payload, json_length = kserve_rest.encode_infer_response(resp, req)
        if json_length is None:
            return Response(payload, status=200, content_type="application/json")
        return Response(
            payload,
            status=200,
            content_type="application/octet-stream",
            headers={INFERENCE_HEADER: str(json_length)},
        )
