"""TF Serving REST routes: ``/v1/models/...`` -> codecs.tfs_rest -> data plane."""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio

from ..codecs import tfs_rest, tfs_tensor
from ..dataplane import DataPlane
from ..errors import NotFound

__all__ = ["REST_NOT_FOUND", "register"]

REST_NOT_FOUND = "Requested REST resource not found"
"""OVMS's answer (404) to ``:classify`` and ``:regress``, whatever the model."""


def register(app: QuartTrio, dp: DataPlane) -> None:
    from .app import json_response

    def version_of(name: str, version: int | None, label: str | None) -> int | None:
        if label is not None:
            return dp.resolve_label(name, label)
        return version or None

    @app.get("/v1/models/<name>")
    @app.get("/v1/models/<name>/versions/<int:version>")
    @app.get("/v1/models/<name>/labels/<label>")
    async def status(name: str, version: int | None = None, label: str | None = None) -> Response:
        statuses = dp.model_status(name, version_of(name, version, label))
        return json_response(tfs_tensor.model_status_json(statuses))

    @app.get("/v1/models/<name>/metadata")
    @app.get("/v1/models/<name>/versions/<int:version>/metadata")
    @app.get("/v1/models/<name>/labels/<label>/metadata")
    async def metadata(name: str, version: int | None = None, label: str | None = None) -> Response:
        meta = dp.model_metadata(name, version_of(name, version, label))
        return json_response(
            tfs_tensor.model_metadata_json(meta.name, meta.version, meta.inputs, meta.outputs)
        )

    @app.post("/v1/models/<name>:predict")
    @app.post("/v1/models/<name>/versions/<int:version>:predict")
    @app.post("/v1/models/<name>/labels/<label>:predict")
    async def predict(name: str, version: int | None = None, label: str | None = None) -> Response:
        mv = await dp.version_for_infer(name, version_of(name, version, label))
        body = await request.get_data(cache=False)
        assert isinstance(body, bytes)
        req, fmt = tfs_rest.decode_predict(
            body,
            model_name=name,
            model_version=mv.version,
            input_specs=mv.inputs,
            max_elements=dp.max_tensor_elements,
            max_depth=dp.max_json_depth,
        )
        resp = await dp.infer(req, api="TensorFlowServing", interface="REST", version=mv)
        return Response(tfs_rest.encode_predict(resp, fmt), content_type="application/json")

    @app.post("/v1/models/<name>:classify")
    @app.post("/v1/models/<name>:regress")
    @app.post("/v1/models/<name>/versions/<int:version>:classify")
    @app.post("/v1/models/<name>/versions/<int:version>:regress")
    @app.post("/v1/models/<name>/labels/<label>:classify")
    @app.post("/v1/models/<name>/labels/<label>:regress")
    async def classify(name: str, version: int | None = None, label: str | None = None) -> Response:
        # OVMS parses these URLs and answers before looking the model up: the resource, not
        # the model, is what is missing.
        raise NotFound(REST_NOT_FOUND)
