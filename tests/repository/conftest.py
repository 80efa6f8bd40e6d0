"""Each storage service in turn (the session's servers), or a private server a test may stop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage import BACKENDS, FACTORIES, Backend, s3_server


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, clean_env: pytest.MonkeyPatch) -> Backend:
    """Each storage service in turn, with its good variables set."""
    found: Backend = request.getfixturevalue(f"{request.param}_backend")
    for name, value in found.env.items():
        clean_env.setenv(name, value)
    return found


@pytest.fixture(params=BACKENDS)
def private_backend(
    request: pytest.FixtureRequest, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Backend]:
    """A server of each kind of the test's own, which it may stop and start."""
    factory = FACTORIES[request.param]
    generator = s3_server(tmp_path, auth=False) if request.param == "s3" else factory(tmp_path)
    found = next(generator)
    for name, value in found.env.items():
        clean_env.setenv(name, value)
    yield found
    generator.close()
