"""Cloud model repositories against real storage servers: moto, gcp-storage-emulator, Azurite."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import openvino as ov
import pytest
import trio

from ovtrio.repository._storage import (
    LocalStorage,
    Storage,
    StorageError,
    fetch_version,
    is_remote,
    list_versions,
    open_storage,
    parse_url,
    release_version,
)
from tests import models
from tests.storage import Backend

pytestmark = pytest.mark.e2e

MAPPING = b'{"inputs": {"b": "input"}, "outputs": {"a": "output"}}'


def _model_tree(tmp_path: Path, version: int, addend: float) -> Path:
    """A real OpenVINO IR with a mapping_config.json and a nested file, as one version folder."""
    base = tmp_path / f"src-{version}"
    models.add_model(base, version=1, addend=addend)
    folder = base / "1"
    (folder / "mapping_config.json").write_bytes(MAPPING)
    (folder / "extra").mkdir()
    (folder / "extra" / "labels.txt").write_text("cat\ndog\n")
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _leftovers(storage: Storage) -> list[str]:
    cache = getattr(storage, "cache", None)
    if cache is None or not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir())


# -- URLs and the local storage (no server) ----------------------------------------------------


def test_urls() -> None:
    assert is_remote("s3://b/m") and is_remote("GS://b/m") and is_remote("az://c/m")
    assert is_remote("azure://c/m") and is_remote("azfs://share/m")
    assert not is_remote("/models/m") and not is_remote("models/s3://x")
    url = parse_url("s3://bucket/models//resnet/")
    assert (url.backend, url.bucket, url.prefix, url.url) == (
        "s3",
        "bucket",
        "models/resnet/",
        "s3://bucket/models/resnet",
    )
    assert parse_url("gs://bucket").prefix == ""
    assert parse_url("azure://container/m").backend == "azure"
    for bad, words in [
        ("azfs://share/m", "Azure Files"),
        ("s3:///m", "no bucket"),
        ("gs://bucket/a/../b", "'..'"),
    ]:
        with pytest.raises(StorageError, match=words) as info:
            parse_url(bad)
        assert info.value.kind == "config"


def test_local_storage_reads_in_place(tmp_path: Path) -> None:
    for name in ("1", "3", "0", "x", "02"):
        (tmp_path / "m" / name).mkdir(parents=True)
    storage = open_storage(tmp_path / "m", tmp_path / "cache")
    assert isinstance(storage, LocalStorage)
    assert storage.versions() == [1, 2, 3]
    assert storage.fetch(3) == tmp_path / "m" / "3"
    storage.release(3)
    assert (tmp_path / "m" / "3").is_dir()
    assert not (tmp_path / "cache").exists()


def test_azure_without_connection_string(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    storage = open_storage("az://container/m", tmp_path)
    with pytest.raises(StorageError, match="AZURE_STORAGE_CONNECTION_STRING") as info:
        storage.versions()
    assert info.value.kind == "config"


# -- against the servers -----------------------------------------------------------------------


def test_lists_and_fetches_versions(backend: Backend, tmp_path: Path) -> None:
    bucket = f"fetch-{backend.name}"
    backend.create_bucket(bucket)
    sent = {
        v: backend.put_tree(bucket, f"models/dummy/{v}/", _model_tree(tmp_path, v, float(v)))
        for v in (1, 2)
    }
    backend.put(bucket, "models/dummy/0/model.xml", b"not a version")
    backend.put(bucket, "models/dummy/latest/model.xml", b"not a version")
    backend.put(bucket, "models/dummy/readme.txt", b"not a version")
    backend.put(bucket, "models/dummy2/7/model.xml", b"another model")
    cache = tmp_path / "cache"
    storage = open_storage(backend.url(bucket, "models/dummy/"), cache)
    try:
        assert storage.versions() == [1, 2]
        local = storage.fetch(2)
        assert local.parent.parent == cache
        assert _files(local) == sent[2]
        compiled = ov.Core().read_model(str(local / "model.xml"))
        assert compiled.inputs[0].get_any_name() == "b"
        # Once per version: a second fetch reads the cache, even with the objects gone.
        backend.delete_prefix(bucket, "models/dummy/2/")
        assert storage.fetch(2) == local
        assert _leftovers(storage) == ["2"]
        storage.release(2)
        assert not local.exists() and not storage.cache.exists()  # type: ignore[attr-defined]
        assert storage.versions() == [1]
        with pytest.raises(StorageError, match="version 2 has no files") as info:
            storage.fetch(2)
        assert info.value.kind == "not_found"
        assert not storage.cache.exists()  # type: ignore[attr-defined]
        assert _files(storage.fetch(1)) == sent[1]
        storage.clear()
        assert not storage.cache.exists()  # type: ignore[attr-defined]
    finally:
        storage.close()


def test_follows_uploads_and_removals(backend: Backend, tmp_path: Path) -> None:
    bucket = f"poll-{backend.name}"
    backend.create_bucket(bucket)
    backend.put_tree(bucket, "m/1/", _model_tree(tmp_path, 1, 1.0))
    storage = open_storage(backend.url(bucket, "m"), tmp_path / "cache")

    async def main() -> None:
        assert await list_versions(storage) == [1]
        first = await fetch_version(storage, 1)
        backend.put_tree(bucket, "m/3/", _model_tree(tmp_path, 3, 3.0))
        assert await list_versions(storage) == [1, 3]
        third = await fetch_version(storage, 3)
        assert (third / "mapping_config.json").read_bytes() == MAPPING
        backend.delete_prefix(bucket, "m/1/")
        assert await list_versions(storage) == [3]
        await release_version(storage, 1)
        assert not first.exists() and third.exists()

    try:
        trio.run(main)
    finally:
        storage.close()
    assert _leftovers(storage) == ["3"]


def test_changed_tells_a_finished_upload(backend: Backend, tmp_path: Path) -> None:
    bucket = f"changed-{backend.name}"
    backend.create_bucket(bucket)
    backend.put(bucket, "m/1/model.xml", b"<net/>")
    storage = open_storage(backend.url(bucket, "m"), tmp_path / "cache")
    try:
        assert storage.changed(1)  # never fetched
        storage.fetch(1)
        storage.release(1)
        assert not storage.changed(1)
        backend.put(bucket, "m/1/model.bin", b"weights")
        assert storage.changed(1)
        assert not open_storage(tmp_path / "local", tmp_path).changed(1)
    finally:
        storage.close()


def test_missing_bucket(backend: Backend, tmp_path: Path) -> None:
    storage = open_storage(backend.url("no-such-bucket", "m"), tmp_path)
    with pytest.raises(StorageError, match=r"no-such-bucket.*does not exist") as info:
        storage.versions()
    assert info.value.kind == "not_found"
    assert info.value.reason.startswith(f"{backend.scheme}://no-such-bucket/m: ")
    storage.close()


def test_missing_base_path_has_no_versions(backend: Backend, tmp_path: Path) -> None:
    bucket = f"empty-{backend.name}"
    backend.create_bucket(bucket)
    storage = open_storage(backend.url(bucket, "nothing/here"), tmp_path)
    assert storage.versions() == []
    storage.close()


def test_bad_credentials(backend: Backend, tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    bucket = f"auth-{backend.name}"
    backend.create_bucket(bucket)
    backend.put(bucket, "m/1/model.xml", b"x")
    for name, value in backend.bad_env.items():
        clean_env.setenv(name, value)
    storage = open_storage(backend.url(bucket, "m"), tmp_path)
    with pytest.raises(StorageError) as info:
        storage.versions()
    assert info.value.kind == "auth", info.value.reason
    assert "access denied" in info.value.reason or "credentials" in info.value.reason
    storage.close()


def test_cancelled_fetch_leaves_nothing(
    s3_backend: Backend, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in s3_backend.env.items():
        clean_env.setenv(name, value)
    bucket = "cancel-s3"
    s3_backend.create_bucket(bucket)
    s3_backend.put_tree(bucket, "m/1/", _model_tree(tmp_path, 1, 1.0))
    storage = open_storage(s3_backend.url(bucket, "m"), tmp_path / "cache")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(StorageError, match="cancelled") as info:
        storage.fetch(1, cancel)
    assert info.value.kind == "cancelled"
    assert _leftovers(storage) == []
    storage.close()


def test_survives_a_storage_outage(private_backend: Backend, tmp_path: Path) -> None:
    """Server stopped: a clear network error, no partial cache; started again: works again."""
    backend = private_backend
    tree = _model_tree(tmp_path, 1, 1.0)
    backend.create_bucket("outage")
    backend.put_tree("outage", "m/1/", tree)
    storage = open_storage(backend.url("outage", "m"), tmp_path / "cache")
    try:
        assert storage.versions() == [1]
        backend.process.stop()
        for call in (storage.versions, lambda: storage.fetch(1)):
            started = time.monotonic()
            with pytest.raises(StorageError, match="cannot reach") as info:
                call()
            assert info.value.kind == "network", info.value.reason
            assert time.monotonic() - started < 30
        assert _leftovers(storage) == []
        backend.process.start()
        if backend.name != "azure":  # moto and the GCS emulator keep their data in memory
            backend.create_bucket("outage")
            backend.put_tree("outage", "m/1/", tree)
        assert storage.versions() == [1]
        assert (storage.fetch(1) / "model.xml").is_file()
    finally:
        storage.close()


def test_missing_sdk_is_a_reason(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    storage = open_storage("s3://bucket/m", tmp_path)
    with pytest.raises(StorageError, match=r"boto3 is not installed \(pip install") as info:
        storage.versions()
    assert info.value.kind == "config"
