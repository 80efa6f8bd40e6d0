"""gRPC transport: grpclib on trio's thread (an asyncio loop run by a trio task), bridged into
trio tasks."""

from __future__ import annotations

from ..dataplane import DataPlane
from ._bridge import GrpcEndpoint as GrpcEndpoint
from ._bridge import serve as serve
from ._unary import RpcSpec as RpcSpec

__all__ = ["GrpcEndpoint", "RpcSpec", "build_rpc_table", "serve"]


def build_rpc_table(dataplane: DataPlane) -> dict[str, RpcSpec]:
    """Every RPC the server answers, by route."""
    from . import kserve, tfs

    table: dict[str, RpcSpec] = {}
    table.update(kserve.rpc_table(dataplane))
    table.update(tfs.rpc_table(dataplane))
    return table
