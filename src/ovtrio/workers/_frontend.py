"""A front-end process: the REST or gRPC transport over a ``RemoteDataPlane``.

The engine starts it as ``python -m ovtrio.workers._frontend NAME FD FD FD FD PID``: its name
(``rest-0``), four inherited file descriptors (the message socket, the control socket, the
request arena, the response arena) and the engine's pid. The first message on the socket is
``("hello", config, role, index)``. The front-end binds its port with ``SO_REUSEPORT`` (the
kernel spreads new connections over the front-ends of a port), answers ``("ready",)`` and
serves until the engine says ``("drain",)`` (graceful shutdown: exit 0) or goes away (its
socket closes, or ``PR_SET_PDEATHSIG`` delivers SIGTERM: in-flight requests answer
UNAVAILABLE / 503, exit 1). SIGINT, and SIGTERM while the engine lives, are ignored: the
engine drives the shutdown of every process.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import trio

from .. import _malloc
from ..config import ServerConfig
from ..dataplane import ConfigView, DataPlane, ModelMetadata, VersionStatus, image_options
from ..errors import OvtrioError, Unavailable
from ..load import Load
from ..repository import ModelVersion, PipelineDefinition, VersionStatistics
from ..tensors import InferRequest, InferResponse
from ._protocol import (
    Codec,
    SharedArena,
    VersionRef,
    pack_request,
    read_payloads,
    unpack_response,
    write_frames,
)

if TYPE_CHECKING:
    from ..metrics import Metrics

__all__ = ["RemoteDataPlane", "main"]

log = logging.getLogger("ovtrio.workers")

_GONE = "The inference engine is not available"
_PR_SET_PDEATHSIG = 1
_CONTROL_TIMEOUT_S = 60.0


@dataclass(slots=True)
class _Call:
    done: trio.Event = field(default_factory=trio.Event)
    placed: list[int] = field(default_factory=list)
    """Offsets of the request's inputs in the request arena, freed when the answer comes."""
    ok: bool = False
    value: Any = None
    cancelled: bool = False


class EngineLink:
    """The front-end's end of the message socket: calls with an answer, cancels, releases."""

    def __init__(
        self, stream: trio.SocketStream, requests: SharedArena, responses: SharedArena
    ) -> None:
        self._stream = stream
        self._requests = requests
        self._codec = Codec(out=requests, into=responses)
        self._send, self._outbox = trio.open_memory_channel[bytes](float("inf"))
        self._calls: dict[int, _Call] = {}
        self._next_id = 0
        self._released: list[int] = []
        self._release_lock = threading.Lock()
        self._token = trio.lowlevel.current_trio_token()
        self.hello: trio.Event = trio.Event()
        self.hello_message: tuple[Any, ...] = ()
        self.drain = trio.Event()
        self.gone = trio.Event()

    async def run(self) -> None:
        """Read and write until the engine's socket closes; then fail every call in flight."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_frames, self._stream, self._outbox)
                await self._read()
                nursery.cancel_scope.cancel()
        finally:
            self.gone.set()
            for call in self._calls.values():
                call.ok, call.value = False, Unavailable(_GONE)
                call.done.set()
            self._calls.clear()

    def send(self, message: tuple[Any, ...]) -> None:
        self._send.send_nowait(self._codec.dumps(message))

    async def _read(self) -> None:
        async for payloads in read_payloads(self._stream):
            for payload in payloads:
                self._dispatch(self._codec.loads(payload))

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind in ("answer", "done", "error"):
            value = message[2]
            if kind == "answer":  # views of the response arena, released once unreferenced
                value = unpack_response(self._codec, value, self._watch)
            call = self._calls.pop(message[1], None)
            if call is None:
                return
            for offset in call.placed:
                self._requests.arena.free(offset)
            call.ok, call.value = kind != "error", value
            call.done.set()
        elif kind == "hello":
            self.hello_message = message
            self.hello.set()
        elif kind == "drain":
            self.drain.set()

    def _watch(self, array: np.ndarray[Any, Any], offset: int) -> None:
        """Release an output's space in the response arena once nothing views it."""
        weakref.finalize(array, self._release, offset)

    def _release(self, offset: int) -> None:
        # may run on any thread (the last view of an output may be dropped anywhere)
        with self._release_lock:
            self._released.append(offset)
            first = len(self._released) == 1
        if first:
            try:
                self._token.run_sync_soon(self._flush_released)
            except trio.RunFinishedError:
                pass

    def _flush_released(self) -> None:
        with self._release_lock:
            offsets, self._released = self._released, []
        if offsets and not self.gone.is_set():
            self.send(("release", offsets))

    async def infer(
        self, request: InferRequest, api: str, interface: str, held: int
    ) -> InferResponse:
        """The engine's ``DataPlane.infer`` of ``request``: inputs through the request
        arena, outputs viewing the response arena. ``held``: the requests this front-end's
        transport holds, for the engine's "sole request runs inline" decision."""
        if self.gone.is_set():
            raise Unavailable(_GONE)
        call = _Call()
        try:
            packed = pack_request(self._codec, request, call.placed)
        except BaseException:
            for offset in call.placed:
                self._requests.arena.free(offset)
            raise
        answer = await self._call(call, "infer", packed, api, interface, held)
        return cast("InferResponse", answer)

    async def call(self, method: str, *args: Any) -> Any:
        """The engine's data plane ``method`` (a coroutine) called with ``args``."""
        if self.gone.is_set():
            raise Unavailable(_GONE)
        return await self._call(_Call(), "call", method, args)

    async def _call(self, call: _Call, kind: str, *args: Any) -> Any:
        """Send ``(kind, id, *args)`` and return the engine's answer (raise its error). A
        cancelled call tells the engine, which drops the request from its queue."""
        self._next_id += 1
        call_id = self._next_id
        data = self._codec.dumps((kind, call_id, *args))
        self._calls[call_id] = call
        self._send.send_nowait(data)
        try:
            await call.done.wait()
        except trio.Cancelled:
            if not call.done.is_set() and not self.gone.is_set():
                self.send(("cancel", call_id))
            raise
        if not call.ok:
            raise call.value
        return call.value


class ControlChannel:
    """Blocking calls to the engine, for the data plane's synchronous methods (status,
    metadata, statistics, ...): one round trip on the control socket, answered by the
    engine's own data plane, so every front-end answers the same."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(_CONTROL_TIMEOUT_S)
        self._sock = sock
        self._codec = Codec(None, None)
        self._lock = threading.Lock()

    def call(self, method: str, *args: Any) -> Any:
        with self._lock:
            try:
                self._sock.sendall(self._codec.dumps((method, args)))
                (length,) = np.frombuffer(self._recv_exactly(4), "<u4")
                payload = self._recv_exactly(int(length))
            except OSError:
                raise Unavailable(_GONE) from None
        ok, value = self._codec.loads(payload)
        if not ok:
            raise value
        return value

    def _recv_exactly(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self._sock.recv(n)
            if not chunk:
                raise ConnectionResetError("engine closed the control socket")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


class _RemoteMetrics:
    """``/metrics`` from the engine's registry of metrics."""

    def __init__(self, control: ControlChannel) -> None:
        self._control = control

    def exposition(self) -> tuple[bytes, str]:
        return cast("tuple[bytes, str]", self._control.call("metrics_exposition"))


class _HeldLoad(Load):
    """``Load`` that also tells the requests the transports hold (sent to the engine)."""

    def held(self) -> int:
        return sum(count() for count in self._transports)


class RemoteDataPlane(DataPlane):
    """The data plane the transports of a front-end call: inference and the repository calls
    travel as messages (tensors through the arenas); the synchronous calls go through the
    control channel. The registry, the batchers and OpenVINO are the engine's."""

    def __init__(self, cfg: ServerConfig, link: EngineLink, control: ControlChannel) -> None:
        # DataPlane.__init__ is not called: its registry lives in the engine
        self.metrics = cast("Metrics", _RemoteMetrics(control)) if cfg.metrics_enable else None
        self.max_tensor_elements = cfg.max_tensor_elements
        self.max_json_depth = cfg.rest_max_json_depth
        self._use_images(image_options(cfg))
        self.shutting_down = False
        self._held = _HeldLoad()
        self.load = self._held
        self._idle = trio.Event()
        self._idle.set()
        self._link = link
        self._control = control

    def ready(self) -> bool:
        if self.shutting_down or self._link.gone.is_set():
            return False
        return bool(self._control.call("ready"))

    def server_metadata(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self._control.call("server_metadata"))

    def model_ready(self, name: str, version: int | None) -> bool:
        return bool(self._control.call("model_ready", name, version))

    def model_metadata(self, name: str, version: int | None) -> ModelMetadata:
        return cast("ModelMetadata", self._control.call("model_metadata", name, version))

    def model_config(self, name: str, version: int | None) -> ConfigView:
        return cast("ConfigView", self._control.call("model_config", name, version))

    def resolve_label(self, name: str, label: str) -> int:
        return int(self._control.call("resolve_label", name, label))

    def model_status(self, name: str, version: int | None) -> list[VersionStatus]:
        return cast("list[VersionStatus]", self._control.call("model_status", name, version))

    def model_statistics(
        self, name: str | None, version: int | None
    ) -> list[tuple[str, VersionStatistics]]:
        return cast(
            "list[tuple[str, VersionStatistics]]",
            self._control.call("model_statistics", name, version),
        )

    def all_statuses(self) -> dict[str, list[VersionStatus]]:
        return cast("dict[str, list[VersionStatus]]", self._control.call("all_statuses"))

    def repository_index(self, ready_only: bool) -> list[dict[str, str]]:
        return cast("list[dict[str, str]]", self._control.call("repository_index", ready_only))

    async def reload_config(self) -> bool:
        return bool(await self._link.call("reload_config"))

    async def load_model(self, name: str) -> None:
        await self._link.call("load_model", name)

    async def unload_model(self, name: str) -> None:
        await self._link.call("unload_model", name)

    async def version_for_infer(
        self, name: str, version: int | None
    ) -> ModelVersion | PipelineDefinition:
        self._refuse_when_shutting_down()
        ref = await self._link.call("version_for_infer", name, version)
        return cast("ModelVersion", ref)  # a VersionRef: the version and its input specs

    async def infer(
        self,
        request: InferRequest,
        *,
        api: str = "KServe",
        interface: str = "gRPC",
        version: ModelVersion | PipelineDefinition | None = None,
    ) -> InferResponse:
        self._refuse_when_shutting_down()
        if self.in_flight == 0:
            self._idle = trio.Event()
        try:
            with self.load.serving():
                if version is None and any(t.datatype.kserve == "BYTES" for t in request.inputs):
                    version = await self.version_for_infer(
                        request.model_name, request.model_version
                    )
                if version is not None:
                    if request.model_version is None:  # the version the images decoded for
                        request.model_version = version.version
                    await self._decode_images(cast("VersionRef", version).images, request)
                return await self._link.infer(request, api, interface, self._held.held())
        finally:
            if self.in_flight == 0:
                self._idle.set()


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when the engine dies (a belt beside the socket's end)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


async def _watch_parent(engine_pid: int, gone: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            if os.getppid() != engine_pid:
                gone.set()


async def serve(fds: Sequence[int], engine_pid: int) -> int:
    """Serve one port until the engine drains or goes; the process exit code."""
    from .. import server

    sock_fd, control_fd, requests_fd, responses_fd = fds
    requests = SharedArena(requests_fd, os.fstat(requests_fd).st_size)
    responses = SharedArena(responses_fd, os.fstat(responses_fd).st_size)
    requests.close_fd()
    responses.close_fd()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=sock_fd)))
    control = ControlChannel(socket.socket(fileno=control_fd))
    link = EngineLink(stream, requests, responses)
    code = 0
    async with trio.open_nursery() as root:
        root.start_soon(link.run)
        root.start_soon(_watch_parent, engine_pid, link.gone)
        with trio.move_on_after(60):
            await link.hello.wait()
        if not link.hello.is_set():
            return 1
        _, cfg, role, index = link.hello_message
        _configure_logging(cfg, f"{role}-{index}")
        server.install_patches()
        dataplane = RemoteDataPlane(cfg, link, control)
        stop = trio.Event()
        try:
            grpc_endpoint = await server.start_transports(
                root,
                cfg,
                dataplane,
                stop,
                rest=role == "rest",
                grpc=role == "grpc",
                reuse_port=True,
            )
        except server.StartupError as exc:
            link.send(("failed", str(exc)))
            with trio.move_on_after(2):
                await trio.sleep(0.2)
            root.cancel_scope.cancel()
            return 1
        server.freeze_heap()
        link.send(("ready",))
        log.debug("front-end %s-%d serving (pid %d)", role, index, os.getpid())
        async with trio.open_nursery() as waiter:

            async def _until(event: trio.Event) -> None:
                await event.wait()
                waiter.cancel_scope.cancel()

            waiter.start_soon(_until, link.drain)
            waiter.start_soon(_until, link.gone)
        stop.set()
        if link.gone.is_set():
            log.error("front-end %s-%d: the engine is gone; exiting", role, index)
            dataplane.shutting_down = True
            if grpc_endpoint is not None:
                grpc_endpoint.stop()
            with trio.move_on_after(1):
                await dataplane.wait_idle()
            code = 1
        else:
            await server.drain(cfg, dataplane, grpc_endpoint)
        root.cancel_scope.cancel()
    return code


def _configure_logging(cfg: ServerConfig, name: str) -> None:
    level = logging.DEBUG if cfg.log_level == "TRACE" else getattr(logging, cfg.log_level)
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)s %(name)s [{name}]: %(message)s",
        filename=str(cfg.log_path) if cfg.log_path is not None else None,
    )


def main(argv: Sequence[str]) -> int:
    """``argv``: the front-end's name (``rest-0``: for ``ps``), its four file descriptors
    (socket, control, request arena, response arena) and the engine's pid."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    *fds, engine_pid = (int(a) for a in argv[1:])
    if os.getppid() != engine_pid:  # the engine died before the death signal was armed
        return 1
    _malloc.tune()
    try:
        return trio.run(serve, fds, engine_pid)
    except OvtrioError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
