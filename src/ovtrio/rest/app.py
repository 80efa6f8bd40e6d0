"""The Quart (quart-trio) application: routes translate HTTP to the data plane.

Errors: every ``OvtrioError`` becomes ``{"error": message}`` with the class's HTTP status;
anything unexpected is logged and answered 500 without a traceback. Unknown paths answer 400
``Invalid request URL`` and a wrong method on a known path 406 ``Unsupported method``, as OVMS.

Cancellation: quart-trio cancels the handler when the client disconnects, so a dropped
connection cancels the request all the way down to OpenVINO.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from ..auth import require_bearer
from ..dataplane import DataPlane
from ..errors import (
    InvalidUrl,
    OvtrioError,
    PayloadTooLarge,
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
    response = json_response({"error": exc.message}, exc.http_status)
    if request and request.method in ("POST", "PUT", "PATCH"):
        # The body may be unread (an answer before it arrived): hypercorn cannot reuse such a
        # connection, so say so instead of leaving the client's next request hanging on it.
        response.headers["Connection"] = "close"
    return response


OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
"""Answered without authentication (orchestrators probe them)."""


async def _drain_body() -> None:
    """Read what is left of a request body before an early error answer.

    hypercorn (0.18, HTTP/1.1) cannot serve the next request of a kept-alive connection when an
    answer went out before the body arrived: the connection hangs. Reading the body (bounded by
    MAX_CONTENT_LENGTH) first keeps the connection usable (found by the fuzz tests).
    """
    if request.method in ("POST", "PUT", "PATCH"):
        try:
            await request.get_data(cache=False)
        except Exception:  # the error answer goes out anyway (with Connection: close)
            pass


class _HttpError(OvtrioError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.http_status = status


def create_app(
    dataplane: DataPlane, *, max_body_bytes: int, api_keys: tuple[str, ...] = ()
) -> QuartTrio:
    app = QuartTrio("ovtrio")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["BODY_TIMEOUT"] = 300
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    # "/v2/models//ready" must not be redirected to "/v2/models/ready" (a model named "ready")
    app.url_map.merge_slashes = False

    if api_keys:
        accepted = [k.encode() for k in api_keys]

        @app.before_request
        async def _authenticate() -> None:
            if request.path not in OPEN_PATHS:
                require_bearer(request.headers.get("Authorization", ""), accepted)

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
        if not isinstance(exc, PayloadTooLarge):
            await _drain_body()
        return error_response(exc)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        if not isinstance(exc, RequestEntityTooLarge):
            await _drain_body()
        if isinstance(exc, MethodNotAllowed):
            return error_response(UnsupportedMethod("Unsupported method"))
        if isinstance(exc, NotFound):
            return error_response(InvalidUrl("Invalid request URL"))
        if isinstance(exc, RequestEntityTooLarge):
            return error_response(
                PayloadTooLarge(f"Request body exceeds the limit of {max_body_bytes} bytes")
            )
        return error_response(_HttpError(exc.description or exc.name, exc.code or 400))

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return error_response(OvtrioError("Internal server error"))

    return app
