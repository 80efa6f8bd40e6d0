"""The engine process: the registry, the batchers and OpenVINO, and the front-ends it supervises.

``serve`` is ``server.serve`` without listeners: it holds each port (a bound, not listening
``SO_REUSEPORT`` socket: a port another program holds stops the start with one line, and
nothing else can take the port while front-ends restart), starts the front-ends from its
nursery and answers their messages with its own ``DataPlane``.

A front-end that dies is started again (its in-flight calls are cancelled here, its arenas
dropped); the other front-ends do not notice. A front-end that fails before it is ready (its
port cannot be bound, ...) stops the server's start. On SIGINT/SIGTERM every front-end drains
(``("drain",)``) within ``graceful_timeout_s``; one still alive a second later is killed.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from .. import server
from .._version import __version__
from ..config import ServerConfig
from ..dataplane import DataPlane, image_targets
from ..errors import OvtrioError
from ._protocol import (
    Codec,
    SharedArena,
    VersionRef,
    pack_response,
    portable_error,
    read_payloads,
    unpack_request,
    write_frames,
)

__all__ = ["serve"]

log = logging.getLogger("ovtrio.workers")

_RESTART_BACKOFF_S = 1.0
_KILL_AFTER_GRACE_S = 1.0

_CONTROL_METHODS = frozenset(
    {
        "ready",
        "server_metadata",
        "model_ready",
        "model_metadata",
        "model_config",
        "resolve_label",
        "model_status",
        "model_statistics",
        "all_statuses",
        "repository_index",
    }
)
_ASYNC_METHODS = frozenset({"reload_config", "load_model", "unload_model"})


@dataclass(frozen=True, slots=True)
class _Slot:
    role: str
    """``rest`` or ``grpc``."""
    index: int

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


class _Connection:
    """The engine's side of one front-end process: its messages and its control calls."""

    def __init__(
        self,
        dataplane: DataPlane,
        stream: trio.SocketStream,
        control: trio.SocketStream,
        requests: SharedArena,
        responses: SharedArena,
        all_started: trio.Event,
    ) -> None:
        self._dp = dataplane
        self._all_started = all_started
        self._stream = stream
        self._control = control
        self._responses = responses
        self._codec = Codec(out=responses, into=requests)
        self._send, self._outbox = trio.open_memory_channel[bytes](float("inf"))
        self._scopes: dict[int, trio.CancelScope] = {}
        self.ready = trio.Event()
        self.failure = ""
        self.held = 0
        """The requests the front-end's transport held when it sent its last inference."""

    def send(self, message: tuple[Any, ...], *, typed: bool = False) -> None:
        """Queue ``message`` (``typed``: it may hold datatypes)."""
        codec = self._codec
        try:
            self._send.send_nowait(codec.dumps_typed(message) if typed else codec.dumps(message))
        except trio.ClosedResourceError:
            pass

    async def run(self, process: trio.Process, name: str) -> None:
        """Serve the front-end's messages until its socket closes. A message the engine
        cannot read ends that front-end (killed, then started again), not the engine."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_frames, self._stream, self._outbox)
                nursery.start_soon(self._serve_control)
                await self._read(nursery)
                nursery.cancel_scope.cancel()
        except Exception:
            log.exception("front-end %s: protocol error; killing it", name)
            process.kill()

    async def _read(self, nursery: trio.Nursery) -> None:
        async for payloads in read_payloads(self._stream):
            for payload in payloads:
                self._dispatch(self._codec.loads(payload), nursery)

    def _dispatch(self, message: tuple[Any, ...], nursery: trio.Nursery) -> None:
        kind = message[0]
        if kind == "infer":
            _, call_id, packed, api, interface, self.held = message
            request = unpack_request(self._codec, packed)
            scope = trio.CancelScope()
            self._scopes[call_id] = scope
            nursery.start_soon(self._infer, call_id, scope, request, api, interface)
        elif kind == "cancel":
            cancelled = self._scopes.get(message[1])
            if cancelled is not None:
                cancelled.cancel()
        elif kind == "release":
            for offset in message[1]:
                self._responses.arena.free(offset)
        elif kind == "call":
            _, call_id, method, args = message
            nursery.start_soon(self._call, call_id, method, args)
        elif kind == "ready":
            self.ready.set()
        elif kind == "failed":
            self.failure = message[1]

    async def _infer(
        self, call_id: int, scope: trio.CancelScope, request: Any, api: str, interface: str
    ) -> None:
        answer: tuple[Any, ...]
        try:
            with scope:
                try:
                    response = await self._dp.infer(request, api=api, interface=interface)
                    answer = ("answer", call_id, pack_response(self._codec, response))
                except OvtrioError as exc:
                    answer = ("error", call_id, portable_error(exc))
                except Exception as exc:
                    log.exception("inference failed")
                    answer = ("error", call_id, portable_error(exc))
            if scope.cancelled_caught:
                answer = ("error", call_id, OvtrioError("Request cancelled"))
            del request
            self.send(answer)
        finally:
            del self._scopes[call_id]

    async def _call(self, call_id: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            if method == "version_for_infer":
                mv = await self._dp.version_for_infer(*args)
                value: Any = VersionRef(mv.version, tuple(mv.inputs), image_targets(mv))
            elif method in _ASYNC_METHODS:
                value = await getattr(self._dp, method)(*args)
            else:
                raise OvtrioError(f"unknown engine call {method!r}")
            answer: tuple[Any, ...] = ("done", call_id, value)
        except Exception as exc:
            answer = ("error", call_id, portable_error(exc))
        self.send(answer, typed=True)

    async def _serve_control(self) -> None:
        codec = Codec(None, None)
        async for payloads in read_payloads(self._control):
            for payload in payloads:
                method, args = codec.loads(payload)
                try:
                    answer: tuple[bool, Any] = (True, self._control_call(method, args))
                except Exception as exc:
                    answer = (False, portable_error(exc))
                try:
                    await self._control.send_all(codec.dumps_typed(answer))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

    def _control_call(self, method: str, args: tuple[Any, ...]) -> Any:
        if method == "metrics_exposition":
            if self._dp.metrics is None:
                raise OvtrioError("metrics are not enabled")
            return self._dp.metrics.exposition()
        if method not in _CONTROL_METHODS:
            raise OvtrioError(f"unknown engine call {method!r}")
        if method == "ready" and not self._all_started.is_set():
            return False  # not until every front-end serves its port
        return getattr(self._dp, method)(*args)


class Supervisor:
    """Starts the front-ends, starts each again when it dies, and drains them."""

    def __init__(self, cfg: ServerConfig, dataplane: DataPlane) -> None:
        self._cfg = cfg
        self._dp = dataplane
        self._slots = [_Slot("rest", i) for i in range(cfg.rest_workers if cfg.rest_port else 0)]
        self._slots += [_Slot("grpc", i) for i in range(cfg.grpc_workers if cfg.port else 0)]
        self._live: dict[_Slot, _Connection] = {}
        self._processes: dict[_Slot, trio.Process] = {}
        self._draining = False
        self._all_started = trio.Event()
        self._all_exited = trio.Event()
        dataplane.load.add_transport(self.held)

    def held(self) -> int:
        """The requests the front-ends hold (as of each one's last inference): the engine's
        "sole request runs inline" counts them as one process counts its transports'."""
        return sum(conn.held for conn in self._live.values())

    @property
    def pids(self) -> dict[str, int]:
        """The front-ends' pids by name (``rest-0``, ``grpc-1``, ...)."""
        return {slot.name: p.pid for slot, p in self._processes.items()}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every front-end (raise ``StartupError`` if one cannot start), report started,
        and keep them running until ``drain``."""
        failures: list[str] = []
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as starting:  # in parallel: each imports ovtrio
                for slot in self._slots:
                    starting.start_soon(self._start, nursery, slot, failures, starting)
            if failures:
                nursery.cancel_scope.cancel()
            else:
                self._all_started.set()
                task_status.started()
        self._all_exited.set()
        if failures:
            raise server.StartupError(failures[0])

    async def _start(
        self, nursery: trio.Nursery, slot: _Slot, failures: list[str], starting: trio.Nursery
    ) -> None:
        try:
            await nursery.start(self._keep, slot)
        except server.StartupError as exc:
            failures.append(str(exc))
            starting.cancel_scope.cancel()

    async def drain(self, grace_s: float) -> None:
        """Ask every front-end to drain; wait for them within ``grace_s`` (and a second)."""
        self._draining = True
        for conn in self._live.values():
            conn.send(("drain",))
        with trio.move_on_after(grace_s + _KILL_AFTER_GRACE_S):
            await self._all_exited.wait()
        for slot, process in self._processes.items():
            if process.returncode is None:
                log.warning("front-end %s did not stop in time: killing it", slot.name)
                process.kill()

    async def _keep(self, slot: _Slot, *, task_status: trio.TaskStatus[None]) -> None:
        code = await self._run_one(slot, task_status)
        while not self._draining:
            log.error("front-end %s exited with %s: starting it again", slot.name, code)
            started = trio.current_time()
            code = await self._run_one(slot, trio.TASK_STATUS_IGNORED)
            if trio.current_time() - started < _RESTART_BACKOFF_S and not self._draining:
                await trio.sleep(_RESTART_BACKOFF_S)
        if code:
            log.warning("front-end %s exited with %s", slot.name, code)

    async def _run_one(self, slot: _Slot, task_status: trio.TaskStatus[None]) -> int:
        """Run one front-end process until it exits; its exit code."""
        tag = f"ovtrio-{os.getpid()}-{slot.name}"
        requests = SharedArena.create(f"{tag}-requests")
        responses = SharedArena.create(f"{tag}-responses")
        ours, theirs = socket.socketpair()
        control_ours, control_theirs = socket.socketpair()
        fds = (theirs.fileno(), control_theirs.fileno(), requests.fd, responses.fd)
        for fd in fds:
            os.set_inheritable(fd, True)
        try:
            process = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "ovtrio.workers._frontend",
                    slot.name,
                    *(str(fd) for fd in fds),
                    str(os.getpid()),
                ],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
            control_theirs.close()
            requests.close_fd()
            responses.close_fd()
        self._processes[slot] = process
        conn = _Connection(
            self._dp,
            trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
            trio.SocketStream(trio.socket.from_stdlib_socket(control_ours)),
            requests,
            responses,
            self._all_started,
        )
        conn.send(("hello", self._cfg, slot.role, slot.index), typed=True)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.run, process, slot.name)
                nursery.start_soon(self._report_ready, conn, slot, task_status)
                await process.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._live.pop(slot, None)
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
        if not conn.ready.is_set() and task_status is not trio.TASK_STATUS_IGNORED:
            reason = conn.failure or f"front-end {slot.name} exited with {process.returncode}"
            raise server.StartupError(reason)
        return process.returncode or 0

    async def _report_ready(
        self, conn: _Connection, slot: _Slot, task_status: trio.TaskStatus[None]
    ) -> None:
        await conn.ready.wait()
        self._live[slot] = conn
        if self._draining:
            conn.send(("drain",))
        task_status.started()


def _hold_port(hosts: Sequence[str], port: int, what: str) -> list[socket.socket]:
    """Bind (without listening) every address of each host:port with ``SO_REUSEPORT``: a port
    held by another program fails here, once, instead of in each front-end."""
    held: list[socket.socket] = []
    host = ""
    try:
        for host in hosts:
            for family, kind, proto, _, address in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            ):
                sock = socket.socket(family, kind, proto)
                held.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        for sock in held:
            sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        reason = exc.strerror or exc
        raise server.StartupError(f"Failed to start {what} server at {where}: {reason}") from None
    return held


async def serve(
    cfg: ServerConfig,
    *,
    task_status: trio.TaskStatus[DataPlane] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve with front-end processes until SIGINT/SIGTERM (or until cancelled)."""
    await server.prepare(cfg)
    held: list[socket.socket] = []
    if cfg.rest_port:
        held += _hold_port(cfg.rest_bind_address, cfg.rest_port, "REST")
    if cfg.port:
        held += _hold_port(cfg.grpc_bind_address, cfg.port, "gRPC")
    dataplane = server.build_dataplane(cfg)
    stop = trio.Event()
    deadline = -math.inf
    try:
        async with trio.open_nursery() as root:
            root.start_soon(server.watch_signals, stop, root.cancel_scope)
            await root.start(dataplane.registry.run)
            supervisor = Supervisor(cfg, dataplane)
            await root.start(supervisor.run)
            log.info(
                "ovtrio %s serving: gRPC %s, REST %s (engine pid %d, front-ends %s)",
                __version__,
                f"{server.addresses(cfg.grpc_bind_address, cfg.port)} x{cfg.grpc_workers}",
                f"{server.addresses(cfg.rest_bind_address, cfg.rest_port)} x{cfg.rest_workers}",
                os.getpid(),
                " ".join(f"{name}={pid}" for name, pid in supervisor.pids.items()),
            )
            server.start_after_load(root, cfg, dataplane)
            task_status.started(dataplane)
            await stop.wait()
            log.info(
                "shutting down: draining the front-ends' requests (up to %ss)",
                cfg.graceful_timeout_s,
            )
            deadline = trio.current_time() + cfg.graceful_timeout_s
            await supervisor.drain(cfg.graceful_timeout_s)
            root.cancel_scope.cancel()
    finally:
        for sock in held:
            sock.close()
    await server.shut_down_nodes(dataplane, deadline)
    log.info("stopped")


def uses_workers(cfg: ServerConfig) -> bool:
    """Whether ``cfg`` asks for front-end processes: more than one on a port it serves."""
    return (cfg.port != 0 and cfg.grpc_workers > 1) or (cfg.rest_port != 0 and cfg.rest_workers > 1)
