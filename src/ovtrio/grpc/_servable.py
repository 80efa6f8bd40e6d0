"""The grpclib handler object built from an ``RpcTable``: authentication, read, bridge, reply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpclib.const
import grpclib.server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from .._patches.grpclib import receive_message, send_reply
from ..auth import bearer_ok
from ..codecs._wire import check_wire_types
from ..errors import OvtrioError

if TYPE_CHECKING:
    from ._bridge import TrioBridge

__all__ = ["OPEN_ROUTES", "RpcSpec", "RpcTable", "Servable"]

log = logging.getLogger(__name__)

RpcTable = Mapping[str, "RpcSpec"]
"""Route (``/package.Service/Method``) -> how to serve it."""


@dataclass(frozen=True, slots=True)
class RpcSpec:
    """A unary RPC: decode with request_type, run ``func`` in trio, encode with reply_type."""

    func: Callable[[Any, grpclib.server.Stream[Any, Any]], Awaitable[Any]]
    request_type: type[Any]
    reply_type: type[Any]


OPEN_ROUTES = frozenset(
    {
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
    }
)
"""Answered without authentication (orchestrators probe them)."""


def _grpc_error(exc: OvtrioError) -> GRPCError:
    return GRPCError(Status(exc.grpc_status), exc.message)


class Servable:
    """The grpclib handler object built from an RpcTable."""

    def __init__(
        self,
        table: RpcTable,
        bridge_ref: Callable[[], TrioBridge],
        *,
        api_keys: tuple[str, ...] = (),
        max_message_bytes: int = 1 << 30,
    ) -> None:
        self._table = table
        self._bridge = bridge_ref
        self._keys = [k.encode() for k in api_keys]
        self._max = max_message_bytes
        self.active = 0
        """RPCs being handled (the transport's count for ``Load``)."""

    def _authenticate(self, route: str, stream: grpclib.server.Stream[Any, Any]) -> None:
        if not self._keys or route in OPEN_ROUTES:
            return
        metadata: Any = stream.metadata or {}
        if not bearer_ok(metadata.get("authorization", ""), self._keys):
            raise GRPCError(
                Status.UNAUTHENTICATED,
                "Missing or invalid API key (metadata 'authorization: Bearer <key>')",
            )

    async def _receive(self, stream: grpclib.server.Stream[Any, Any], spec: RpcSpec) -> Any:
        """The request message, read within the size limit and decoded."""
        data = await receive_message(stream, self._max)
        try:
            message = spec.request_type.FromString(data)
            # betterproto2 does not check wire types: a varint where a message belongs
            # decodes as an int; refuse such messages here, for every RPC.
            check_wire_types(message)
        except OvtrioError as exc:
            raise _grpc_error(exc) from None
        except Exception as exc:  # undecodable message: the client's mistake
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"Cannot decode the request message: {exc}"
            ) from None
        return message

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping = {}
        for route, spec in self._table.items():
            mapping[route] = grpclib.const.Handler(
                self._wrap(route, spec),
                grpclib.const.Cardinality.UNARY_UNARY,
                spec.request_type,
                spec.reply_type,
            )
        return mapping

    def _wrap(
        self, route: str, spec: RpcSpec
    ) -> Callable[[grpclib.server.Stream[Any, Any]], Awaitable[None]]:
        async def handle(stream: grpclib.server.Stream[Any, Any]) -> None:
            self.active += 1
            try:
                self._authenticate(route, stream)
                request = await self._receive(stream, spec)
                try:
                    reply = await self._bridge().call(spec.func, request, stream)
                except OvtrioError as exc:
                    raise _grpc_error(exc) from None
                except GRPCError:
                    raise
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("unexpected error in %s", route)
                    raise GRPCError(Status.INTERNAL, "Internal server error") from None
                await send_reply(stream, reply)
            finally:
                self.active -= 1

        return handle
