"""The one error tree. Each class carries its HTTP status and gRPC status code as data.

::

    OvtrioError (500, INTERNAL)
    ├── InvalidArgument (400, INVALID_ARGUMENT)          a client's mistake
    │   ├── JsonInvalid (412, INVALID_ARGUMENT)          body is not JSON (OVMS answers 412)
    │   ├── InvalidUrl (400, INVALID_ARGUMENT)           no REST route matches (OVMS: 400)
    │   └── PayloadTooLarge (413, RESOURCE_EXHAUSTED)    a size limit was exceeded
    ├── FailedPrecondition (400, FAILED_PRECONDITION)    e.g. unknown TF Serving signature
    ├── NotFound (404, NOT_FOUND)                        model / version unknown or retired
    ├── ModelNotLoadedYet (404, UNAVAILABLE)             version still LOADING (OVMS' pairing)
    ├── UnsupportedMethod (406, UNIMPLEMENTED)           REST method not allowed on a known path
    ├── Unimplemented (501, UNIMPLEMENTED)
    ├── ResourceExhausted (503, RESOURCE_EXHAUSTED)      a model's queue is full
    ├── Unavailable (503, UNAVAILABLE)                   server not ready or shutting down
    ├── Unauthenticated (401, UNAUTHENTICATED)
    ├── InferenceFailed (500, INTERNAL)                  OpenVINO raised while inferring
    ├── NodeLibraryFailed (500, UNKNOWN)                 custom node library failed or misbehaved
    ├── PipelineFailed (500, UNKNOWN)                    a pipeline could not (de)multiplex a tensor
    ├── PipelineNoResults (204, ABORTED)                 a dynamic demultiplexer gave no shards
    └── PipelineInvalid (500, FAILED_PRECONDITION)       a pipeline definition failed validation

Transports read ``http_status`` / ``grpc_status`` and the message; nothing else. Where OVMS
answers a client's mistake with UNKNOWN or 500, ovtrio uses the InvalidArgument branch.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MSG_CONTENT_SIZE",
    "MSG_INVALID_SHAPE",
    "MSG_NOT_AN_OBJECT",
    "MSG_PARSE_INPUT",
    "MSG_TOO_LARGE",
    "MSG_VALUE_COUNT",
    "FailedPrecondition",
    "GrpcStatus",
    "InferenceFailed",
    "InvalidArgument",
    "InvalidUrl",
    "JsonInvalid",
    "ModelNotLoadedYet",
    "NodeLibraryFailed",
    "NotFound",
    "OvtrioError",
    "PayloadTooLarge",
    "PipelineFailed",
    "PipelineInvalid",
    "PipelineNoResults",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UnsupportedMethod",
]


# OVMS' status messages (src/status.cpp) that more than one codec answers with; details follow
# as "<message> - <details>". Messages used in one place are defined there.
MSG_NOT_AN_OBJECT: Final = "Request body should be JSON object"
MSG_PARSE_INPUT: Final = "Could not parse input content. Not valid ndarray detected"
MSG_VALUE_COUNT: Final = "Invalid number of values in tensor proto container"
MSG_CONTENT_SIZE: Final = "Invalid content size of tensor proto"
MSG_INVALID_SHAPE: Final = "Invalid input shape"
MSG_TOO_LARGE: Final = "Input tensor too large"


class GrpcStatus:
    """gRPC status codes as ints (no grpclib import here)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


class OvtrioError(Exception):
    http_status: int = 500
    grpc_status: int = GrpcStatus.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(OvtrioError):
    http_status = 400
    grpc_status = GrpcStatus.INVALID_ARGUMENT


class JsonInvalid(InvalidArgument):
    http_status = 412


class InvalidUrl(InvalidArgument):
    http_status = 400


class PayloadTooLarge(InvalidArgument):
    http_status = 413
    grpc_status = GrpcStatus.RESOURCE_EXHAUSTED


class FailedPrecondition(OvtrioError):
    http_status = 400
    grpc_status = GrpcStatus.FAILED_PRECONDITION


class NotFound(OvtrioError):
    http_status = 404
    grpc_status = GrpcStatus.NOT_FOUND


class ModelNotLoadedYet(OvtrioError):
    http_status = 404
    grpc_status = GrpcStatus.UNAVAILABLE


class UnsupportedMethod(OvtrioError):
    http_status = 406
    grpc_status = GrpcStatus.UNIMPLEMENTED


class Unimplemented(OvtrioError):
    http_status = 501
    grpc_status = GrpcStatus.UNIMPLEMENTED


class ResourceExhausted(OvtrioError):
    http_status = 503
    grpc_status = GrpcStatus.RESOURCE_EXHAUSTED


class Unavailable(OvtrioError):
    http_status = 503
    grpc_status = GrpcStatus.UNAVAILABLE


class Unauthenticated(OvtrioError):
    http_status = 401
    grpc_status = GrpcStatus.UNAUTHENTICATED


class InferenceFailed(OvtrioError):
    http_status = 500
    grpc_status = GrpcStatus.INTERNAL


class NodeLibraryFailed(OvtrioError):
    """A custom node library could not be loaded or used, or broke the memory contract.

    ``code`` is OVMS' StatusCode name (``NODE_LIBRARY_EXECUTION_FAILED``, ...); the message starts
    with OVMS' text for it. OVMS answers these with gRPC UNKNOWN and HTTP 500.
    """

    http_status = 500
    grpc_status = GrpcStatus.UNKNOWN

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PipelineFailed(OvtrioError):
    """A pipeline request broke a demultiplexing or gathering rule at run time.

    ``code`` is OVMS' StatusCode name (``PIPELINE_WRONG_DIMENSION_SIZE_TO_DEMULTIPLY``, ...);
    OVMS answers these with gRPC UNKNOWN and HTTP 500.
    """

    http_status = 500
    grpc_status = GrpcStatus.UNKNOWN

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PipelineNoResults(OvtrioError):
    """A dynamic demultiplexer produced zero shards: OVMS aborts the request (gRPC ABORTED,
    HTTP 204 without a body)."""

    http_status = 204
    grpc_status = GrpcStatus.ABORTED


class PipelineInvalid(OvtrioError):
    """A pipeline definition failed validation; it stays registered but serves nothing.

    ``code`` is OVMS' StatusCode name; the message starts with OVMS' text for it. The HTTP
    status is what a failing config reload answers with: 400 for a shape or precision
    mismatch between nodes, 500 otherwise.
    """

    http_status = 500
    grpc_status = GrpcStatus.FAILED_PRECONDITION

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        if code in ("INVALID_SHAPE", "INVALID_PRECISION"):
            self.http_status = 400


# Messages of the reference's error table, in one place so both transports say the same.
MODEL_NOT_FOUND = "Model with requested name is not found"
VERSION_NOT_FOUND = "Model with requested version is not found"
VERSION_RETIRED = "Model with requested version is retired"
VERSION_NOT_LOADED_YET = "Model with requested version is not loaded yet"
