"""KServe/Triton statistics extension (``/v2/models/{m}/stats``, ``ModelStatistics``). No I/O.

Triton's fields, filled from ovtrio's counters: ``success``/``fail`` per request (end to end
inside the server), ``compute_infer`` per OpenVINO inference (a batch counts once), ``queue``
the remainder of the successful requests' time; ``batch_stats`` per batch size. ovtrio's own
batcher counters are added under ``"ovtrio"`` in the JSON form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._proto import inference as pb

if TYPE_CHECKING:  # the type only: importing the repository would load the runtime
    from ..repository import VersionStatistics

__all__ = ["statistics_json", "statistics_proto"]


def _durations(st: VersionStatistics) -> dict[str, tuple[int, int]]:
    per_request_compute = st.compute_ns // st.inferences_completed if st.inferences_completed else 0
    queue_ns = max(0, st.success_ns - per_request_compute * st.success_count)
    return {
        "success": (st.success_count, st.success_ns),
        "fail": (st.fail_count, st.fail_ns),
        "queue": (st.success_count, queue_ns),
        "compute_input": (st.inferences_completed, 0),
        "compute_infer": (st.inferences_completed, st.compute_ns),
        "compute_output": (st.inferences_completed, 0),
        "cache_hit": (0, 0),
        "cache_miss": (0, 0),
    }


def _batches(st: VersionStatistics) -> list[tuple[int, int, int]]:
    """(batch size in samples, count, compute ns) from the batcher's histogram."""
    b = st.batcher
    if b is None or not b.batches:
        return []
    per_batch = int(b.inference_time_s * 1e9 / b.batches)
    return [(size, n, n * per_batch) for size, n in sorted(b.batch_size_histogram.items())]


def _extra(st: VersionStatistics) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "inferences_completed": st.inferences_completed,
        "inferences_cancelled": st.inferences_cancelled,
        "inferences_abandoned": st.inferences_abandoned,
        "repair_inferences": st.repair_inferences,
        "inferences_inline": st.inferences_inline,
        "infer_requests": st.nireq,
        "queue_length": st.queue_length,
        "rejected": st.rejected,
        "cancelled_queued": 0,
        "cancelled_running": st.inferences_cancelled,
    }
    b = st.batcher
    if b is not None:
        extra.update(
            queue_length=b.queue_length,
            max_queue_size=b.max_queue_size,
            allowed_batch_sizes=list(b.allowed_batch_sizes),
            batches=b.batches,
            cancelled_queued=b.cancelled_queued,
            cancelled_running=b.cancelled_running,
            rejected=b.rejected,
            running_batches=list(b.running),
        )
    return extra


def statistics_json(name: str, st: VersionStatistics) -> dict[str, Any]:
    return {
        "name": name,
        "version": str(st.version),
        "last_inference": st.last_inference_ms,
        "inference_count": st.success_count,
        "execution_count": st.inferences_completed,
        "inference_stats": {k: {"count": c, "ns": ns} for k, (c, ns) in _durations(st).items()},
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": {"count": n, "ns": 0},
                "compute_infer": {"count": n, "ns": ns},
                "compute_output": {"count": n, "ns": 0},
            }
            for size, n, ns in _batches(st)
        ],
        "memory_usage": [],
        "ovtrio": _extra(st),
    }


def statistics_proto(name: str, st: VersionStatistics) -> pb.ModelStatistics:
    d = {k: pb.StatisticDuration(count=c, ns=ns) for k, (c, ns) in _durations(st).items()}
    return pb.ModelStatistics(
        name=name,
        version=str(st.version),
        last_inference=st.last_inference_ms,
        inference_count=st.success_count,
        execution_count=st.inferences_completed,
        inference_stats=pb.InferStatistics(**d),
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=size,
                compute_input=pb.StatisticDuration(count=n, ns=0),
                compute_infer=pb.StatisticDuration(count=n, ns=ns),
                compute_output=pb.StatisticDuration(count=n, ns=0),
            )
            for size, n, ns in _batches(st)
        ],
    )
