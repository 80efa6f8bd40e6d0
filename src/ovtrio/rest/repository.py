"""Model lifecycle over REST: OVMS' ``/v1/config`` and Triton's ``/v2/repository`` extension."""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio

from ..codecs import tfs_tensor
from ..codecs._json import loads as json_loads
from ..dataplane import DataPlane
from ..errors import MSG_NOT_AN_OBJECT, InvalidArgument, JsonInvalid

__all__ = ["register"]


def register(app: QuartTrio, dp: DataPlane) -> None:
    from .app import json_response

    def config_body() -> dict[str, object]:
        return {name: tfs_tensor.model_status_json(st) for name, st in dp.all_statuses().items()}

    @app.get("/v1/config")
    async def get_config() -> Response:
        return json_response(config_body())

    @app.post("/v1/config/reload")
    async def reload_config() -> Response:
        changed = await dp.reload_config()
        return json_response(config_body(), 201 if changed else 200)

    @app.post("/v2/repository/index")
    async def index() -> Response:
        body = await request.get_data(cache=False)
        assert isinstance(body, bytes)
        ready = False
        if body and body.strip():
            try:
                doc = json_loads(body, dp.max_json_depth)
            except JsonInvalid as exc:  # the repository extension answers 400
                raise InvalidArgument(exc.message) from None
            if not isinstance(doc, dict):
                raise InvalidArgument(MSG_NOT_AN_OBJECT)
            ready = bool(doc.get("ready", False))
        return json_response(dp.repository_index(ready))

    @app.post("/v2/repository/models/<name>/load")
    async def load(name: str) -> Response:
        await dp.load_model(name)
        return json_response({})

    @app.post("/v2/repository/models/<name>/unload")
    async def unload(name: str) -> Response:
        await dp.unload_model(name)
        return json_response({})
