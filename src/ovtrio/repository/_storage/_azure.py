"""Azure Blob Storage through azure-storage-blob.

``az://container/path`` (and ``azure://``) with the account named by
``AZURE_STORAGE_CONNECTION_STRING``, as OVMS documents; the connection string's
``BlobEndpoint`` points at Azurite or another endpoint. Proxies come from ``https_proxy`` /
``http_proxy`` as for any client on this machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._base import RemoteStorage, StorageError

#: Retries of one call by the client itself; the registry retries on its next poll.
_RETRIES = 2


class AzureBlobStorage(RemoteStorage):
    """``az://container/path``."""

    def _container(self) -> Any:
        if self._client is None:
            from azure.storage.blob import BlobServiceClient, LinearRetry

            conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
            if not conn:
                raise StorageError(
                    f"{self.url}: AZURE_STORAGE_CONNECTION_STRING is not set", "config"
                )
            try:
                self._client = BlobServiceClient.from_connection_string(
                    conn,
                    retry_policy=LinearRetry(
                        backoff=1, random_jitter_range=1, retry_total=_RETRIES
                    ),
                    connection_timeout=5,
                    read_timeout=60,
                )
            except ValueError as exc:
                raise StorageError(
                    f"{self.url}: AZURE_STORAGE_CONNECTION_STRING is not usable: {exc}", "config"
                ) from exc
        return self._client.get_container_client(self.remote.bucket)

    def _folders(self, prefix: str) -> list[str]:
        from azure.storage.blob import BlobPrefix

        items = self._container().walk_blobs(name_starts_with=prefix or None, delimiter="/")
        return [
            item.name[len(prefix) :].rstrip("/") for item in items if isinstance(item, BlobPrefix)
        ]

    def _keys(self, prefix: str) -> list[str]:
        blobs = self._container().list_blobs(name_starts_with=prefix or None)
        return [blob.name for blob in blobs]

    def _download(self, key: str, dest: Path) -> None:
        with dest.open("wb") as out:
            self._container().download_blob(key).readinto(out)

    def _classify(self, exc: Exception, listing: bool) -> StorageError | None:
        from azure.core import exceptions as aze

        code = getattr(exc, "error_code", None)
        code = getattr(code, "value", code)  # azure-storage-blob's StorageErrorCode enum
        status = getattr(exc, "status_code", None)
        if isinstance(exc, aze.ResourceNotFoundError):
            if code == "ContainerNotFound":
                return StorageError(f"container {self.remote.bucket!r} does not exist", "not_found")
            return StorageError(f"blob not found ({exc.reason})", "not_found")
        if isinstance(exc, aze.ClientAuthenticationError) or status in (401, 403):
            return StorageError(
                f"access denied ({code or status}: {getattr(exc, 'reason', exc)}); check "
                "AZURE_STORAGE_CONNECTION_STRING",
                "auth",
            )
        if isinstance(exc, aze.ServiceRequestError | aze.ServiceResponseError):
            return StorageError(f"cannot reach the blob endpoint: {exc}", "network")
        if isinstance(exc, aze.HttpResponseError):
            return StorageError(f"Azure error {code or status}: {exc.reason}", "other")
        return None
