"""Where every artifact lives: one small interface over a local folder or an S3-compatible bucket.

Keys are `/`-separated relative paths in DESIGN.md's layout (`hero_image/<SKU>.png`, ...). Writes are atomic
(a reader sees the old object or the new one, never half of one), which is what lets a crash at any moment
leave storage consistent and lets a re-run trust what it finds.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from prodvid_core.errors import StorageError

__all__ = ["ObjectStore", "LocalStore", "S3Store", "open_store", "INBOX_PREFIX"]

INBOX_PREFIX = "inbox/"


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"Storage key {key!r} is not a relative path of plain segments.")
    return key


class ObjectStore(ABC):
    """A flat namespace of byte objects addressed by relative keys."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Return the object's bytes; raise `FileNotFoundError` if it does not exist."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically, replacing any previous object."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys starting with `prefix`, sorted."""

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def url(self, key: str) -> str:
        """Where a person finds the object: a local path or an `s3://` URL."""

    def delete(self, key: str) -> None:
        """Remove an object; inputs under `inbox/` are never deleted by prodvid."""
        if _check_key(key).startswith(INBOX_PREFIX):
            raise StorageError(f"Refusing to delete input {key!r}: prodvid never deletes what lands in the inbox.")
        self._delete(key)


class LocalStore(ObjectStore):
    """A folder on disk; atomic writes by write-to-temp + `os.replace`."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        return str(self._path(key))


class S3Store(ObjectStore):
    """An S3-compatible bucket (AWS S3, MinIO, R2, a local test server) through boto3."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, client=None):
        raise NotImplementedError  # filled in by the storage work


def open_store(location: str | None = None, *, endpoint_url: str | None = None) -> ObjectStore:
    """Open the store at `location` (a folder or `s3://bucket/prefix`), defaulting to `$PRODVID_STORE`."""
    location = location or os.environ.get("PRODVID_STORE") or "./prodvid-data"
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://") :].partition("/")
        endpoint_url = endpoint_url or os.environ.get("PRODVID_S3_ENDPOINT_URL") or None
        return S3Store(bucket, prefix, endpoint_url=endpoint_url)
    return LocalStore(location)
