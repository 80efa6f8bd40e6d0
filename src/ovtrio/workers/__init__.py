"""Front-end processes around one engine process (``--rest_workers`` / ``--grpc_workers``).

The engine (``_engine``) holds the registry, the batchers and OpenVINO; each front-end
(``_frontend``) serves one port's transport over a ``RemoteDataPlane``; ``_protocol`` is what
crosses between them (frames on a Unix socket, tensors in shared memory). docs/workers.md
describes the process model.
"""

from __future__ import annotations

from ._engine import serve as serve
from ._engine import uses_workers as uses_workers

__all__ = ["serve", "uses_workers"]
