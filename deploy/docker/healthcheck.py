"""The container's health check: ``GET /v2/health/ready`` on ovtrio's REST port answers 200.

The image runs ``ovtrio`` with whatever flags the user gives, so the port is read from ovtrio's
own command line (``/proc/<pid>/cmdline`` of the process running ovtrio), not configured twice:
``--rest_port``, ``--rest_bind_address`` and, with ``--ssl_certificate``, HTTPS (the
certificate is not verified: this is the container asking itself). Where REST cannot answer the
check (no ``--rest_port``, or ``--ssl_ca`` requiring a client certificate), a TCP connection to
the gRPC port (``--port``) is the check. ``healthcheck.py -- ARGS...`` checks the server started
with ARGS instead of looking for the process. Exit status 0 = healthy, 1 = not. Standard library
only: the image has Python and no curl.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_S = 2.0
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def ovtrio_argv() -> list[str] | None:
    """The arguments of the first process running ovtrio (``ovtrio ...``, ``python -m ovtrio``)."""
    pids = sorted(
        (p for p in Path("/proc").iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
    )
    for proc in pids:
        try:
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]
        for i, arg in enumerate(argv):
            if os.path.basename(arg) == "ovtrio":
                return argv[i + 1 :]
            if arg == "-m" and argv[i + 1 : i + 2] == ["ovtrio"]:
                return argv[i + 2 :]
    return None


def flags(argv: list[str]) -> dict[str, str]:
    """``--name value`` and ``--name=value`` pairs (the last one of a name wins, as in argparse)."""
    out: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        if eq:
            out[name] = value
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[name] = argv[i + 1]
    return out


def first_address(bind_address: str) -> str:
    """The first of a comma-separated list of addresses (the server listens on each)."""
    first = bind_address.split(",")[0].strip()
    return WILDCARDS.get(first, first)


def host(bind_address: str) -> str:
    address = first_address(bind_address)
    return f"[{address}]" if ":" in address else address


def rest_url(argv: list[str]) -> str | None:
    """The readiness URL of the server started with ``argv``; None where REST cannot tell."""
    f = flags(argv)
    rest_port = int(f.get("rest_port", "0"))
    if not rest_port or "ssl_ca" in f:
        return None
    scheme = "https" if "ssl_certificate" in f else "http"
    return f"{scheme}://{host(f.get('rest_bind_address', ''))}:{rest_port}/v2/health/ready"


def check(argv: list[str]) -> bool:
    url = rest_url(argv)
    if url is not None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False
    f = flags(argv)
    grpc_port = int(f.get("port", "0"))
    if not grpc_port:
        return False
    address = first_address(f.get("grpc_bind_address", "")).strip("[]")
    try:
        socket.create_connection((address, grpc_port), timeout=TIMEOUT_S).close()
    except OSError:
        return False
    return True


def main() -> int:
    if sys.argv[1:2] == ["--"]:
        argv: list[str] | None = sys.argv[2:]
    else:
        argv = ovtrio_argv()
    if argv is None:
        print("no ovtrio process found", file=sys.stderr)
        return 1
    return 0 if check(argv) else 1


if __name__ == "__main__":
    sys.exit(main())
