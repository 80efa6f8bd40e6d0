"""The tensor wire end to end: KServe REST and gRPC answer a tensor alike (tritonclient)."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

# BOOL bytes as a client may send them: a numpy bool array holding bytes other than 0 and 1
BOOL_BYTES = bytes([0, 1, 2, 255, 0, 7])


def _odd_bools() -> np.ndarray:
    return np.frombuffer(BOOL_BYTES, np.bool_).reshape(2, 3)


def test_bool_bytes_grpc(kserve_server: Server) -> None:
    client = grpcclient.InferenceServerClient(kserve_server.grpc_url)
    tensor = grpcclient.InferInput("in", [2, 3], "BOOL")
    tensor.set_data_from_numpy(_odd_bools())
    out = client.infer("id_bool", [tensor]).as_numpy("out")
    assert out.view(np.uint8).reshape(-1).tolist() == [0, 1, 1, 1, 0, 1]


@pytest.mark.parametrize("binary_output", [True, False])
def test_bool_bytes_http(kserve_server: Server, binary_output: bool) -> None:
    client = httpclient.InferenceServerClient(kserve_server.rest_url)
    tensor = httpclient.InferInput("in", [2, 3], "BOOL")
    tensor.set_data_from_numpy(_odd_bools(), binary_data=True)
    output = httpclient.InferRequestedOutput("out", binary_data=binary_output)
    out = client.infer("id_bool", [tensor], outputs=[output]).as_numpy("out")
    assert out.view(np.uint8).reshape(-1).tolist() == [0, 1, 1, 1, 0, 1]
