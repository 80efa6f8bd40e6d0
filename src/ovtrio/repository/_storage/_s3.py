"""Amazon S3 and S3-compatible endpoints (MinIO, Ceph, moto, ...) through boto3.

Variables, as OVMS documents them: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and
``AWS_SESSION_TOKEN``), ``AWS_PROFILE`` with ``~/.aws/credentials``, ``AWS_REGION`` (else
``AWS_DEFAULT_REGION``, else us-east-1) and ``S3_ENDPOINT`` for S3-compatible servers
(``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` are read when it is unset). An endpoint without a
scheme uses https unless ``S3_USE_HTTPS=0``; ``S3_VERIFY_SSL=0`` skips certificate checks. With a
custom endpoint, requests use path-style addressing, which S3-compatible servers expect. Without
any credentials, requests go unsigned, which reads public buckets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._base import RemoteStorage, RemoteURL, StorageError

_AUTH_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
}


def _endpoint() -> str | None:
    endpoint = (
        os.environ.get("S3_ENDPOINT")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if not endpoint:
        return None
    if "://" not in endpoint:
        https = os.environ.get("S3_USE_HTTPS", "1") not in ("0", "false", "False")
        endpoint = f"{'https' if https else 'http'}://{endpoint}"
    return endpoint


class S3Storage(RemoteStorage):
    """``s3://bucket/path``."""

    def __init__(self, remote: RemoteURL, cache_dir: Path) -> None:
        super().__init__(remote, cache_dir)
        self.endpoint = _endpoint()

    def _s3(self) -> Any:
        if self._client is None:
            import boto3  # type: ignore[import-untyped]
            from botocore import UNSIGNED  # type: ignore[import-untyped]
            from botocore.config import Config  # type: ignore[import-untyped]

            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            session = boto3.session.Session(region_name=region or "us-east-1")
            unsigned = session.get_credentials() is None
            config = Config(
                signature_version=UNSIGNED if unsigned else None,
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                s3={"addressing_style": "path"} if self.endpoint else {},
            )
            verify = os.environ.get("S3_VERIFY_SSL", "1") not in ("0", "false", "False")
            self._client = session.client(
                "s3", endpoint_url=self.endpoint, config=config, verify=verify
            )
        return self._client

    def _folders(self, prefix: str) -> list[str]:
        pages = (
            self._s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.remote.bucket, Prefix=prefix, Delimiter="/")
        )
        return [
            common["Prefix"][len(prefix) :].rstrip("/")
            for page in pages
            for common in page.get("CommonPrefixes", ())
        ]

    def _keys(self, prefix: str) -> list[str]:
        pages = (
            self._s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.remote.bucket, Prefix=prefix)
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", ())]

    def _download(self, key: str, dest: Path) -> None:
        self._s3().download_file(self.remote.bucket, key, str(dest))

    def _classify(self, exc: Exception, listing: bool) -> StorageError | None:
        from botocore import exceptions as bce

        where = self.endpoint or "AWS S3"
        if isinstance(exc, bce.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = error.get("Message") or code
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return StorageError(f"bucket {self.remote.bucket!r} does not exist", "not_found")
            if code in _AUTH_CODES or status in (401, 403):
                return StorageError(
                    f"access denied ({code}: {message}); check AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY",
                    "auth",
                )
            if code in ("404", "NoSuchKey"):
                return StorageError(f"object not found ({message})", "not_found")
            return StorageError(f"S3 error {code}: {message}", "other")
        if isinstance(
            exc, bce.NoCredentialsError | bce.PartialCredentialsError | bce.ProfileNotFound
        ):
            return StorageError(f"credentials: {exc}", "auth")
        if isinstance(exc, bce.HTTPClientError | bce.ConnectionError):
            return StorageError(f"cannot reach {where}: {exc}", "network")
        if isinstance(exc, bce.BotoCoreError):
            return StorageError(f"{type(exc).__name__}: {exc}", "other")
        return None
