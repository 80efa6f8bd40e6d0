"""Every manifest under deploy/ against its schema, without a cluster: the plain Kubernetes
objects with kubernetes-validate, the KServe objects with the kserve SDK's and the Kubernetes
client's generated models (openapi_models.py), both strict (unknown fields are errors), and the
numbers that must agree across them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.files import DEPLOY, flag_values, yaml_documents
from tests.deploy.openapi_models import validate_object

K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
KSERVE = sorted((DEPLOY / "kserve").glob("*.yaml"))
# The oldest Kubernetes minor the package has schemas for, and the newest.
K8S_VERSIONS = [kubernetes_validate.utils.all_versions()[0], kubernetes_validate.latest_version()]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_kubernetes_manifest_is_valid(path: Path, version: str) -> None:
    for doc in yaml_documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def kserve_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in KSERVE for d in yaml_documents(p)]


@pytest.mark.parametrize("path", KSERVE, ids=lambda p: p.name)
def test_kserve_manifest_is_valid(path: Path) -> None:
    for doc in yaml_documents(path):
        errors = validate_object(doc)
        assert not errors, "\n".join(errors)


def serving_runtime() -> dict[str, Any]:
    (runtime,) = [d for _, d in kserve_objects() if d["kind"].endswith("ServingRuntime")]
    return runtime


def test_serving_runtime_declares_what_kserve_matches_on() -> None:
    spec = serving_runtime()["spec"]
    assert {f["name"] for f in spec["supportedModelFormats"]} >= {"openvino", "onnx"}
    assert set(spec["protocolVersions"]) == {"v2", "grpc-v2"}
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"  # the name KServe merges the predictor into
    flags = flag_values(container["args"])
    assert flags["model_name"] == "{{.Name}}"
    assert flags["model_path"] == "/mnt/models"
    rest = int(flags["rest_port"])
    assert rest == 8080, "KServe routes HTTP to container port 8080"
    assert int(flags["port"]) and flags["metrics_enable"] == "true"
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": rest}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": rest}
    assert spec["annotations"]["prometheus.kserve.io/port"] == str(rest)
    assert spec["annotations"]["prometheus.kserve.io/path"] == "/metrics"


def test_inference_services_use_the_runtime() -> None:
    runtime = serving_runtime()
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    isvcs = [d for _, d in kserve_objects() if d["kind"] == "InferenceService"]
    assert {i["spec"]["predictor"]["model"]["protocolVersion"] for i in isvcs} == {"v2", "grpc-v2"}
    for isvc in isvcs:
        model = isvc["spec"]["predictor"]["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        assert model["modelFormat"]["name"] in formats
        assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
        if model["protocolVersion"] == "grpc-v2":
            grpc_port = int(flag_values(runtime["spec"]["containers"][0]["args"])["port"])
            first = model["ports"][0]
            assert first["containerPort"] == grpc_port and first["name"] in {"h2c", "grpc"}


GRACE_DEFAULT_S = 30  # Kubernetes' terminationGracePeriodSeconds when a pod sets none
# After the drain ovtrio cancels what is left; an OpenVINO inference that cannot be cancelled
# runs to its end, then ovtrio exits (0.6 s when idle). So the margin is the model's longest
# inference plus about a second: 5 s covers inferences up to ~4 s (docs/deploy.md).
EXIT_MARGIN_S = 5


def test_shutdown_fits_the_termination_grace_period() -> None:
    """preStop + ovtrio's drain (--graceful_timeout_s) + its exit fit the pod's grace period."""
    runtime_args = serving_runtime()["spec"]["containers"][0]["args"]
    drain = float(flag_values(runtime_args)["graceful_timeout_s"])
    for _, isvc in kserve_objects():
        if isvc["kind"] == "InferenceService":
            grace = isvc["spec"]["predictor"].get("terminationGracePeriodSeconds", GRACE_DEFAULT_S)
            assert drain + EXIT_MARGIN_S <= grace
    (deployment,) = yaml_documents(DEPLOY / "k8s" / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(flag_values(container["args"])["graceful_timeout_s"])
    assert float(pre_stop[1]) + drain + EXIT_MARGIN_S <= pod["terminationGracePeriodSeconds"]


def test_plain_manifests_agree() -> None:
    (deployment,) = yaml_documents(DEPLOY / "k8s" / "deployment.yaml")
    (service,) = yaml_documents(DEPLOY / "k8s" / "service.yaml")
    (hpa,) = yaml_documents(DEPLOY / "k8s" / "hpa.yaml")
    (configmap,) = yaml_documents(DEPLOY / "k8s" / "configmap.yaml")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    flags = flag_values(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": int(flags["port"]), "http": int(flags["rest_port"])}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == flags["rest_port"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    config = json.loads(configmap["data"]["config.json"])
    assert config["model_config_list"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert flags["config_path"] == f"{mounts['config']}/config.json"
    assert all(
        m["config"]["base_path"].startswith(mounts["models"] + "/")
        for m in config["model_config_list"]
    )
