"""The root nursery: registry, REST (hypercorn trio worker), gRPC (grpclib on its thread), signals.

Start order: the registry task starts (models load in the background, server not ready yet),
then REST and gRPC listen, then the initial configuration loads and the server becomes ready.

Shutdown (SIGINT or SIGTERM): stop accepting (both ports), let in-flight inferences finish
within ``graceful_timeout_s``, then cancel everything, deinitialize the custom nodes (waiting
for their running calls until the same deadline) and exit 0. A second signal cancels at once.
"""

from __future__ import annotations

import functools
import logging
import math
import resource
import shlex
import signal
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig

from . import _malloc, _patches
from ._version import __version__
from .config import ServerConfig
from .dataplane import DataPlane
from .grpc import build_rpc_table
from .grpc import serve as grpc_serve
from .images import ImageOptions
from .metrics import Metrics
from .repository import ModelRegistry
from .rest._server import serve as rest_serve
from .rest.app import create_app
from .rest.cors import Cors
from .rest.fast import FastPath
from .runtime import ov_core

if TYPE_CHECKING:
    from .grpc import GrpcEndpoint

__all__ = ["StartupError", "run", "serve"]

log = logging.getLogger("ovtrio")


def _raise_fd_limit() -> None:
    """Let the process hold as many connections as --max_connections allows on both ports."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 65536), hard))
    except (ValueError, OSError):
        pass


def run(cfg: ServerConfig) -> int:
    """Run the server until a signal stops it. Returns the process exit code."""
    _raise_fd_limit()
    try:
        trio.run(serve, cfg)
    except BaseException as exc:  # start-up failures become one log line
        leaf = _leaf(exc)
        if isinstance(leaf, (OSError, StartupError)):
            log.error("%s", leaf)
            return 1
        if isinstance(leaf, KeyboardInterrupt):
            return 0
        raise
    return 0


class StartupError(Exception):
    """The server cannot start (a port cannot be bound, ...)."""


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _hypercorn_config(cfg: ServerConfig) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [_address(host, cfg.rest_port) for host in cfg.rest_bind_address]
    hc.graceful_timeout = cfg.graceful_timeout_s
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = cfg.rest_idle_timeout_s
    hc.read_timeout = math.ceil(cfg.rest_read_timeout_s)
    hc.h11_max_incomplete_size = cfg.rest_max_header_bytes
    hc.h2_max_header_list_size = cfg.rest_max_header_bytes
    if cfg.ssl_certificate is not None and cfg.ssl_key is not None:
        hc.certfile = str(cfg.ssl_certificate)
        hc.keyfile = str(cfg.ssl_key)
        if cfg.ssl_ca is not None:
            hc.ca_certs = str(cfg.ssl_ca)
            hc.verify_mode = ssl.CERT_REQUIRED
    return hc


def _address(host: str, port: int) -> str:
    """``host:port``, IPv6 addresses in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _addresses(hosts: tuple[str, ...], port: int) -> str:
    return ", ".join(_address(h, port) for h in hosts) if port else "off"


def _grpc_ssl_context(cfg: ServerConfig) -> ssl.SSLContext | None:
    if cfg.ssl_certificate is None or cfg.ssl_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cfg.ssl_certificate), str(cfg.ssl_key))
    ctx.set_alpn_protocols(["h2"])
    if cfg.ssl_ca is not None:
        ctx.load_verify_locations(str(cfg.ssl_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def serve(
    cfg: ServerConfig, *, task_status: trio.TaskStatus[DataPlane] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until SIGINT/SIGTERM (or until cancelled).

    Installs ``ovtrio._patches`` first; raises ``StartupError`` if a patched library is not
    its pinned version.
    """
    try:
        _patches.install()
    except _patches.PinError as exc:
        raise StartupError(str(exc)) from None
    models = cfg.models
    if cfg.demo:
        from .demo import ensure_demo_model

        for m in models:
            await trio.to_thread.run_sync(ensure_demo_model, Path(m.base_path))
    if cfg.cache_dir is not None:
        ov_core().set_property({"CACHE_DIR": str(cfg.cache_dir)})  # type: ignore[attr-defined]
    for flag in cfg.ignored_flags:
        log.warning("flag --%s is accepted for OVMS compatibility but has no effect", flag)
    for origin in cfg.cors.unmatchable_origins:
        log.warning("--allowed_origins: %r has no scheme: no browser's Origin matches it", origin)

    metrics: Metrics | None = None
    registry = ModelRegistry(
        models,
        pipelines=cfg.pipelines,
        libraries=cfg.libraries,
        config_path=cfg.config_path,
        batching_defaults=cfg.batching,
        poll_wait_s=cfg.file_system_poll_wait_seconds,
        observer_factory=lambda name, version: (
            metrics.observer(name, version) if metrics is not None else _no_observer
        ),
    )
    if cfg.metrics_enable:
        metrics = Metrics(cfg.metrics_list, registry)
    dataplane = DataPlane(
        registry,
        ImageOptions(color_order=cfg.image_color_order, max_pixels=cfg.image_max_pixels),
        metrics,
        max_tensor_elements=cfg.max_tensor_elements,
        max_json_depth=cfg.rest_max_json_depth,
    )
    stop = trio.Event()
    deadline = -math.inf
    async with trio.open_nursery() as root:
        root.start_soon(_watch_signals, stop, root.cancel_scope)
        await root.start(_malloc.keep)
        await root.start(registry.run)
        grpc_endpoint: GrpcEndpoint | None = None
        if cfg.rest_port:
            fast = FastPath(
                create_app(  # type: ignore[arg-type]
                    dataplane, max_body_bytes=cfg.rest_max_body_bytes, api_keys=cfg.api_keys
                ),
                dataplane,
                max_body_bytes=cfg.rest_max_body_bytes,
                api_keys=cfg.api_keys,
            )
            dataplane.load.add_transport(lambda: fast.active)
            app: Any = Cors(fast, cfg.cors)  # ASGI; hypercorn's types want TypedDict scopes
            # A port that cannot be bound raises OSError naming the address: run() logs it.
            await root.start(
                functools.partial(
                    rest_serve,
                    app,
                    _hypercorn_config(cfg),
                    max_connections=cfg.max_connections,
                    max_body_bytes=cfg.rest_max_body_bytes,
                    shutdown_trigger=stop.wait,
                )
            )
        if cfg.port:
            grpc_endpoint = await root.start(
                functools.partial(
                    grpc_serve,
                    build_rpc_table(dataplane),
                    cfg.grpc_bind_address,
                    cfg.port,
                    ssl_context=_grpc_ssl_context(cfg),
                    api_keys=cfg.api_keys,
                    max_message_bytes=cfg.grpc_max_message_bytes,
                    max_connections=cfg.max_connections,
                    max_streams=cfg.grpc_max_concurrent_streams,
                )
            )
            dataplane.load.add_transport(grpc_endpoint.active)
        log.info(
            "ovtrio %s serving: gRPC %s, REST %s",
            __version__,
            _addresses(cfg.grpc_bind_address, cfg.port),
            _addresses(cfg.rest_bind_address, cfg.rest_port),
        )
        if cfg.demo:
            root.start_soon(_print_demo_hint, cfg, registry)
        task_status.started(dataplane)
        await stop.wait()

        log.info("shutting down: draining in-flight requests (up to %ss)", cfg.graceful_timeout_s)
        dataplane.shutting_down = True
        if grpc_endpoint is not None:
            grpc_endpoint.stop()
        deadline = trio.current_time() + cfg.graceful_timeout_s
        with trio.move_on_at(deadline):
            await dataplane.wait_idle()
        if dataplane.in_flight:
            log.warning("grace period over: cancelling %d in-flight requests", dataplane.in_flight)
        root.cancel_scope.cancel()
    with trio.CancelScope(shield=True):  # custom nodes: deinitialize, unload (same deadline)
        await registry.pipelines.shutdown(deadline)
    log.info("stopped")


async def _print_demo_hint(cfg: ServerConfig, registry: ModelRegistry) -> None:
    await registry.loaded.wait()
    name = cfg.models[0].name
    lines = [
        "",
        f"The demo model '{name}' is ready: input_name FP32 [-1,10] -> output_name = 2x+1.",
    ]
    if cfg.rest_port:
        lines += [
            "Call it over REST:",
            f"  curl -s -X POST http://localhost:{cfg.rest_port}/v2/models/{name}/infer "
            '-d \'{"inputs": [{"name": "input_name", "shape": [1, 10], '
            '"datatype": "FP32", "data": [1,2,3,4,5,6,7,8,9,10]}]}\'',
        ]
    if cfg.port:
        python = _python()
        lines += [
            "or over gRPC with tritonclient, installed into this server's Python:",
            f"  {python} -m pip install 'tritonclient[grpc]'",
            f'  {python} -c "import numpy as np, tritonclient.grpc as g; '
            f"c = g.InferenceServerClient('localhost:{cfg.port}'); "
            "i = g.InferInput('input_name', [1, 10], 'FP32'); "
            f"i.set_data_from_numpy(np.arange(10, dtype=np.float32)[None]); "
            f"print(c.infer('{name}', [i]).as_numpy('output_name'))\"",
        ]
    print("\n".join(lines), flush=True)


def _python() -> str:
    """The interpreter running the server, as a command a shell can run (its venv's python)."""
    return shlex.quote(sys.executable or "python3")


def _no_observer(_kind: str, _seconds: float) -> None:
    return None


async def _watch_signals(stop: trio.Event, root_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if not stop.is_set():
                log.info("received %s", signal.Signals(signum).name)
                stop.set()
            else:
                log.warning("second signal: exiting now")
                root_scope.cancel()
                return
