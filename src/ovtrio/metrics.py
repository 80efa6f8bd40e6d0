"""Prometheus metrics (``GET /metrics`` with ``--metrics_enable``), through prometheus-client.

OVMS' names, labels and buckets (reference 1.11): ``ovms_requests_success`` and
``ovms_requests_fail`` (api, interface, method, name, version), ``ovms_request_time_us``
(interface, name, version), ``ovms_inference_time_us`` and ``ovms_wait_for_infer_req_time_us``
(name, version), gauges ``ovms_streams``, ``ovms_current_requests``,
``ovms_infer_req_queue_size``, ``ovms_infer_req_active``; buckets ``floor(10 * 1.8**i)``,
i = 0..32. ``--metrics_list`` selects among them. Counters follow the Prometheus convention of
prometheus-client: the family is ``ovms_requests_success``, its sample
``ovms_requests_success_total``.

ovtrio's own (always on when metrics are): ``ovtrio_batch_queue_length``,
``ovtrio_batches`` (counter), ``ovtrio_batch_size`` (histogram of requests per OpenVINO
inference), ``ovtrio_requests_cancelled`` and ``ovtrio_requests_rejected`` (counters); per
custom or Python node of a pipeline (labels pipeline, node): ``ovtrio_node_executions`` and
``ovtrio_node_abandoned`` (counters of the serving definition: they restart from 0 when the
pipeline is validated anew) and ``ovtrio_node_running`` (gauge).

Gauges and ovtrio's counters are read from the registry's ``statistics()`` snapshots at scrape
time; per-request values are recorded by the data plane and by the runtime's observer hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from .repository import ModelRegistry, ModelState

__all__ = ["BUCKETS", "Metrics"]

BUCKETS = tuple(float(math.floor(10 * 1.8**i)) for i in range(33))
"""OVMS' histogram buckets in microseconds: 10, 18, 32, 58, 104, ..."""

Observer = Callable[[str, float], None]


class Metrics:
    """Built once by the server; the data plane and the registry report into it."""

    def __init__(self, names: Collection[str], models: ModelRegistry) -> None:
        self.names = frozenset(names)
        self.registry = CollectorRegistry(auto_describe=True)
        request_labels = ["api", "interface", "method", "name", "version"]
        self._success = Counter(
            "ovms_requests_success",
            "Number of successful requests to a model.",
            request_labels,
            registry=None,
        )
        self._fail = Counter(
            "ovms_requests_fail",
            "Number of failed requests to a model.",
            request_labels,
            registry=None,
        )
        self._request_time = Histogram(
            "ovms_request_time_us",
            "Processing time of requests to a model.",
            ["interface", "name", "version"],
            buckets=BUCKETS,
            registry=None,
        )
        self._inference_time = Histogram(
            "ovms_inference_time_us",
            "Inference execution time in the OpenVINO backend.",
            ["name", "version"],
            buckets=BUCKETS,
            registry=None,
        )
        self._wait_time = Histogram(
            "ovms_wait_for_infer_req_time_us",
            "Request waiting time in the scheduling queue (for a free infer request).",
            ["name", "version"],
            buckets=BUCKETS,
            registry=None,
        )
        for name, metric in (
            ("ovms_requests_success", self._success),
            ("ovms_requests_fail", self._fail),
            ("ovms_request_time_us", self._request_time),
            ("ovms_inference_time_us", self._inference_time),
            ("ovms_wait_for_infer_req_time_us", self._wait_time),
        ):
            if name in self.names:
                self.registry.register(metric)
        self.registry.register(_SnapshotCollector(models, self.names))

    def request(
        self,
        api: str,
        interface: str,
        method: str,
        name: str,
        version: int | None,
        ok: bool,
        seconds: float,
    ) -> None:
        """One inference request answered (``ok``) or failed, and how long it took."""
        v = str(version) if version else "default"
        (self._success if ok else self._fail).labels(api, interface, method, name, v).inc()
        if ok:
            self._request_time.labels(interface, name, v).observe(seconds * 1e6)

    def observer(self, name: str, version: int) -> Observer:
        """The runtime's hook for one version: ("inference" | "wait", seconds)."""
        inference = self._inference_time.labels(name, str(version))
        wait = self._wait_time.labels(name, str(version))

        def observe(kind: str, seconds: float) -> None:
            (inference if kind == "inference" else wait).observe(seconds * 1e6)

        return observe

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SnapshotCollector(Collector):
    """Gauges and ovtrio's counters, from the registry's snapshots at scrape time."""

    def __init__(self, models: ModelRegistry, names: frozenset[str]) -> None:
        self.models = models
        self.names = names

    def collect(self) -> Iterator[Metric]:
        labels = ["name", "version"]
        streams = GaugeMetricFamily(
            "ovms_streams", "Number of OpenVINO execution streams.", labels=labels
        )
        current = GaugeMetricFamily(
            "ovms_current_requests",
            "Number of inference requests currently in process.",
            labels=labels,
        )
        queue_size = GaugeMetricFamily(
            "ovms_infer_req_queue_size", "Inference request queue size (nireq).", labels=labels
        )
        active = GaugeMetricFamily(
            "ovms_infer_req_active",
            "Number of currently consumed inference requests.",
            labels=labels,
        )
        queue_len = GaugeMetricFamily(
            "ovtrio_batch_queue_length", "Requests waiting in the version's queue.", labels=labels
        )
        batches = CounterMetricFamily(
            "ovtrio_batches", "OpenVINO inferences run by the batcher.", labels=labels
        )
        cancelled = CounterMetricFamily(
            "ovtrio_requests_cancelled",
            "Requests whose caller gave up (queued or running).",
            labels=labels,
        )
        rejected = CounterMetricFamily(
            "ovtrio_requests_rejected",
            "Requests refused because the queue was full.",
            labels=labels,
        )
        sizes = HistogramMetricFamily(
            "ovtrio_batch_size", "Requests per OpenVINO inference.", labels=labels
        )
        for model in list(self.models.models.values()):
            for mv in list(model.versions.values()):
                if mv.state is not ModelState.AVAILABLE or mv.compiled is None:
                    continue
                lv = [model.name, str(mv.version)]
                st = mv.statistics()
                streams.add_metric(lv, mv.compiled.streams)
                current.add_metric(lv, mv.holders)
                queue_size.add_metric(lv, st.nireq)
                active.add_metric(lv, mv.compiled.busy)
                b = st.batcher
                queue_len.add_metric(lv, st.queue_length)
                rejected.add_metric(lv, st.rejected)
                cancelled.add_metric(
                    lv, (b.cancelled_queued + b.cancelled_running) if b else st.inferences_cancelled
                )
                if b is not None:
                    batches.add_metric(lv, b.batches)
                    edges = [1, 2, 4, 8, 16, 32, 64, 128, 256]
                    cumulative = []
                    for edge in edges:
                        n = sum(c for size, c in b.batch_size_histogram.items() if size <= edge)
                        cumulative.append((str(float(edge)), n))
                    cumulative.append(("+Inf", b.batches))
                    total = sum(size * c for size, c in b.batch_size_histogram.items())
                    sizes.add_metric(lv, cumulative, total)
        for family in (streams, current, queue_size, active):
            if family.name in self.names:
                yield family
        yield from (queue_len, batches, cancelled, rejected, sizes)
        yield from self._nodes()

    def _nodes(self) -> Iterator[Metric]:
        """The custom and Python nodes of the serving pipeline definitions."""
        labels = ["pipeline", "node"]
        executions = CounterMetricFamily(
            "ovtrio_node_executions",
            "Calls of a custom or Python pipeline node that ran its code.",
            labels=labels,
        )
        abandoned = CounterMetricFamily(
            "ovtrio_node_abandoned",
            "Of those, calls whose request was cancelled: their results were dropped.",
            labels=labels,
        )
        running = GaugeMetricFamily(
            "ovtrio_node_running",
            "Calls of a custom or Python pipeline node running now (abandoned ones included).",
            labels=labels,
        )
        for pipeline in list(self.models.pipelines.pipelines.values()):
            definition = pipeline.definition
            if definition is None:
                continue
            for node_name, node in sorted(definition.nodes.items()):
                st = node.statistics()
                lv = [pipeline.name, node_name]
                executions.add_metric(lv, st.executions)
                abandoned.add_metric(lv, st.abandoned)
                running.add_metric(lv, st.running)
        yield from (executions, abandoned, running)
