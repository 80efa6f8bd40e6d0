"""The storage interface, its error, remote URLs and the per-version local cache.

A :class:`Storage` answers two questions about a model's ``base_path``: which version folders
exist (:meth:`Storage.versions`) and where a version's files are on this machine
(:meth:`Storage.fetch`). A local base path answers both from the file system. A remote one lists
object keys and copies a version's objects into a cache directory once, so the runtime reads plain
files whatever the model format (``mapping_config.json`` and every model file come along).

Every method here is blocking and meant to run in a worker thread (``trio.to_thread.run_sync``);
the async wrappers in this package do that.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

from .._discovery import scan_versions

__all__ = [
    "LocalStorage",
    "RemoteStorage",
    "RemoteURL",
    "Storage",
    "StorageError",
    "is_remote",
    "parse_url",
]

T = TypeVar("T")

ErrorKind = Literal["config", "not_found", "auth", "network", "cancelled", "other"]

#: Scheme -> backend name. ``azure://`` is taken as a synonym of OVMS' ``az://``.
_BACKENDS = {"s3": "s3", "gs": "gcs", "az": "azure", "azure": "azure"}
#: Schemes OVMS knows that ovtrio refuses with a reason rather than reading as a local path.
_UNSUPPORTED = {
    "azfs": "Azure Files shares (azfs://) are not supported; copy the model to Blob Storage "
    "and use az://container/path",
}


class StorageError(Exception):
    """A model repository could not be listed or fetched; ``reason`` says why, for the status.

    ``kind`` sorts the cause: ``config`` (a bad URL or variable), ``not_found`` (no such bucket or
    container), ``auth`` (credentials missing, wrong or refused), ``network`` (the endpoint did not
    answer), ``cancelled`` or ``other``. The registry reports the reason and tries again on its
    next poll.
    """

    def __init__(self, reason: str, kind: ErrorKind = "other") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind: ErrorKind = kind


@dataclass(frozen=True, slots=True)
class RemoteURL:
    """``scheme://bucket/prefix``: ``prefix`` is empty or ends with ``/``."""

    url: str
    scheme: str
    backend: str
    bucket: str
    prefix: str


def is_remote(path: str) -> bool:
    """True when ``path`` names object storage (any scheme OVMS knows, supported or not)."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in (_BACKENDS.keys() | _UNSUPPORTED.keys())


def parse_url(text: str) -> RemoteURL:
    """Split a remote ``base_path``; raise :class:`StorageError` (kind ``config``) if unusable.

    Pure and cheap: config loading can call it to refuse a bad URL before anything starts.
    """
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _BACKENDS:
        if scheme in _UNSUPPORTED:
            raise StorageError(f"{text}: {_UNSUPPORTED[scheme]}", "config")
        known = ", ".join(f"{s}://" for s in _BACKENDS)
        raise StorageError(f"{text}: not a storage URL (expected one of {known})", "config")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{text}: no bucket or container name after {scheme}://", "config")
    parts = [p for p in key.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise StorageError(f"{text}: the path must not contain '.' or '..' segments", "config")
    prefix = "".join(f"{p}/" for p in parts)
    return RemoteURL(
        url=f"{scheme}://{bucket}/{prefix}".rstrip("/"),
        scheme=scheme,
        backend=_BACKENDS[scheme],
        bucket=bucket,
        prefix=prefix,
    )


def _version_number(name: str) -> int | None:
    if name.isascii() and name.isdigit():
        number = int(name)
        if number > 0:
            return number
    return None


class Storage(ABC):
    """Where a model's version folders live. Blocking methods: call them from a worker thread."""

    url: str

    @abstractmethod
    def versions(self) -> list[int]:
        """Sorted positive-integer folder names under the base path (other entries ignored)."""

    @abstractmethod
    def local_path(self, version: int) -> Path:
        """Where ``version``'s files are on this machine, or will be once fetched (no I/O)."""

    @abstractmethod
    def fetch(self, version: int, cancel: threading.Event | None = None) -> Path:
        """A local folder holding ``version``'s files; remote ones are copied to the cache once."""

    @abstractmethod
    def changed(self, version: int) -> bool:
        """Whether ``version``'s files differ from those its last fetch found.

        A version that failed to load is tried again when this is true: its upload may have
        been in progress. A local folder answers False (it is read in place).
        """

    @abstractmethod
    def release(self, version: int) -> None:
        """Forget the local copy of ``version`` (the version was unloaded)."""

    @abstractmethod
    def clear(self) -> None:
        """Forget every local copy (the model was removed or the server stops)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections held by the client."""


class LocalStorage(Storage):
    """A base path on this machine: versions are read in place, nothing is cached."""

    def __init__(self, base_path: Path) -> None:
        self.base_path = base_path
        self.url = str(base_path)
        #: The folders the last listing found (a folder named ``02`` is version 2).
        self._folders: dict[int, Path] = {}

    def versions(self) -> list[int]:
        self._folders = scan_versions(self.base_path)
        return sorted(self._folders)

    def local_path(self, version: int) -> Path:
        return self._folders.get(version) or self.base_path / str(version)

    def fetch(self, version: int, cancel: threading.Event | None = None) -> Path:
        return self.local_path(version)

    def changed(self, version: int) -> bool:
        return False

    def release(self, version: int) -> None:
        pass

    def clear(self) -> None:
        pass

    def close(self) -> None:
        pass


class RemoteStorage(Storage):
    """Object storage: lists keys under ``bucket/prefix`` and copies versions into a cache.

    A version is downloaded into a hidden temporary folder beside its final place and renamed into
    place when complete, so a cached folder is always whole and a failed or cancelled download
    leaves nothing behind. Subclasses provide the listing, the download and the error mapping.
    """

    def __init__(self, remote: RemoteURL, cache_dir: Path) -> None:
        self.remote = remote
        self.url = remote.url
        digest = hashlib.sha256(remote.url.encode()).hexdigest()[:16]
        self.cache = cache_dir / f"{remote.scheme}-{remote.bucket}-{digest}"
        #: The SDK client, made on first use by the subclass; ``close`` closes it.
        self._client: Any = None
        #: Version -> the object keys its last fetch listed (``changed`` compares).
        self._fetched: dict[int, frozenset[str]] = {}

    # -- what a backend provides ---------------------------------------------------------------

    @abstractmethod
    def _folders(self, prefix: str) -> list[str]:
        """Names of the immediate child folders of ``prefix`` (``""`` or ending with ``/``)."""

    @abstractmethod
    def _keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix``, recursively."""

    @abstractmethod
    def _download(self, key: str, dest: Path) -> None:
        """Write object ``key`` to the file ``dest``."""

    @abstractmethod
    def _classify(self, exc: Exception, listing: bool) -> StorageError | None:
        """A :class:`StorageError` for a client exception this backend recognises, else None.

        ``listing`` tells a failed listing (where "not found" means the bucket) from a failed
        download (where it means the object).
        """

    # -- the interface -------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T], *, listing: bool = True) -> T:
        try:
            return fn()
        except StorageError:
            raise
        except ImportError as exc:
            reason = f"{what}: {exc.name or exc} is not installed (pip install 'ovtrio[cloud]')"
            raise StorageError(f"{self.url}: {reason}", "config") from exc
        except Exception as exc:
            known = self._classify(exc, listing)
            if known is None:
                known = StorageError(f"{type(exc).__name__}: {exc}", "other")
            raise StorageError(f"{self.url}: {what}: {known.reason}", known.kind) from exc

    def versions(self) -> list[int]:
        names = self._call("listing versions", lambda: self._folders(self.remote.prefix))
        return sorted({n for n in map(_version_number, names) if n is not None})

    def local_path(self, version: int) -> Path:
        return self.cache / str(version)

    def fetch(self, version: int, cancel: threading.Event | None = None) -> Path:
        final = self.local_path(version)
        if final.is_dir():
            return final
        prefix = f"{self.remote.prefix}{version}/"
        keys = self._call(f"listing version {version}", lambda: self._keys(prefix))
        self._fetched[version] = frozenset(keys)
        files = [(key, rel) for key in keys if (rel := _relative(key, prefix)) is not None]
        if not files:
            # Not cached: the version may be being uploaded, and the next fetch must look again.
            raise StorageError(f"{self.url}: version {version} has no files", "not_found")
        tmp = self._scratch(version)
        try:
            for key, rel in files:
                self._check(cancel, version)
                dest = tmp.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._call(f"fetching {key}", partial(self._download, key, dest), listing=False)
            self._check(cancel, version)
            try:
                tmp.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another fetch of this version won
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StorageError(f"{self.url}: writing the cache in {tmp}: {exc}", "other") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _scratch(self, version: int) -> Path:
        """A new hidden folder in the cache (made again if a ``release`` just removed it)."""
        error: OSError | None = None
        for _ in range(3):
            try:
                self.cache.mkdir(parents=True, exist_ok=True)
                return Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.cache))
            except FileNotFoundError as exc:
                error = exc
            except OSError as exc:
                error = exc
                break
        raise StorageError(f"{self.url}: cache folder {self.cache}: {error}", "other") from error

    def _check(self, cancel: threading.Event | None, version: int) -> None:
        if cancel is not None and cancel.is_set():
            raise StorageError(f"{self.url}: fetching version {version} cancelled", "cancelled")

    def changed(self, version: int) -> bool:
        prefix = f"{self.remote.prefix}{version}/"
        keys = self._call(f"listing version {version}", lambda: self._keys(prefix))
        return frozenset(keys) != self._fetched.get(version)

    def release(self, version: int) -> None:
        shutil.rmtree(self.cache / str(version), ignore_errors=True)
        try:
            self.cache.rmdir()  # only succeeds once no version is cached
        except OSError:
            pass

    def clear(self) -> None:
        self._fetched.clear()
        shutil.rmtree(self.cache, ignore_errors=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _relative(key: str, prefix: str) -> PurePosixPath | None:
    """``key`` below ``prefix`` as a safe relative path; None for folder markers and odd keys."""
    if not key.startswith(prefix) or key.endswith("/"):
        return None
    parts = [p for p in key[len(prefix) :].split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return None
    return PurePosixPath(*parts)
