"""Model repositories on the local disk, S3, Google Cloud Storage and Azure Blob Storage.

``open_storage(base_path, cache_dir)`` gives a :class:`Storage` for a ``base_path`` as written in
config.json or ``--model_path``: ``s3://bucket/path`` (AWS S3 and S3-compatible endpoints),
``gs://bucket/path``, ``az://container/path`` (``azure://`` is the same), or a local folder.
``azfs://`` (Azure Files) is refused with a reason. The blocking methods run in worker threads
through :func:`list_versions`, :func:`fetch_version` and :func:`release_version`.

The clients are the clouds' own SDKs: boto3, google-cloud-storage and azure-storage-blob (the
``cloud`` extra). They are synchronous, which is what a worker thread wants; fsspec's s3fs, gcsfs
and adlfs are asyncio underneath and run their own event loop thread beside trio's, and s3fs pins
aiobotocore, which pins botocore to a narrow range that boto3-based tools (moto) fight. Import
cost, best of three on 2 cores: boto3 0.19 s against s3fs 0.60 s, google-cloud-storage 0.31 s
against gcsfs 0.97 s, azure-storage-blob 0.41 s against adlfs 0.76 s. Each SDK is imported on
first use of its scheme only, so local repositories pay nothing.

Each client's own retries are kept short: a failure becomes a :class:`StorageError` quickly and
the registry's next poll is the retry.
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import trio

from ._base import (
    LocalStorage,
    RemoteStorage,
    RemoteURL,
    Storage,
    StorageError,
    is_remote,
    parse_url,
)

__all__ = [
    "LocalStorage",
    "RemoteStorage",
    "RemoteURL",
    "Storage",
    "StorageError",
    "fetch_version",
    "is_remote",
    "list_versions",
    "open_storage",
    "parse_url",
    "release_version",
]


def open_storage(base_path: str | Path, cache_dir: Path) -> Storage:
    """The storage for ``base_path``; remote versions are cached under ``cache_dir``.

    Cheap and offline: clients are created, and credentials looked up, on first use. Raises
    :class:`StorageError` (kind ``config``) for an unusable remote URL.
    """
    text = str(base_path)
    if not is_remote(text):
        return LocalStorage(Path(base_path))
    remote = parse_url(text)
    if remote.backend == "s3":
        from ._s3 import S3Storage

        return S3Storage(remote, cache_dir)
    if remote.backend == "gcs":
        from ._gcs import GCSStorage

        return GCSStorage(remote, cache_dir)
    from ._azure import AzureBlobStorage

    return AzureBlobStorage(remote, cache_dir)


async def list_versions(storage: Storage) -> list[int]:
    """:meth:`Storage.versions` in a worker thread; a cancelled listing is abandoned."""
    return await trio.to_thread.run_sync(storage.versions, abandon_on_cancel=True)


async def fetch_version(storage: Storage, version: int) -> Path:
    """:meth:`Storage.fetch` in a worker thread.

    On cancellation the thread is abandoned and told to stop: it stops before its next file and
    removes its partial download.
    """
    cancel = threading.Event()
    try:
        return await trio.to_thread.run_sync(
            partial(storage.fetch, version, cancel), abandon_on_cancel=True
        )
    finally:
        cancel.set()


async def release_version(storage: Storage, version: int) -> None:
    """:meth:`Storage.release` (removing the cached folder) in a worker thread."""
    await trio.to_thread.run_sync(storage.release, version)
