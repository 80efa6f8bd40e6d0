"""Strict validation of KServe objects against the OpenAPI-generated model classes of the kserve
Python SDK (``kserve.models``) and of the Kubernetes Python client (``kubernetes.client.models``).

Each generated class has ``openapi_types`` (attribute -> type string such as ``'list[V1Container]'``,
``'Dict[str, str]'`` or ``'V1alpha1BuiltInAdapter'``) and ``attribute_map`` (attribute -> JSON
key). A manifest is walked against them as ``kubectl apply`` with strict field validation checks
it: a key that is not one of the class's JSON keys is an error, a value must have the JSON type
its type string names, and a field the class requires must be present. Every error names its
path in the document (``spec.containers[0].readinessProbe.httpGet.port``). A value whose type
names a class that neither package ships (the SDK's ``V1alpha1WorkerSpec`` for
``ServingRuntime.spec.workerSpec``, for one) is an error too: it cannot be checked.

The kserve package's own dependencies cannot be installed next to ovtrio's (it pins protobuf
below 7), so scripts/test installs the wheel alone into ``<venv>/kserve-sdk`` and only
``kserve.models`` and ``kserve.configuration`` are loaded from there: ``kserve/__init__.py``,
which imports the SDK's server and its dependencies, is never run.
"""

from __future__ import annotations

import datetime
import importlib
import os
import pkgutil
import re
import sys
import types
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes.client.models

KSERVE_SDK = Path(os.environ.get("KSERVE_SDK_DIR", Path(sys.prefix) / "kserve-sdk"))
KSERVE_GROUP = "serving.kserve.io"

_LIST = re.compile(r"[lL]ist\[(.+)\]")
_DICT = re.compile(r"dict\(str, (.+)\)|Dict\[str, (.+)\]")
# Type string -> the Python types a YAML/JSON value of that type loads as. bytes is base64 text;
# a YAML timestamp may load as a datetime or date.
_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "bytes": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str, datetime.datetime),
    "date": (str, datetime.date),
    "ResourceQuantity": (str, int, float),  # a Kubernetes quantity: "2Gi", "500m" or a number
}
# kserve's name for a Kubernetes type outside core/v1, e.g. K8sIoApiAppsV1DeploymentStrategy:
# the client's name is the part from the version on (V1DeploymentStrategy).
_K8S_QUALIFIED = re.compile(r"K8sIoApi[A-Z][a-z]+(V\d+(?:alpha\d+|beta\d+)?[A-Z]\w*)")


def _load_kserve_models() -> types.ModuleType:
    """``kserve.models`` from KSERVE_SDK, under a bare ``kserve`` package module."""
    if not (KSERVE_SDK / "kserve" / "models").is_dir():
        raise RuntimeError(
            f"the kserve SDK is not in {KSERVE_SDK}: scripts/test installs it "
            "(pip install --no-deps --target <venv>/kserve-sdk kserve==<version>)"
        )
    if "kserve" not in sys.modules:
        package = types.ModuleType("kserve")
        package.__path__ = [str(KSERVE_SDK / "kserve")]
        sys.modules["kserve"] = package
    return importlib.import_module("kserve.models")


@cache
def kserve_classes() -> dict[str, type]:
    """Class name -> generated class, from every module of kserve.models."""
    found: dict[str, type] = {}
    kserve_models = _load_kserve_models()
    for info in pkgutil.iter_modules(kserve_models.__path__):
        module = importlib.import_module(f"kserve.models.{info.name}")
        found.update(
            (name, value)
            for name, value in vars(module).items()
            if isinstance(value, type) and hasattr(value, "openapi_types")
        )
    return found


@cache
def model_class(name: str) -> type | None:
    """kserve's class of that name, else the Kubernetes client's: kserve's models name core
    types (V1Container, V1ObjectMeta) as the Kubernetes client does."""
    if name in kserve_classes():
        return kserve_classes()[name]
    if qualified := _K8S_QUALIFIED.fullmatch(name):
        name = qualified[1]
    # The Kubernetes client imports a model's module when it is first asked for.
    cls = getattr(kubernetes.client.models, name, None)
    return cls if isinstance(cls, type) and hasattr(cls, "openapi_types") else None


@cache
def required_keys(cls: Any) -> frozenset[str]:
    """The JSON keys the class requires. Kubernetes' pydantic models mark them in
    ``model_fields``; kserve's classes raise ValueError when a required attribute is set to None
    (client-side validation, on by default)."""
    fields = getattr(cls, "model_fields", None)
    if fields is not None:
        return frozenset(
            f.serialization_alias or name for name, f in fields.items() if f.is_required()
        )
    # Not through __init__: it sets the required attributes from its None defaults too.
    instance = cls.__new__(cls)
    instance.local_vars_configuration = importlib.import_module(cls.__module__).Configuration()
    instance.local_vars_configuration.client_side_validation = True
    required = set()
    for attribute, key in cls.attribute_map.items():
        try:
            setattr(instance, attribute, None)
        except ValueError:
            required.add(key)
    return frozenset(required)


def validate_object(doc: Any) -> list[str]:
    """Errors of a whole KServe object (apiVersion ``serving.kserve.io/<version>``): its class
    is ``<Version><kind>``, e.g. V1alpha1ServingRuntime; the API server also requires a name."""
    if not isinstance(doc, Mapping):
        return [f"<root>: expected an object, got {type(doc).__name__}"]
    group, _, version = str(doc.get("apiVersion", "")).partition("/")
    class_name = version[:1].upper() + version[1:] + str(doc.get("kind", ""))
    if group != KSERVE_GROUP or class_name not in kserve_classes():
        return [
            f"<root>: no kserve model for apiVersion/kind {doc.get('apiVersion')}/{doc.get('kind')}"
        ]
    errors = validate(doc, class_name)
    metadata = doc.get("metadata")
    if not isinstance(metadata, Mapping) or not ({"name", "generateName"} & metadata.keys()):
        errors.append("metadata.name: required field missing")
    return errors


def validate(value: Any, type_string: str, path: str = "") -> list[str]:
    """Errors of ``value`` against a type string of ``openapi_types`` (or a class name)."""
    here = path or "<root>"
    if type_string == "object":
        return []
    if type_string in _SCALARS:
        ok = isinstance(value, _SCALARS[type_string])
        if bool not in _SCALARS[type_string] and isinstance(value, bool):
            ok = False
        return [] if ok else [f"{here}: expected {type_string}, got {type(value).__name__}"]
    if match := _LIST.fullmatch(type_string):
        if not isinstance(value, list):
            return [f"{here}: expected {type_string}, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in validate(item, match[1], f"{path}[{i}]")]
    if match := _DICT.fullmatch(type_string):
        if not isinstance(value, Mapping):
            return [f"{here}: expected {type_string}, got {type(value).__name__}"]
        errors = []
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(f"{path}[{key!r}]: expected a string key")
            errors += validate(item, match[1] or match[2], f"{path}[{key!r}]")
        return errors
    cls = model_class(type_string)
    if cls is None:
        return [f"{here}: type {type_string} is in neither kserve's nor Kubernetes' models"]
    if not isinstance(value, Mapping):
        return [f"{here}: expected an object ({type_string}), got {type(value).__name__}"]
    return _validate_fields(value, cls, path)


def _validate_fields(value: Mapping[str, Any], cls: Any, path: str) -> list[str]:
    types_by_key = {
        key: cls.openapi_types[attribute] for attribute, key in cls.attribute_map.items()
    }
    prefix = f"{path}." if path else ""
    errors = []
    for key, item in value.items():
        if key not in types_by_key:
            errors.append(f"{prefix}{key}: unknown field (not in {cls.__name__})")
        elif item is not None:
            errors += validate(item, types_by_key[key], f"{prefix}{key}")
    for key in sorted(required_keys(cls)):
        if value.get(key) is None:
            errors.append(f"{prefix}{key}: required field missing ({cls.__name__})")
    return errors
