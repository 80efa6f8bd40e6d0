"""Command-line entry point: argv -> ``config.load`` -> logging -> ``server.run``, or a
config-management command that edits config.json and exits."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import config

__all__ = ["main"]

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _fail(message: str) -> NoReturn:
    """Print one ``ovtrio: error:`` line to stderr and exit with status 1."""
    print(f"ovtrio: error: {' '.join(message.splitlines())}", file=sys.stderr)
    sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the server with ``argv`` (default ``sys.argv[1:]``); never returns.

    Exit status: 0 after ``--help`` / ``--version`` or a config-management command
    (``--list_models``, ``--add_to_config``, ``--remove_from_config``), 1 for a configuration
    error, a failed management command or an ``--cpu_extension`` OpenVINO cannot load,
    otherwise whatever ``server.run`` returns.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        command = config.management_command(args)
        if command is None:
            cfg = config.load(args)
        else:
            config.run_management(command, sys.stdout)
    except config.ConfigError as exc:
        _fail(str(exc))
    if command is not None:
        sys.exit(0)

    # DEBUG is ovtrio's own detail (a line per inference request, load and unload); TRACE
    # adds the libraries' debug output (every HTTP/2 header and frame).
    level = logging.DEBUG if cfg.log_level == "TRACE" else getattr(logging, cfg.log_level)
    try:
        logging.basicConfig(
            level=logging.INFO if cfg.log_level == "DEBUG" else level,
            format=_LOG_FORMAT,
            filename=str(cfg.log_path) if cfg.log_path is not None else None,
        )
    except OSError as exc:
        _fail(f"--log_path: cannot open {cfg.log_path}: {exc.strerror or exc}")
    logging.getLogger("ovtrio").setLevel(level)

    if cfg.cpu_extension is not None:
        from .runtime import LoadError, load_cpu_extension  # lazy, as below

        try:
            load_cpu_extension(cfg.cpu_extension)
        except LoadError as exc:
            _fail(str(exc))
        logging.getLogger(__name__).info("loaded the CPU extension %s", cfg.cpu_extension)

    from .server import run  # lazy: --help and config errors must not import trio/openvino

    _leave(run(cfg))


def _leave(code: int) -> NoReturn:
    """Exit with ``code`` without the interpreter's teardown: after a clean stop, destroying
    OpenVINO's C++ objects there can meet one of its threads still joinable, and the process
    aborts ("terminate called without an active exception", exit -6 instead of 0)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
