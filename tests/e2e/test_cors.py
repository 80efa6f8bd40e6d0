"""CORS on the REST port: raw HTTP against real servers, and a headless Chromium page on one
origin calling ovtrio's REST API on another with ``fetch``."""

from __future__ import annotations

import functools
import html
import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from tests import models
from tests.e2e.conftest import Server, binary_infer_body, running

pytestmark = pytest.mark.e2e

KEY = "cors-key"
PAGE_ORIGIN = "http://allowed.example"
ACAO = "Access-Control-Allow-Origin"
INFER_BODY = {
    "inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": list(range(10))}]
}
PREFLIGHT = {
    "Origin": "http://page.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cors")
    models.add_model(root / "models" / "dummy")
    config = {"model_config_list": [{"config": {"name": "dummy", "base_path": "models/dummy"}}]}
    (root / "config.json").write_text(json.dumps(config))
    (root / "keys.txt").write_text(KEY + "\n")
    return root


def _serve(repo: Path, *flags: str) -> Iterator[Server]:
    with running(repo, ["--config_path", str(repo / "config.json"), *flags]) as server:
        yield server


@pytest.fixture(scope="module")
def page_port() -> Iterator[int]:
    """A static HTTP server on loopback for the browser test's page (its own origin)."""
    page = Path(__file__).with_name("cors_page.html")
    handler = functools.partial(_QuietHandler, directory=str(page.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()
    thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def open_server(repo: Path) -> Iterator[Server]:
    """OVMS' defaults: any origin, method and header; no credentials."""
    yield from _serve(repo)


@pytest.fixture(scope="module")
def strict_server(repo: Path, page_port: int) -> Iterator[Server]:
    """Two origins (one of them the test page on ``localhost``), credentials, API keys."""
    yield from _serve(
        repo,
        "--allowed_origins", f"{PAGE_ORIGIN}, http://localhost:{page_port}",
        "--allowed_methods", "GET,POST",
        "--allowed_headers", "Content-Type,Authorization",
        "--allow_credentials",
        "--api_key_file", str(repo / "keys.txt"),
    )  # fmt: skip


@pytest.mark.parametrize(
    "path", ["/v2/models/dummy/infer", "/v1/models/dummy:predict", "/v2/health/ready", "/nowhere"]
)
def test_preflight_with_defaults(open_server: Server, path: str) -> None:
    r = requests.options(open_server.http + path, headers=PREFLIGHT, timeout=10)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers[ACAO] == "*"
    # "*" allows anything: the preflight gets what it asks for ("*" does not cover every header)
    assert r.headers["Access-Control-Allow-Methods"] == "POST"
    assert r.headers["Access-Control-Allow-Headers"] == "content-type"
    assert "Access-Control-Allow-Credentials" not in r.headers


def test_plain_options_as_ovms(open_server: Server) -> None:
    r = requests.options(open_server.http + "/v2/models/dummy/infer", timeout=10)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers[ACAO] == "*"
    assert r.headers["Access-Control-Allow-Methods"] == "*"
    assert r.headers["Access-Control-Allow-Headers"] == "*"


def _assert_cors(r: requests.Response, status: int, origin: str = "*") -> None:
    assert r.status_code == status, r.text
    assert r.headers[ACAO] == origin
    assert r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Allow-Headers"]
    assert r.headers["Access-Control-Expose-Headers"] == "inference-header-content-length"


def test_headers_on_every_answer(open_server: Server) -> None:
    url, origin = open_server.http, {"Origin": "http://page.example"}
    r = requests.post(f"{url}/v2/models/dummy/infer", json=INFER_BODY, headers=origin, timeout=10)
    _assert_cors(r, 200)
    assert r.json()["outputs"][0]["data"] == [float(i + 1) for i in range(10)]
    body = {"instances": [list(range(10))]}
    r = requests.post(f"{url}/v1/models/dummy:predict", json=body, headers=origin, timeout=10)
    _assert_cors(r, 200)
    short = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1]}]}
    for method, path, body, status in (
        ("POST", "/v2/models/dummy/infer", json.dumps(short), 400),
        ("POST", "/v2/models/dummy/infer", "{", 412),  # not JSON
        ("POST", "/v2/models/missing/infer", json.dumps(INFER_BODY), 404),
        ("GET", "/v1/models/missing", "", 404),
        ("GET", "/v2/models/dummy/infer", "", 406),
        ("GET", "/nowhere", "", 400),
        ("GET", "/v2/health/ready", "", 200),
        ("GET", "/v2/models/dummy", "", 200),
    ):
        r = requests.request(method, url + path, data=body, headers=origin, timeout=10)
        _assert_cors(r, status)
    data = np.arange(10, dtype=np.float32).reshape(1, 10)
    body_bytes, header_length = binary_infer_body("b", data)
    r = requests.post(
        f"{url}/v2/models/dummy/infer",
        data=body_bytes,
        headers={**origin, "Inference-Header-Content-Length": str(header_length)},
        timeout=10,
    )
    _assert_cors(r, 200)
    length = int(r.headers["Inference-Header-Content-Length"])
    out = np.frombuffer(r.content[length:], dtype="<f4")
    np.testing.assert_array_equal(out, data.ravel() + 1)


def test_preflight_with_body_keeps_the_connection(open_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", open_server.rest_port), timeout=10) as sock:
        sock.sendall(
            b"OPTIONS /v2/models/dummy/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        received = b""
        while received.count(b"HTTP/1.1 200") < 2:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    first, second = received.split(b"HTTP/1.1 200")[1:]
    assert b"\r\naccess-control-allow-origin: *\r\n" in first.lower()
    assert b"\r\naccess-control-allow-origin: *\r\n" in second.lower()


def test_listed_origins_and_credentials(strict_server: Server) -> None:
    url = strict_server.http
    auth = {"Authorization": f"Bearer {KEY}"}
    # a preflight carries no credentials: answered without the API key
    r = requests.options(f"{url}/v2/models/dummy/infer", headers=PREFLIGHT, timeout=10)
    assert r.status_code == 200
    assert ACAO not in r.headers  # page.example is not listed: the browser refuses
    assert r.headers["Vary"] == "Origin"
    r = requests.options(
        f"{url}/v1/models/dummy:predict", headers={**PREFLIGHT, "Origin": PAGE_ORIGIN}, timeout=10
    )
    assert r.status_code == 200
    assert r.headers[ACAO] == PAGE_ORIGIN
    assert r.headers["Vary"] == "Origin"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert r.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert r.headers["Access-Control-Allow-Headers"] == "Content-Type,Authorization"

    r = requests.post(
        f"{url}/v2/models/dummy/infer",
        json=INFER_BODY,
        headers={**auth, "Origin": PAGE_ORIGIN},
        timeout=10,
    )
    _assert_cors(r, 200, PAGE_ORIGIN)
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    r = requests.post(f"{url}/v2/models/dummy/infer", json=INFER_BODY, timeout=10)
    assert r.status_code == 401  # no key
    assert ACAO not in r.headers  # and no Origin
    r = requests.post(
        f"{url}/v2/models/dummy/infer",
        json=INFER_BODY,
        headers={**auth, "Origin": "http://evil.example"},
        timeout=10,
    )
    assert r.status_code == 200  # CORS is the browser's to enforce; the server only says so
    assert ACAO not in r.headers
    assert r.headers["Vary"] == "Origin"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"


def test_origins_flag_empty_sends_no_origin(repo: Path) -> None:
    for server in _serve(repo, "--allowed_origins", "", "--allowed_headers", ""):
        r = requests.options(f"{server.http}/v2/health/ready", headers=PREFLIGHT, timeout=10)
        assert r.status_code == 200
        assert ACAO not in r.headers
        assert "Access-Control-Allow-Headers" not in r.headers
        assert r.headers["Access-Control-Allow-Methods"] == "POST"
        r = requests.get(f"{server.http}/v2/health/ready", headers=PREFLIGHT, timeout=10)
        assert ACAO not in r.headers
        assert r.headers["Access-Control-Allow-Methods"] == "*"


# --- a real browser -------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")


def _browse(url: str, profile: Path) -> dict[str, str]:
    """Load ``url`` in headless Chromium; the page's result elements, by id."""
    result = subprocess.run(
        [
            _chromium(),
            "--headless=new",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = re.findall(r'<pre id="(\w+)">(.*?)</pre>', result.stdout, re.S)
    elements = {key: html.unescape(value) for key, value in found}
    assert elements.get("done") == "done", result.stdout
    return elements


def _answer(text: str) -> tuple[int, object]:
    status, _, body = text.partition(" ")
    return int(status), json.loads(body)


def test_browser_calls_the_api_from_another_origin(
    open_server: Server, strict_server: Server, page_port: int, tmp_path: Path
) -> None:
    page = f"http://127.0.0.1:{page_port}/cors_page.html"
    expected = [float(i + 1) for i in range(10)]

    # OVMS' defaults: any origin. JSON with Content-Type: application/json is preflighted.
    shown = _browse(f"{page}?api={open_server.http}", tmp_path / "p1")
    status, body = _answer(shown["kserve"])
    assert status == 200, shown
    assert body["outputs"][0]["data"] == expected  # type: ignore[index]
    assert _answer(shown["tfs"]) == (200, {"predictions": [expected]})
    assert _answer(shown["binary"]) == (200, expected)  # read with the exposed header

    # The server allows localhost:<port> and another origin, not 127.0.0.1:<port>: blocked.
    shown = _browse(f"{page}?api={strict_server.http}&key={KEY}", tmp_path / "p2")
    assert shown["kserve"] == "blocked: TypeError", shown
    assert shown["tfs"] == "blocked: TypeError", shown

    # The same page from the allowed origin, with the API key and credentials: answered.
    local_page = f"http://localhost:{page_port}/cors_page.html"
    shown = _browse(f"{local_page}?api={strict_server.http}&key={KEY}", tmp_path / "p3")
    status, body = _answer(shown["kserve"])
    assert status == 200, shown
    assert body["outputs"][0]["data"] == expected  # type: ignore[index]
    assert _answer(shown["tfs"]) == (200, {"predictions": [expected]})
    # Inference-Header-Content-Length is not in --allowed_headers: the preflight fails
    assert shown["binary"] == "blocked: TypeError", shown
