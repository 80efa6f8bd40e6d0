"""Google Cloud Storage through google-cloud-storage.

Credentials, as OVMS documents them: ``GOOGLE_APPLICATION_CREDENTIALS`` names a key file; without
it, Application Default Credentials apply (a GKE workload identity, ``gcloud auth
application-default login``), and with none of those found requests go anonymous, which reads
public buckets. ``STORAGE_EMULATOR_HOST`` (``http://host:port``) points the client at an emulator
and makes it anonymous unless a key file is named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._base import RemoteStorage, RemoteURL, StorageError

_READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only"
#: Seconds for the client's own retries of one call; the registry retries on its next poll.
_RETRY_DEADLINE = 5.0
#: (connect, read) seconds for one HTTP request.
_TIMEOUT = (5.0, 60.0)


class GCSStorage(RemoteStorage):
    """``gs://bucket/path``."""

    def __init__(self, remote: RemoteURL, cache_dir: Path) -> None:
        super().__init__(remote, cache_dir)
        self._retry: Any = None

    def _gcs(self) -> Any:
        if self._client is None:
            import google.auth
            from google.api_core.retry import Retry
            from google.cloud import storage  # type: ignore[import-untyped]

            key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            if os.environ.get("STORAGE_EMULATOR_HOST") and not key_file:
                client = storage.Client()
            else:
                try:
                    credentials, project = google.auth.default(scopes=[_READ_ONLY])
                except google.auth.exceptions.DefaultCredentialsError:
                    if key_file:
                        raise
                    client = storage.Client.create_anonymous_client()
                else:
                    client = storage.Client(project=project or "<none>", credentials=credentials)
            self._retry = Retry(timeout=_RETRY_DEADLINE)
            self._client = client
        return self._client

    def _folders(self, prefix: str) -> list[str]:
        blobs = self._gcs().list_blobs(
            self.remote.bucket,
            prefix=prefix,
            delimiter="/",
            retry=self._retry,
            timeout=_TIMEOUT,
        )
        for _ in blobs:  # prefixes fill in as the pages are read
            pass
        return [p[len(prefix) :].rstrip("/") for p in blobs.prefixes]

    def _keys(self, prefix: str) -> list[str]:
        blobs = self._gcs().list_blobs(
            self.remote.bucket, prefix=prefix, retry=self._retry, timeout=_TIMEOUT
        )
        return [blob.name for blob in blobs]

    def _download(self, key: str, dest: Path) -> None:
        blob = self._gcs().bucket(self.remote.bucket).blob(key)
        blob.download_to_filename(str(dest), retry=self._retry, timeout=_TIMEOUT)

    def _classify(self, exc: Exception, listing: bool) -> StorageError | None:
        import requests
        from google.api_core import exceptions as gapi
        from google.auth import exceptions as gauth

        if isinstance(exc, gapi.NotFound):
            if listing:
                return StorageError(f"bucket {self.remote.bucket!r} does not exist", "not_found")
            return StorageError(f"object not found ({exc.message})", "not_found")
        if isinstance(exc, gapi.Unauthorized | gapi.Forbidden):
            return StorageError(
                f"access denied ({exc.message}); check GOOGLE_APPLICATION_CREDENTIALS", "auth"
            )
        if isinstance(exc, gauth.DefaultCredentialsError | gauth.RefreshError):
            return StorageError(f"credentials: {exc}; check GOOGLE_APPLICATION_CREDENTIALS", "auth")
        if isinstance(
            exc,
            gauth.TransportError | requests.ConnectionError | requests.Timeout | gapi.RetryError,
        ):
            where = os.environ.get("STORAGE_EMULATOR_HOST") or "Google Cloud Storage"
            return StorageError(f"cannot reach {where}: {exc}", "network")
        if isinstance(exc, gapi.GoogleAPICallError):
            return StorageError(f"GCS error {exc.code}: {exc.message}", "other")
        return None
