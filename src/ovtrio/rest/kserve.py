"""KServe v2 REST routes: ``/v2/...`` -> codecs.kserve_rest -> data plane."""

from __future__ import annotations

from typing import Any

from quart import Response
from quart_trio import QuartTrio

from ..codecs import kserve_stats, triton_config
from ..dataplane import DataPlane, ModelMetadata
from ..errors import NotFound, Unavailable
from ..tensors import TensorSpec

__all__ = ["metadata_json", "register"]


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

    @app.get("/v2/models/<name>/config")
    @app.get("/v2/models/<name>/versions/<int:version>/config")
    async def model_config(name: str, version: int | None = None) -> Response:
        return json_response(triton_config.model_config_json(dp.model_config(name, version)))

    @app.get("/v2/models/stats")
    @app.get("/v2/models/<name>/stats")
    @app.get("/v2/models/<name>/versions/<int:version>/stats")
    async def model_stats(name: str | None = None, version: int | None = None) -> Response:
        stats = dp.model_statistics(name, version)
        return json_response(
            {"model_stats": [kserve_stats.statistics_json(n, st) for n, st in stats]}
        )

    # POST /v2/models/<name>[/versions/<n>]/infer: rest/fast.py (in front of this app)
