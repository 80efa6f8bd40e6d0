"""Fixtures shared by the test folders: one storage server of each kind per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.storage import (
    CLOUD_VARIABLES,
    Backend,
    azure_server,
    clear_cloud_env,
    gcs_server,
    s3_server,
)


@pytest.fixture(scope="session")
def s3_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    yield from s3_server(tmp_path_factory.mktemp("s3"))


@pytest.fixture(scope="session")
def gcs_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    yield from gcs_server(tmp_path_factory.mktemp("gcs"))


@pytest.fixture(scope="session")
def azure_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    yield from azure_server(tmp_path_factory.mktemp("azure"))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No cloud variable from the machine; metadata-server lookups off."""
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in clear_cloud_env({}).items():
        monkeypatch.setenv(name, value)
    return monkeypatch
