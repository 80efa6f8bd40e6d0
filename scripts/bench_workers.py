#!/usr/bin/env python3
"""Front-end workers against one process, in one run: requests/s, CPU per request by process
role, and memory (docs/workers.md quotes its output).

For each worker count (1 = today's single process) it starts ovtrio on scripts/bench's models
with ``--rest_workers N --grpc_workers N``, and drives it with scripts/bench's closed-loop
tritonclient load: tiny at 64 clients and MobileNet-style at 4, over gRPC and REST (binary).
The counts alternate (1, 2, 1, 2, ...) and each point is the median of ``--repeat`` runs.
Besides requests/s it reports the CPU microseconds per request of the engine process alone
(the main process) and of the front-ends together, and the memory (RSS of every process, and
PSS, which counts a shared page once) with the three bench models loaded.

It also measures what the machine itself allows: two CPU-bound Python processes at once
against one alone, before and after the runs (a VM's two vCPUs may share a physical core, or
its host may be busy: then no two-process server can gain 2x, whatever it does).

Usage: scripts/bench_workers.py [--workers 1,2] [--duration 5] [--repeat 3]
                                [--points tiny:64,mobilenet:4] [--transports grpc,rest]
                                [--memory-workers 1,2,4] [--workdir DIR]
                                [--client tritonclient|perf_analyzer]

``--workers ""`` runs the memory part alone.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_loader = importlib.machinery.SourceFileLoader("ovtrio_bench", str(HERE / "bench"))
_spec = importlib.util.spec_from_loader("ovtrio_bench", _loader)
assert _spec is not None
bench = importlib.util.module_from_spec(_spec)
_loader.exec_module(bench)
bench_models = bench.bench_models

POINTS = [("tiny", 64), ("mobilenet", 4)]


def own_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` alone (its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    out = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        out += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS summed over the process tree, PSS summed over it), MiB."""
    rss = pss = 0.0
    for p in tree(pid):
        for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss += int(line.split()[1]) / 1024
    return rss, pss


_SPIN = "import time\nt = time.process_time()\ns = 0\nfor i in range(8_000_000): s += i\n"


def parallel_capacity(rounds: int = 3) -> float:
    """How much pure-Python work two processes at once get done against one alone (2.0: two
    independent cores; less when the VM's two vCPUs share a physical core or its host is
    busy). The ceiling of any two-process gain on this machine, measured now."""

    def wall(n: int) -> float:
        t = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(n)]
        for p in procs:
            p.wait()
        return time.perf_counter() - t

    ratios = [2 * wall(1) / wall(2) for _ in range(rounds)]
    return sorted(ratios)[len(ratios) // 2]


def start(workdir: Path, names: list[str], workers: int) -> tuple[Any, int, int]:
    entries = [
        {
            "config": {
                "name": n,
                "base_path": str(bench_models.ensure(workdir / "models", n)),
                "plugin_config": bench.PLUGIN,
            }
        }
        for n in names
    ]
    cfg = workdir / f"config-w{workers}.json"
    cfg.write_text(json.dumps({"model_config_list": entries}))
    extra = ["--rest_workers", str(workers), "--grpc_workers", str(workers)]
    proc, grpc_port, rest_port = bench.launch(
        workdir / f"server-w{workers}.log",
        lambda g, r: [
            sys.executable,
            "-m",
            "ovtrio",
            "--config_path",
            str(cfg),
            "--port",
            str(g),
            "--rest_port",
            str(r),
            "--grpc_bind_address",
            "127.0.0.1",
            "--rest_bind_address",
            "127.0.0.1",
            "--log_level",
            "WARNING",
            *extra,
        ],
        env=dict(os.environ, PYTHONPATH=str(HERE.parent / "src")),
    )
    if workers > 1:  # every front-end up (the readiness probe needs only one per port)
        deadline = time.monotonic() + 120
        while len(tree(proc.pid)) < 1 + 2 * workers and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
    return proc, grpc_port, rest_port


def run_point(
    proc: Any, urls: dict[str, str], transport: str, model: str, clients: int, duration: float
) -> dict[str, float]:
    pids = tree(proc.pid)
    engine0 = own_cpu(proc.pid)
    total0 = bench.cpu_seconds(proc.pid)
    t0 = time.perf_counter()
    lat = asyncio.run(
        bench.load(
            transport,
            urls[transport],
            model,
            bench_models.input_shape(model),
            "x" if model == "tiny" else "input",
            clients,
            duration,
        )
    )
    elapsed = time.perf_counter() - t0
    n = max(1, len(lat))
    engine = own_cpu(proc.pid) - engine0
    total = bench.cpu_seconds(proc.pid) - total0
    scale = 1e6 * duration / elapsed / n
    return {
        "rps": len(lat) / duration,
        "engine_cpu_us": engine * scale,
        "frontends_cpu_us": (total - engine) * scale if len(pids) > 1 else 0.0,
        "server_cpu_us": total * scale,
    }


def run_point_pa(
    proc: Any, urls: dict[str, str], transport: str, model: str, clients: int, duration: float
) -> dict[str, float]:
    """One point with Triton's perf_analyzer (C++) as the load: one connection per client
    (``TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT=1``), so SO_REUSEPORT can spread them."""
    binary, env, why = bench.perf_analyzer.find()
    if binary is None:
        raise SystemExit(f"perf_analyzer: {why}")
    env = dict(env, TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT="1")
    protocol = "grpc" if transport == "grpc" else "http"
    pids = tree(proc.pid)
    before = bench.served_requests(urls["rest"], model)
    engine0, total0 = own_cpu(proc.pid), bench.cpu_seconds(proc.pid)
    rate, failed = bench.perf_analyzer_rate(
        binary, env, model, urls[transport], protocol, clients, int(duration * 1000),
        "--max-threads", str(clients),
    )  # fmt: skip
    if rate is None:
        raise SystemExit(f"perf_analyzer failed: {failed}")
    n = max(1, bench.served_requests(urls["rest"], model) - before)
    engine = own_cpu(proc.pid) - engine0
    total = bench.cpu_seconds(proc.pid) - total0
    return {
        "rps": rate,
        "engine_cpu_us": engine / n * 1e6,
        "frontends_cpu_us": (total - engine) / n * 1e6 if len(pids) > 1 else 0.0,
        "server_cpu_us": total / n * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory-workers", default="1,2,4")
    ap.add_argument("--transports", default="grpc,rest")
    ap.add_argument(
        "--points",
        default=",".join(f"{m}:{c}" for m, c in POINTS),
        help="model:clients pairs to measure (default: %(default)s)",
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--client",
        choices=["tritonclient", "perf_analyzer"],
        default="tritonclient",
        help="the load: tritonclient asyncio clients in this process, or perf_analyzer (C++, "
        "a client that leaves more of the shared cores to the server)",
    )
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ovtrio-bench-workers-"))
    workdir.mkdir(parents=True, exist_ok=True)
    counts = [int(w) for w in args.workers.split(",") if w]
    points = [(m, int(c)) for m, _, c in (p.partition(":") for p in args.points.split(","))]
    transports = args.transports.split(",")
    where = "in this process" if args.client == "tritonclient" else "perf_analyzer"
    print(f"{os.cpu_count()} CPUs; load generator: {where} (same cores)", flush=True)
    before = parallel_capacity()
    print(f"two processes of pure Python do {before:.2f}x the work of one", flush=True)
    point = run_point if args.client == "tritonclient" else run_point_pa
    samples: dict[tuple[int, str, str], list[dict[str, float]]] = {}
    for _ in range(args.repeat):
        for workers in counts:
            proc, grpc_port, rest_port = start(workdir, [m for m, _ in points], workers)
            urls = {"grpc": f"127.0.0.1:{grpc_port}", "rest": f"127.0.0.1:{rest_port}"}
            try:
                for model, clients in points:
                    for transport in transports:
                        r = point(proc, urls, transport, model, clients, args.duration)
                        samples.setdefault((workers, model, transport), []).append(r)
            finally:
                bench.stop(proc)
    print("\nmodel      transport clients workers   req/s  x(1)  engine us/req  front-ends us/req")
    for model, clients in points if counts else []:  # --workers "": the memory part alone
        for transport in transports:
            mids = {w: median_run(samples[(w, model, transport)]) for w in counts}
            base = mids[counts[0]]["rps"]
            for workers in counts:
                mid = mids[workers]
                print(
                    f"{model:10} {transport:9} {clients:7} {workers:7} {mid['rps']:7.0f} "
                    f"{mid['rps'] / base:5.2f} {mid['engine_cpu_us']:14.0f} "
                    f"{mid['frontends_cpu_us']:18.0f}",
                    flush=True,
                )
    after = parallel_capacity()
    print(
        f"\nparallel capacity of the machine (two processes vs one): {before:.2f}x before the"
        f" runs, {after:.2f}x after",
        flush=True,
    )
    mem_counts = [int(w) for w in args.memory_workers.split(",") if w]
    if mem_counts:
        print("\nmemory with tiny, mobilenet, resnet loaded (MiB)")
        for workers in mem_counts:
            proc, _, _ = start(workdir, ["tiny", "mobilenet", "resnet"], workers)
            try:
                time.sleep(2)
                rss, pss = memory_mib(proc.pid)
                engine_rss, _ = memory_mib_one(proc.pid)
                print(
                    f"  workers {workers}: processes {len(tree(proc.pid))}, RSS sum {rss:.0f}, "
                    f"PSS sum {pss:.0f}, engine RSS {engine_rss:.0f}",
                    flush=True,
                )
            finally:
                bench.stop(proc)


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median requests/s (the upper one for an even count)."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def memory_mib_one(pid: int) -> tuple[float, float]:
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


if __name__ == "__main__":
    main()
