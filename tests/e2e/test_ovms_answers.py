"""Answers that must be OVMS's word for word: the TF Serving REST metadata document and a
``binary_data_size`` that is not an integer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests
from ovmsclient import make_http_client

from tests import models
from tests.e2e.conftest import Server, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("answers")
    models.add_model(root / "dummy")
    server = start_server(root, ["--model_name", "dummy", "--model_path", str(root / "dummy")])
    yield server
    server.stop()


def _dims(*sizes: int) -> dict[str, Any]:
    return {"dim": [{"size": str(s), "name": ""} for s in sizes], "unknownRank": False}


def _info(name: str) -> dict[str, Any]:
    return {"dtype": "DT_FLOAT", "tensorShape": _dims(-1, 10), "name": name}


def test_tfs_rest_metadata_is_ovms_document(server: Server) -> None:
    """OVMS prints GetModelMetadataResponse with protobuf's JSON printer and
    ``always_print_primitive_fields`` (src/get_model_metadata_impl.cpp): camelCase names,
    int64 as strings, enums by name, and default-valued fields printed (``signatureName``,
    each dim's ``name``, ``unknownRank``), in the printer's field order. TF Serving prints
    defaults too; only the ``method_name`` differs (OVMS leaves it empty)."""
    r = requests.get(f"{server.http}/v1/models/dummy/metadata", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    doc = json.loads(r.content)
    assert doc == {
        "modelSpec": {"name": "dummy", "signatureName": "", "version": "1"},
        "metadata": {
            "signature_def": {
                "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
                "signatureDef": {
                    "serving_default": {
                        "inputs": {"b": _info("b")},
                        "outputs": {"a": _info("a")},
                        "methodName": "tensorflow/serving/predict",
                    }
                },
            }
        },
    }
    # key order as protobuf's printer writes it (oneof members after the other fields)
    assert list(doc["modelSpec"]) == ["name", "signatureName", "version"]
    sig = doc["metadata"]["signature_def"]
    assert list(sig) == ["@type", "signatureDef"]
    assert list(sig["signatureDef"]["serving_default"]) == ["inputs", "outputs", "methodName"]
    info = sig["signatureDef"]["serving_default"]["inputs"]["b"]
    assert list(info) == ["dtype", "tensorShape", "name"]
    assert list(info["tensorShape"]) == ["dim", "unknownRank"]
    assert list(info["tensorShape"]["dim"][0]) == ["size", "name"]

    meta = make_http_client(server.rest_url).get_model_metadata(model_name="dummy")
    assert meta["inputs"] == {"b": {"shape": [-1, 10], "dtype": "DT_FLOAT"}}
    assert meta["model_version"] == 1


@pytest.mark.parametrize("size", ["abc", 40.0, 40.5, -40, True, None])
def test_binary_data_size_not_an_integer(server: Server, size: Any) -> None:
    data = np.ones((1, 10), np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "b",
                    "shape": [1, 10],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    r = requests.post(
        f"{server.http}/v2/models/dummy/infer",
        data=header + data,
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=5,
    )
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["error"].startswith(
        "binary_data_size parameter is invalid and cannot be parsed - "
    )
