"""Text as OVMS handles it, end to end: strings (KServe BYTES, TF Serving DT_STRING) sent to a
2-D UINT8 input become zero-padded rows, and a 2-D UINT8 output named ``*_string`` comes back as
strings. Driven by tritonclient (gRPC, HTTP binary and JSON), ovmsclient (gRPC, REST) and raw
JSON as curl sends it.

The model (``tests.models.text_model``) answers each row's length (``lengths``), the rows as
UINT8 (``rows``) and the rows as strings (``echo_string``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from ovmsclient import make_grpc_client
from tritonclient.utils import InferenceServerException

from tests import models
from tests.e2e.conftest import Server, ovms_client, serve_models

pytestmark = pytest.mark.e2e

STRINGS = [b"abcd", b"ab", "zażółć".encode()]
WIDTH = max(len(s) for s in STRINGS) + 1
ROWS = np.array([list(s.ljust(WIDTH, b"\0")) for s in STRINGS], np.uint8)
LENGTHS = np.array([len(s) for s in STRINGS], np.int32)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("text")
    models.text_model(root / "text")
    models.text_model(root / "narrow", width=6)
    entries = [
        {"name": "text", "base_path": "text"},
        {"name": "narrow", "base_path": "narrow"},
    ]
    with serve_models(root, entries) as srv:
        yield srv


def _check(lengths: np.ndarray, rows: np.ndarray, echo: list[bytes]) -> None:
    np.testing.assert_array_equal(lengths, LENGTHS)
    np.testing.assert_array_equal(rows, ROWS)
    assert echo == STRINGS


def test_tritonclient_grpc(server: Server) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("text", [len(STRINGS)], "BYTES")
    inp.set_data_from_numpy(np.array(STRINGS, dtype=object))
    result = client.infer("text", [inp])
    _check(
        result.as_numpy("lengths"), result.as_numpy("rows"), list(result.as_numpy("echo_string"))
    )
    outputs = {o.name: (o.datatype, list(o.shape)) for o in result.get_response().outputs}
    assert outputs == {
        "lengths": ("INT32", [3]),
        "rows": ("UINT8", [3, WIDTH]),
        "echo_string": ("BYTES", [3]),
    }


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http(server: Server, binary: bool) -> None:
    client = httpclient.InferenceServerClient(server.rest_url)
    inp = httpclient.InferInput("text", [len(STRINGS)], "BYTES")
    inp.set_data_from_numpy(np.array(STRINGS, dtype=object), binary_data=binary)
    outs = [
        httpclient.InferRequestedOutput(name, binary_data=binary)
        for name in ("lengths", "rows", "echo_string")
    ]
    result = client.infer("text", [inp], outputs=outs)
    echo = [s if isinstance(s, bytes) else s.encode() for s in result.as_numpy("echo_string")]
    _check(result.as_numpy("lengths"), result.as_numpy("rows"), echo)


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_ovmsclient(server: Server, transport: str) -> None:
    client = ovms_client(server, transport)
    out = client.predict(inputs={"text": [s.decode() for s in STRINGS]}, model_name="text")
    echo = [s if isinstance(s, bytes) else str(s).encode() for s in out["echo_string"]]
    _check(out["lengths"], out["rows"], echo)


def test_kserve_json_as_curl_sends_it(server: Server) -> None:
    body = {
        "inputs": [
            {
                "name": "text",
                "shape": [len(STRINGS)],
                "datatype": "BYTES",
                "data": [s.decode() for s in STRINGS],
            }
        ]
    }
    r = requests.post(f"{server.http}/v2/models/text/infer", data=json.dumps(body))
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    assert outs["echo_string"] == {
        "name": "echo_string",
        "datatype": "BYTES",
        "shape": [3],
        "data": [s.decode() for s in STRINGS],
    }
    assert outs["lengths"]["data"] == LENGTHS.tolist()
    assert outs["rows"]["datatype"] == "UINT8"
    assert outs["rows"]["shape"] == [3, WIDTH]


def test_tfs_rest_row_and_column_as_curl_sends_them(server: Server) -> None:
    url = f"{server.http}/v1/models/text:predict"
    r = requests.post(url, data=json.dumps({"instances": [{"text": "abcd"}, {"text": "ab"}]}))
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert [p["lengths"] for p in rows] == [4, 2]
    assert [p["echo_string"] for p in rows] == ["abcd", "ab"]
    assert [p["rows"] for p in rows] == [list(b"abcd\0"), list(b"ab\0\0\0")]
    r = requests.post(url, data=json.dumps({"inputs": {"text": ["<string>"]}}))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["echo_string"] == ["<string>"]
    assert r.json()["outputs"]["lengths"] == [8]


def test_numbers_still_go_in_as_numbers(server: Server) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("text", list(ROWS.shape), "UINT8")
    inp.set_data_from_numpy(ROWS)
    result = client.infer("text", [inp])
    _check(
        result.as_numpy("lengths"), result.as_numpy("rows"), list(result.as_numpy("echo_string"))
    )


def test_metadata_reports_the_model_tensors(server: Server) -> None:
    meta = httpclient.InferenceServerClient(server.rest_url).get_model_metadata("text")
    assert meta["inputs"] == [{"name": "text", "datatype": "UINT8", "shape": [-1, -1]}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]} == {
        "lengths": ("INT32", [-1]),
        "rows": ("UINT8", [-1, -1]),
        "echo_string": ("UINT8", [-1, -1]),
    }
    tfs = make_grpc_client(server.grpc_url).get_model_metadata(model_name="text")
    assert tfs["inputs"] == {"text": {"shape": [-1, -1], "dtype": "DT_UINT8"}}


ERRORS = [
    # model, strings, request shape, message
    ("narrow", [b"abcde"], [1], None),
    ("narrow", [b"abcdef"], [1], "Invalid input shape - Expected: (-1,6); Actual: (1,7)"),
    ("text", [b"a", b"b"], [1, 2], "Expected number of input shape dimensions: 1"),
]


@pytest.mark.parametrize(("model", "items", "shape", "message"), ERRORS)
def test_width_and_rank(
    server: Server, model: str, items: list[bytes], shape: list[int], message: str | None
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("text", shape, "BYTES")
    inp.set_data_from_numpy(np.array(items, dtype=object).reshape(shape))
    if message is None:
        assert list(client.infer(model, [inp]).as_numpy("echo_string")) == items
        return
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, [inp])
    assert "INVALID_ARGUMENT" in str(info.value)
    assert message in str(info.value)
    body = {
        "inputs": [
            {
                "name": "text",
                "shape": shape,
                "datatype": "BYTES",
                "data": [s.decode() for s in items],
            }
        ]
    }
    r = requests.post(f"{server.http}/v2/models/{model}/infer", json=body)
    assert r.status_code == 400
    assert message in r.json()["error"]
