"""deploy/grafana's dashboard: well formed, and every series its queries name is one ovtrio
exposes with ``--metrics_enable`` alone (the default metric set)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

from ovtrio.config import DEFAULT_METRICS
from ovtrio.metrics import Metrics
from tests.deploy.files import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "ovtrio-dashboard.json"
SERIES = re.compile(r"\b(?:ovms|ovtrio)_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exposed_series(exposition: str) -> set[str]:
    """The series names a Prometheus text exposition declares (from its ``# TYPE`` lines)."""
    out: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            out.update(name + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return out


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queried_series() -> dict[str, set[str]]:
    """Panel (or variable) title -> the series its queries name."""
    out: dict[str, set[str]] = {}
    for panel in dashboard()["panels"]:
        out[panel["title"]] = {s for t in panel["targets"] for s in SERIES.findall(t["expr"])}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            out[f"${variable['name']}"] = set(SERIES.findall(variable["definition"]))
    return out


def test_dashboard_is_well_formed() -> None:
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for panel in d["panels"]:
        assert panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
    assert all(queried_series().values()), "every panel queries an ovtrio metric"


def test_every_queried_series_is_exposed() -> None:
    registry = SimpleNamespace(models={}, pipelines=SimpleNamespace(pipelines={}))
    metrics = Metrics(DEFAULT_METRICS, registry)  # type: ignore[arg-type]
    exposed = exposed_series(metrics.exposition()[0].decode())
    for title, series in queried_series().items():
        assert series <= exposed, f"{title}: {sorted(series - exposed)} not exposed"


def test_exposed_series_reads_type_lines() -> None:
    text = "# TYPE a_total counter\n# TYPE b histogram\n# TYPE c gauge\n"
    assert exposed_series(text) == {
        "a_total",
        "a_total_created",
        "b_bucket",
        "b_sum",
        "b_count",
        "c",
    }
