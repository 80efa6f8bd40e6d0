"""The Quart (quart-trio) application: routes translate HTTP to the data plane.

Errors: every ``OvtrioError`` becomes ``{"error": message}`` with the class's HTTP status;
anything unexpected is logged and answered 500 without a traceback. Unknown paths answer 400
``Invalid request URL`` and a wrong method on a known path 406 ``Unsupported method``, as OVMS.

Cancellation: quart-trio cancels the handler when the client disconnects, so a dropped
connection cancels the request all the way down to OpenVINO.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from ..dataplane import DataPlane
from ..errors import (
    InvalidUrl,
    OvtrioError,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMethod,
)
from . import kserve, repository, tfs

__all__ = ["create_app", "json_response"]

log = logging.getLogger(__name__)


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload), status=status, content_type="application/json", headers=headers
    )


def error_response(exc: OvtrioError) -> Response:
    return json_response({"error": exc.message}, exc.http_status)


OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
"""Answered without authentication (orchestrators probe them)."""


def create_app(
    dataplane: DataPlane, *, max_body_bytes: int, api_keys: tuple[str, ...] = ()
) -> QuartTrio:
    app = QuartTrio("ovtrio")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["BODY_TIMEOUT"] = 300
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

    if api_keys:
        accepted = [k.encode() for k in api_keys]

        @app.before_request
        async def _authenticate() -> None:
            if request.path in OPEN_PATHS:
                return
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            given = token.strip().encode()
            if scheme.lower() != "bearer" or not any(
                hmac.compare_digest(given, key) for key in accepted
            ):
                raise Unauthenticated("Missing or invalid API key (Authorization: Bearer <key>)")

    kserve.register(app, dataplane)
    tfs.register(app, dataplane)
    repository.register(app, dataplane)

    if dataplane.metrics is not None:
        metrics = dataplane.metrics

        @app.get("/metrics")
        async def metrics_endpoint() -> Response:
            body, content_type = metrics.exposition()
            return Response(body, content_type=content_type)

    @app.errorhandler(OvtrioError)
    async def _ovtrio_error(exc: OvtrioError) -> Response:
        return error_response(exc)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        if isinstance(exc, MethodNotAllowed):
            return error_response(UnsupportedMethod("Unsupported method"))
        if isinstance(exc, NotFound):
            return error_response(InvalidUrl("Invalid request URL"))
        if isinstance(exc, RequestEntityTooLarge):
            return error_response(
                PayloadTooLarge(f"Request body exceeds the limit of {max_body_bytes} bytes")
            )
        return json_response({"error": exc.description or exc.name}, exc.code or 400)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return json_response({"error": "Internal server error"}, 500)

    return app
