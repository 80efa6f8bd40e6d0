"""The root nursery: registry, REST (hypercorn trio worker), gRPC (grpclib on its thread), signals.

Start order: the registry task starts (models load in the background, server not ready yet),
then REST and gRPC listen, then the initial configuration loads and the server becomes ready.

Shutdown (SIGINT or SIGTERM): stop accepting (both ports), let in-flight inferences finish
within ``graceful_timeout_s``, then cancel everything, deinitialize the custom nodes (waiting
for their running calls until the same deadline) and exit 0. A second signal cancels at once.
"""

from __future__ import annotations

import functools
import gc
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
from .dataplane import DataPlane, image_options
from .grpc import build_rpc_table
from .grpc import serve as grpc_serve
from .metrics import Metrics
from .repository import ModelRegistry
from .rest._server import serve as rest_serve
from .rest.app import create_app
from .rest.cors import Cors
from .rest.fast import FastPath
from .runtime import ov_core

if TYPE_CHECKING:
    from .grpc import GrpcEndpoint

__all__ = [
    "StartupError",
    "build_dataplane",
    "drain",
    "install_patches",
    "prepare",
    "run",
    "serve",
    "start_transports",
    "watch_signals",
]

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
    from . import workers

    try:
        trio.run(workers.serve if workers.uses_workers(cfg) else serve, cfg)
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


def _hypercorn_config(cfg: ServerConfig, *, reuse_port: bool = False) -> HypercornConfig:
    hc = HypercornConfig()
    if reuse_port:
        hc.workers = 2  # several processes serve the port: rest._server binds with SO_REUSEPORT
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


def addresses(hosts: tuple[str, ...], port: int) -> str:
    """The addresses a port is served on, for the start-up line ("off" without the port)."""
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
    await prepare(cfg)
    dataplane = build_dataplane(cfg)
    stop = trio.Event()
    deadline = -math.inf
    async with trio.open_nursery() as root:
        root.start_soon(watch_signals, stop, root.cancel_scope)
        await root.start(_malloc.keep)
        await root.start(dataplane.registry.run)
        grpc_endpoint = await start_transports(root, cfg, dataplane, stop)
        log.info(
            "ovtrio %s serving: gRPC %s, REST %s",
            __version__,
            addresses(cfg.grpc_bind_address, cfg.port),
            addresses(cfg.rest_bind_address, cfg.rest_port),
        )
        start_after_load(root, cfg, dataplane)
        task_status.started(dataplane)
        await stop.wait()
        deadline = await drain(cfg, dataplane, grpc_endpoint)
        root.cancel_scope.cancel()
    await shut_down_nodes(dataplane, deadline)
    log.info("stopped")


def install_patches() -> None:
    """``ovtrio._patches.install``; ``StartupError`` if a patched library is not its pinned
    version."""
    try:
        _patches.install()
    except _patches.PinError as exc:
        raise StartupError(str(exc)) from None


async def prepare(cfg: ServerConfig) -> None:
    """What the process holding the models does before it builds them: the patches, the demo
    model, the OpenVINO cache, the warnings about flags."""
    install_patches()
    if cfg.demo:
        from .demo import ensure_demo_model

        for m in cfg.models:
            await trio.to_thread.run_sync(ensure_demo_model, Path(m.base_path))
    if cfg.cache_dir is not None:
        ov_core().set_property({"CACHE_DIR": str(cfg.cache_dir)})  # type: ignore[attr-defined]
    for flag in cfg.ignored_flags:
        log.warning("flag --%s is accepted for OVMS compatibility but has no effect", flag)
    for origin in cfg.cors.unmatchable_origins:
        log.warning("--allowed_origins: %r has no scheme: no browser's Origin matches it", origin)


def build_dataplane(cfg: ServerConfig) -> DataPlane:
    """The registry (not running yet: start ``dataplane.registry.run``), the metrics and the
    data plane over them."""
    metrics: Metrics | None = None
    registry = ModelRegistry(
        cfg.models,
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
    return DataPlane(
        registry,
        image_options(cfg),
        metrics,
        max_tensor_elements=cfg.max_tensor_elements,
        max_json_depth=cfg.rest_max_json_depth,
    )


async def start_transports(
    nursery: trio.Nursery,
    cfg: ServerConfig,
    dataplane: DataPlane,
    stop: trio.Event,
    *,
    rest: bool = True,
    grpc: bool = True,
    reuse_port: bool = False,
) -> GrpcEndpoint | None:
    """Start the REST server (it stops accepting when ``stop`` is set) and the gRPC server
    on the ports ``cfg`` enables, in ``nursery``; return the gRPC endpoint (None without
    gRPC). ``reuse_port``: bind with ``SO_REUSEPORT``, sharing the port with the other
    processes of the server. Raises ``OSError`` naming the address if a port cannot be bound."""
    grpc_endpoint: GrpcEndpoint | None = None
    if rest and cfg.rest_port:
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
        await nursery.start(
            functools.partial(
                rest_serve,
                app,
                _hypercorn_config(cfg, reuse_port=reuse_port),
                max_connections=cfg.max_connections,
                max_body_bytes=cfg.rest_max_body_bytes,
                shutdown_trigger=stop.wait,
            )
        )
    if grpc and cfg.port:
        grpc_endpoint = await nursery.start(
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
                reuse_port=reuse_port,
            )
        )
        dataplane.load.add_transport(grpc_endpoint.active)
    return grpc_endpoint


async def drain(
    cfg: ServerConfig, dataplane: DataPlane, grpc_endpoint: GrpcEndpoint | None
) -> float:
    """The graceful shutdown: refuse new inferences, stop the gRPC listener (the REST one
    stops on ``stop``), and give in-flight inferences ``graceful_timeout_s``. Returns that
    deadline (trio's clock)."""
    log.info("shutting down: draining in-flight requests (up to %ss)", cfg.graceful_timeout_s)
    dataplane.shutting_down = True
    if grpc_endpoint is not None:
        grpc_endpoint.stop()
    deadline = trio.current_time() + cfg.graceful_timeout_s
    with trio.move_on_at(deadline):
        await dataplane.wait_idle()
    if dataplane.in_flight:
        log.warning("grace period over: cancelling %d in-flight requests", dataplane.in_flight)
    return deadline


async def shut_down_nodes(dataplane: DataPlane, deadline: float) -> None:
    """Deinitialize the pipelines' custom nodes and unload their libraries, waiting for calls
    still running in their threads until ``deadline`` (the graceful one; -inf: none)."""
    with trio.CancelScope(shield=True):
        await dataplane.registry.pipelines.shutdown(deadline)


def start_after_load(root: trio.Nursery, cfg: ServerConfig, dataplane: DataPlane) -> None:
    """What runs once the initial models are loaded, in one process or in the engine: the
    demo hint (``--demo``) and ``_freeze_heap_when_loaded``."""
    if cfg.demo:
        root.start_soon(_print_demo_hint, cfg, dataplane.registry)
    root.start_soon(_freeze_heap_when_loaded, dataplane)


def freeze_heap() -> None:
    """Collect, then move every object alive to the cyclic collector's permanent generation
    (``gc.freeze``), so that its collections no longer walk the modules, models and
    configuration loaded at start; objects made later are collected as before.

    Why (measured): at 64 tiny-model gRPC clients the collector's full passes over that heap
    were ~13 % of the serving thread's CPU (perf); frozen, server CPU per request fell by
    ~12 % (A/B in the commit that added this)."""
    gc.collect()
    gc.freeze()


async def _freeze_heap_when_loaded(dataplane: DataPlane) -> None:
    """``freeze_heap`` once the initial configuration's models are loaded and no request is
    in flight (a request's cycles frozen with the rest would never be collected)."""
    await dataplane.registry.loaded.wait()
    await dataplane.wait_idle()
    freeze_heap()


async def _print_demo_hint(cfg: ServerConfig, registry: ModelRegistry) -> None:
    """Once the models are loaded, how to call the demo model (``--demo``), on stdout."""
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


async def watch_signals(stop: trio.Event, root_scope: trio.CancelScope) -> None:
    """Set ``stop`` at the first SIGINT/SIGTERM; cancel ``root_scope`` at the second."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if not stop.is_set():
                log.info("received %s", signal.Signals(signum).name)
                stop.set()
            else:
                log.warning("second signal: exiting now")
                root_scope.cancel()
                return
