"""The strict validator of KServe objects (openapi_models.py): the real manifests pass, and each
mutated copy fails with an error naming the path of what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.deploy.files import DEPLOY, yaml_documents
from tests.deploy.openapi_models import validate, validate_object

Doc = dict[str, Any]


def manifest(name: str) -> Doc:
    (doc,) = yaml_documents(DEPLOY / "kserve" / name)
    return doc


def runtime_container(doc: Doc) -> Doc:
    return doc["spec"]["containers"][0]  # type: ignore[no-any-return]


def set_(key: str, value: Any, at: Callable[[Doc], Doc] = lambda d: d) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        at(doc)[key] = value

    return mutate


def delete(key: str, at: Callable[[Doc], Doc]) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        del at(doc)[key]

    return mutate


def predictor(doc: Doc) -> Doc:
    return doc["spec"]["predictor"]  # type: ignore[no-any-return]


def model(doc: Doc) -> Doc:
    return predictor(doc)["model"]  # type: ignore[no-any-return]


def probe(doc: Doc) -> Doc:
    return runtime_container(doc)["readinessProbe"]  # type: ignore[no-any-return]


SR, ISVC, ISVC_GRPC = "servingruntime.yaml", "inferenceservice.yaml", "inferenceservice-grpc.yaml"

# (manifest, mutation, the error it must produce)
INVALID: dict[str, tuple[str, Callable[[Doc], None], str]] = {
    "unknown top-level field": (SR, set_("specs", {}), "specs: unknown field"),
    "unknown field in the spec": (
        ISVC,
        set_("replicas", 2, predictor),
        "spec.predictor.replicas: unknown field",
    ),
    "unknown field in a container": (
        SR,
        set_("argz", [], runtime_container),
        "spec.containers[0].argz: unknown field",
    ),
    "unknown field deep in a probe": (
        SR,
        set_("paht", "/", lambda d: probe(d)["httpGet"]),
        "spec.containers[0].readinessProbe.httpGet.paht: unknown field",
    ),
    "python name instead of the JSON key": (
        SR,
        set_("readiness_probe", {}, runtime_container),
        "spec.containers[0].readiness_probe: unknown field",
    ),
    "unknown metadata field": (ISVC, set_("label", {}, lambda d: d["metadata"]), "metadata.label"),
    "string for a list": (
        SR,
        set_("args", "--port=9000", runtime_container),
        "spec.containers[0].args: expected",  # List[str] or list[str]: as the client names it
    ),
    "number in a list of strings": (
        ISVC,
        set_("args", ["--max_batch_size", 8], model),
        "spec.predictor.model.args[1]: expected str, got int",
    ),
    "string for an int": (
        SR,
        set_("periodSeconds", "5", probe),
        "spec.containers[0].readinessProbe.periodSeconds: expected int, got str",
    ),
    "bool for an int": (ISVC, set_("minReplicas", True, predictor), "spec.predictor.minReplicas"),
    "string for a bool": (
        SR,
        set_("autoSelect", "true", lambda d: d["spec"]["supportedModelFormats"][0]),
        "spec.supportedModelFormats[0].autoSelect: expected bool, got str",
    ),
    "number for a string": (
        SR,
        set_("version", 10, lambda d: d["spec"]["supportedModelFormats"][0]),
        "spec.supportedModelFormats[0].version: expected str, got int",
    ),
    "number in a map of strings": (
        SR,
        set_("prometheus.kserve.io/port", 8080, lambda d: d["spec"]["annotations"]),
        "spec.annotations['prometheus.kserve.io/port']: expected str, got int",
    ),
    "list for an object": (
        ISVC_GRPC,
        set_("modelFormat", ["onnx"], model),
        "spec.predictor.model.modelFormat: expected an object",
    ),
    "missing required field of a kserve type": (
        SR,
        delete("containers", lambda d: d["spec"]),
        "spec.containers: required field missing",
    ),
    "missing required field of a kserve type, deeper": (
        ISVC,
        delete("modelFormat", model),
        "spec.predictor.model.modelFormat: required field missing",
    ),
    "missing required field of a Kubernetes type": (
        SR,
        delete("name", runtime_container),
        "spec.containers[0].name: required field missing",
    ),
    "missing required field deep in a probe": (
        SR,
        delete("port", lambda d: probe(d)["httpGet"]),
        "spec.containers[0].readinessProbe.httpGet.port: required field missing",
    ),
    "missing name": (
        ISVC,
        delete("name", lambda d: d["metadata"]),
        "metadata.name: required field missing",
    ),
    "unknown kind": (SR, set_("kind", "ServingRuntimes"), "no kserve model for apiVersion/kind"),
    "other API group": (
        SR,
        set_("apiVersion", "apps/v1alpha1"),
        "no kserve model for apiVersion/kind",
    ),
}


@pytest.mark.parametrize("name", [SR, ISVC, ISVC_GRPC])
def test_the_manifests_pass(name: str) -> None:
    assert validate_object(manifest(name)) == []


def test_a_cluster_serving_runtime_passes() -> None:
    doc = manifest(SR)
    doc["kind"] = "ClusterServingRuntime"
    assert validate_object(doc) == []


@pytest.mark.parametrize(("name", "mutate", "expected"), INVALID.values(), ids=list(INVALID))
def test_a_mutated_manifest_fails_naming_the_path(
    name: str, mutate: Callable[[Doc], None], expected: str
) -> None:
    doc = manifest(name)
    mutate(doc)
    errors = validate_object(doc)
    assert len(errors) == 1 and expected in errors[0], errors


def test_every_error_is_reported() -> None:
    doc = manifest(SR)
    runtime_container(doc)["argz"] = []
    runtime_container(doc)["args"] = "--port=9000"
    del runtime_container(doc)["name"]
    assert [e.split(":")[0] for e in validate_object(doc)] == [
        "spec.containers[0].args",
        "spec.containers[0].argz",
        "spec.containers[0].name",
    ]


@pytest.mark.parametrize(
    ("value", "type_string", "ok"),
    [
        ({"a": ["x"]}, "dict(str, list[str])", True),
        ({"a": ["x"]}, "Dict[str, List[str]]", True),
        ({"a": [1]}, "Dict[str, List[str]]", False),
        ({1: "x"}, "dict(str, str)", False),
        (1, "float", True),
        (True, "float", False),
        ("2024-01-01T00:00:00Z", "datetime", True),
        ([{"any": 1}], "object", True),
        ("2Gi", "ResourceQuantity", True),
        (2, "ResourceQuantity", True),
        ({"type": "Recreate"}, "K8sIoApiAppsV1DeploymentStrategy", True),
        ({"type": "Recreate", "x": 1}, "K8sIoApiAppsV1DeploymentStrategy", False),
        ({}, "NoSuchModel", False),
    ],
)
def test_type_strings(value: Any, type_string: str, ok: bool) -> None:
    assert (validate(value, type_string) == []) == ok
