"""Where every artifact lives: one small interface over a local folder or an S3-compatible bucket.

Keys are `/`-separated relative paths of the storage layout (`layout.py`: `hero_image/<SKU>.png`, ...).
Writes are atomic (a reader sees the old object or the new one, never half of one), which is what lets a
crash at any moment leave storage consistent and lets a re-run trust what it finds.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from urllib3.exceptions import ProtocolError

from prodvid_core.errors import StorageError
from prodvid_core.layout import sku_of

__all__ = ["ObjectStore", "LocalStore", "S3Store", "open_store", "INBOX_PREFIX"]

INBOX_PREFIX = "inbox/"
# A write's temp file this old is a killed writer's leftover, not a write in progress (writes take seconds).
STALE_TEMP_SECONDS = 3600


def _is_plain(key: str) -> bool:
    """Whether `key` is a relative path of plain segments: no empty, `.` or `..` segment, so it names the
    same object in a folder and in a bucket, and never one outside the store root or the S3 prefix."""
    return bool(key) and not any(part in ("", ".", "..") for part in key.split("/"))


def _check_key(key: str) -> str:
    if not _is_plain(key):
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
    def list_etags(self, prefix: str = "") -> dict[str, str]:
        """Every key starting with `prefix`, sorted, with its ETag, from the listing alone (no object read).

        An ETag, as in HTTP, is an opaque string that changes whenever the object is rewritten with other
        bytes; it may also change when the same bytes are written again. Compare ETags for equality only.
        This is what lets a caller that polls (the inbox sensor) skip reading objects that did not change.
        """

    def list(self, prefix: str = "") -> list[str]:
        """All keys starting with `prefix`, sorted."""
        return list(self.list_etags(prefix))

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def url(self, key: str) -> str:
        """Where a person finds the object: a local path or an `s3://` URL."""

    def delete(self, key: str) -> None:
        """Remove an object; inputs under `inbox/` are never deleted by prodvid."""
        if _check_key(key).startswith(INBOX_PREFIX):
            raise StorageError(
                f"Refusing to delete input {key!r}: prodvid never deletes what lands in the inbox."
            )
        self._delete(key)


class LocalStore(ObjectStore):
    """A folder on disk; atomic, durable writes by write-to-temp + fsync + `os.replace` + fsync of the folder.

    Files and folders are created with the process umask, as `open` and `mkdir` make them (0644 and 0755
    under the usual umask 022), so a web server or a teammate can read the videos; a umask of 077 keeps them
    private. Symbolic links under the root are followed only where they stay inside the root: a key whose
    path leads outside (an `inbox/` photo linked to `/etc/...`, a folder linked elsewhere) is refused.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        """The file of `key`, refusing one whose path (through symbolic links) leads outside the root."""
        path = self.root / _check_key(key)
        self._check_inside(path, key)
        return path

    def _check_inside(self, path: Path, key: str) -> None:
        try:
            target = path.resolve()
        except (OSError, RuntimeError) as e:  # a symlink loop (RuntimeError before Python 3.13)
            raise StorageError(
                f"Storage key {key!r} cannot be resolved under {str(self.root)!r}: {e}."
            ) from e
        if target != self.root and not target.is_relative_to(self.root):
            raise StorageError(
                f"Storage key {key!r} is a symbolic link (or under one) to {str(target)!r}, outside the "
                f"store root {str(self.root)!r}: prodvid does not follow links out of the store; copy the "
                "file in."
            )

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        """1. the bytes into a temp file beside the target, fsynced; 2. `os.replace` onto the target;
        3. fsync of the folder, so the rename itself survives a power loss (ext4, XFS: one journal commit);
        4. the temp files of this key that a killed writer left behind go (`_remove_stale_temps`)."""
        path = self._path(key)
        _make_folders(path.parent)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        # os.open's mode 0o666 is narrowed by the umask (and a default ACL), like any program's new file;
        # tempfile.mkstemp would make it 0600 whatever the umask.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)
        _remove_stale_temps(path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_etags(self, prefix: str = "") -> dict[str, str]:
        """ETag `<mtime_ns>:<size>:<inode>` from one `stat` per file, like a web server's ETag for a file.

        Every write is a new file moved into place (`os.replace`), so a rewrite gets a new inode, even when
        it lands within the file system's timestamp granularity with the same size. Only the prefix's folder
        is walked: listing `inbox/` does not visit every frame of every SKU.
        """
        folder, _, _ = prefix.rpartition("/")
        if folder and any(part in ("", ".", "..") for part in folder.split("/")):
            return {}  # no key has an empty, `.` or `..` segment
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return {}
        self._check_inside(base, folder)
        etags = {}
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.name.startswith(".") or not key.startswith(prefix):  # `.` names: temp files of writes
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # removed since the folder was read
                continue
            if stat.S_ISREG(st.st_mode):
                etags[key] = f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"
        return dict(sorted(etags.items()))

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        return str(self.root / _check_key(key))


def _remove_stale_temps(path: Path) -> None:
    """Delete the temp files `.<name>.<random>.tmp` of `path` older than `STALE_TEMP_SECONDS`: a writer
    killed between its open and its rename (SIGKILL, power loss) leaves one, which every listing ignores but
    which holds disk space. Only this key's are looked at, when the key is written again (a rerun of the
    killed one); a younger one may be another process's write in progress, so it stays."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile by another writer
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()


def _make_folders(folder: Path) -> None:
    """`mkdir -p folder` (mode 0o777 less the umask), fsyncing the parent of each folder it makes, so that
    a new folder's entry survives a power loss as well as the files in it; nothing when it exists."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:  # made meanwhile by another writer; a file there fails the open below
            continue
        _fsync_folder(new.parent)


def _fsync_folder(folder: Path) -> None:
    """fsync a folder, making the renames and new entries in it durable; a file system that cannot
    (EINVAL: some network and FUSE file systems) has nothing to flush."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class S3Store(ObjectStore):
    """An S3-compatible bucket (AWS S3, MinIO, R2, a local test server) through boto3.

    Keys live under `prefix` in `bucket`. A single `put_object` is atomic in S3, so writes need no temp
    objects. Credentials come only from boto3's usual chain (`AWS_*` env vars, `~/.aws` files, instance
    roles), never from prodvid's config, so they never reach a run config or a log. Every boto error becomes
    a `StorageError` naming the SKU, the object's key, the bucket, the endpoint and the fix; a missing key
    stays `FileNotFoundError`. Failed requests are retried first (`_s3_client`; README, "S3 retries").

    Args:
        endpoint_url: an S3-compatible server (`PRODVID_S3_ENDPOINT_URL`); `None` means AWS.
        client: a ready boto3 S3 client, for callers that configure their own.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        client: BaseClient | None = None,
    ):
        if not bucket:
            raise StorageError("S3 bucket name is empty: use a store location like s3://my-bucket/prefix.")
        prefix = prefix.rstrip("/")
        _check_no_credentials(bucket, endpoint_url)
        self.bucket = bucket
        self.prefix = _check_key(prefix) + "/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.client = client or _s3_client(endpoint_url)

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes. botocore retries a GET that fails before its response arrives; a response cut
        off after its headers is not retried by botocore, so the GET is made again here, up to the client's
        attempts."""
        url = self.url(key)
        with self._errors("read", key):
            for left in range(_attempts(self.client), 0, -1):
                try:
                    response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
                except self.client.exceptions.NoSuchKey:
                    raise FileNotFoundError(errno.ENOENT, "No such S3 object", url) from None
                except ProtocolError:  # an error body (a 404) cut off: botocore reads it outside its retries
                    if left == 1:
                        raise
                    continue
                try:
                    return response["Body"].read()
                except _BODY_CUT_OFF:  # botocore hands the object's body over unread
                    if left == 1:
                        raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._errors("write", _check_key(key)):
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def exists(self, key: str) -> bool:
        """A one-key listing rather than HEAD: HEAD answers a bare 404 for a missing bucket as well, which
        would make a misconfigured store look empty instead of failing."""
        full_key = self.prefix + _check_key(key)
        with self._errors("check", key):
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=full_key, MaxKeys=1)
        return any(obj["Key"] == full_key for obj in page.get("Contents", []))

    def list_etags(self, prefix: str = "") -> dict[str, str]:
        """ETag `<S3 ETag>:<size>` as ListObjectsV2 returns them (1,000 keys per request), so no GET.

        The S3 ETag of a single-part upload is the MD5 of its bytes: writing the same bytes again keeps it.
        """
        etags = {}
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix) :]
                    if not _is_plain(key):  # `a//b`, `../x`: put there by another tool; no key of ours
                        continue
                    etag = obj["ETag"].strip('"')  # S3 sends it quoted, as HTTP does
                    etags[key] = f"{etag}:{obj['Size']}"
        return dict(sorted(etags.items()))

    def _delete(self, key: str) -> None:
        with self._errors("delete", _check_key(key)):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{_check_key(key)}"

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn boto's errors into one `StorageError` a person can act on (credentials never appear): the SKU
        the key belongs to, the object's URL, the endpoint, and what to do."""
        sku = sku_of(key)
        url = f"s3://{self.bucket}/{self.prefix}{key}"
        where = f"{f'SKU {sku}: c' if sku else 'C'}annot {action} {url}"
        where += f" (bucket {self.bucket!r} at {self.client.meta.endpoint_url})"
        attempts = _attempts(self.client)
        tries = f"{attempts} attempt{'' if attempts == 1 else 's'}"
        try:
            yield
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                fix = "the bucket does not exist; create it, or fix the bucket in PRODVID_STORE"
            elif code in _DENIED_CODES:
                fix = f"access denied ({code}); check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE)"
            else:
                message = e.response.get("Error", {}).get("Message", "").rstrip(".")
                retried = e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
                fix = f"{code}: {message}" + (f" (after {retried + 1} attempts)" if retried else "")
            raise StorageError(f"{where}: {fix}.") from e
        except (EndpointConnectionError, ConnectTimeoutError) as e:
            fix = (
                f"the endpoint is unreachable after {tries}; check PRODVID_S3_ENDPOINT_URL and that the "
                "server runs"
            )
            raise StorageError(f"{where}: {fix}.") from e
        except NoCredentialsError as e:
            fix = "no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            raise StorageError(f"{where}: {fix}.") from e
        except (BotoCoreError, ProtocolError) as e:
            raise StorageError(f"{where}: {str(e).rstrip('.')} (after {tries}).") from e


def _check_no_credentials(bucket: str, endpoint_url: str | None) -> None:
    """Refuse a bucket or endpoint that carries a user name or password (`s3://KEY:SECRET@bucket`,
    `http://user:pass@host`): both are echoed in every message and repr, so credentials in them would reach
    logs and Dagster's UI. The message does not repeat them."""
    where = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), never in a URL"
    if "@" in bucket or ":" in bucket:
        raise StorageError(
            f"The S3 bucket name in the store location holds '@' or ':': credentials go in {where}."
        )
    if endpoint_url and "@" in endpoint_url:
        # Not urlsplit's username/password: a secret holding '/' (AWS secrets do) ends the host part early.
        scheme, _, rest = endpoint_url.rpartition("://")
        shown = f"{scheme or 'http'}://***@{rest.rpartition('@')[2]}"
        raise StorageError(
            f"The S3 endpoint URL {shown!r} holds a user name or password: credentials go in {where}."
        )


_DENIED_CODES = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",  # a malformed AWS_SESSION_TOKEN
}
# An object's body that stops short: the connection was reset, closed or went quiet after the headers.
_BODY_CUT_OFF = (ResponseStreamingError, IncompleteReadError, ReadTimeoutError)

# Attempts per S3 request (the first one and its retries) unless AWS_MAX_ATTEMPTS or `max_attempts` in
# ~/.aws/config says otherwise. botocore's standard mode waits rand(0, 1) * min(scale * 2**i, 20) s before
# retry i: scale 1 s after a throttle (503 SlowDown) and, in recent botocore, 50 ms after a dropped
# connection or another 5xx. 12 attempts wait for a restarting server 33 s on average (65 s at most), for
# throttling 75 s (150 s at most).
S3_MAX_ATTEMPTS = 12
S3_CONNECT_TIMEOUT = 5  # s to open a connection; a failed one is retried like any other failed attempt
S3_READ_TIMEOUT = 60  # s without a byte from the server before the attempt fails (botocore's default)
RETRY_MODES = ("standard", "adaptive", "legacy")


def _retries(session: botocore.session.Session) -> dict:
    """botocore's retry settings: AWS_RETRY_MODE and AWS_MAX_ATTEMPTS (or `retry_mode`, `max_attempts` in
    ~/.aws/config) when set, else standard mode with `S3_MAX_ATTEMPTS`; a value that cannot work is refused
    here, with its name, rather than by botocore in a traceback."""
    raw = os.environ.get("AWS_MAX_ATTEMPTS")
    try:
        attempts = session.get_config_variable("max_attempts")
    except ValueError:
        attempts = 0
    # Not `get_config_variable("retry_mode")`: botocore 1.36 (boto3 1.36, our lowest) answers "legacy" when
    # neither is set, so prodvid ran on legacy retries there (.ci/lowest found it).
    mode = os.environ.get("AWS_RETRY_MODE") or session.get_scoped_config().get("retry_mode") or "standard"
    if attempts is not None and attempts < 1:
        raise StorageError(
            f"AWS_MAX_ATTEMPTS (or max_attempts in ~/.aws/config) must be a whole number, 1 or more, but is "
            f"{raw if raw is not None else attempts!r}."
        )
    if mode not in RETRY_MODES:
        raise StorageError(
            f"AWS_RETRY_MODE (or retry_mode in ~/.aws/config) must be one of {', '.join(RETRY_MODES)} but "
            f"is {mode!r}."
        )
    return {"mode": mode, "total_max_attempts": attempts or S3_MAX_ATTEMPTS}


def _attempts(client: BaseClient) -> int:
    """How many times the client tries a request (a client made elsewhere may not say: botocore's 3)."""
    retries = client.meta.config.retries or {}
    return retries.get("total_max_attempts") or retries.get("max_attempts", 2) + 1


def _s3_client(endpoint_url: str | None) -> BaseClient:
    """A client on boto3's credential chain; region from `AWS_DEFAULT_REGION` or ~/.aws, else us-east-1.

    Failed requests (dropped connections, timeouts, 5xx, 503 SlowDown) are retried with backoff by botocore
    (`_retries`); a write is one PUT, so retrying it is safe, and a request that still fails raises."""
    core = botocore.session.get_session()
    session = boto3.session.Session(botocore_session=core)
    config = Config(
        # Path-style URLs work on every S3-compatible server (MinIO, R2, moto); AWS keeps its default.
        s3={"addressing_style": "path"} if endpoint_url else None,
        # boto3 >= 1.36 adds CRC checksums by default, which some S3-compatible servers reject.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries=_retries(core),
        connect_timeout=S3_CONNECT_TIMEOUT,
        read_timeout=S3_READ_TIMEOUT,
    )
    region = session.region_name or "us-east-1"
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def open_store(location: str | None = None, *, endpoint_url: str | None = None) -> ObjectStore:
    """Open the store at `location` (a folder or `s3://bucket/prefix`), defaulting to `$PRODVID_STORE`."""
    location = location or os.environ.get("PRODVID_STORE") or "./prodvid-data"
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://") :].partition("/")
        endpoint_url = endpoint_url or os.environ.get("PRODVID_S3_ENDPOINT_URL") or None
        return S3Store(bucket, prefix, endpoint_url=endpoint_url)
    return LocalStore(location)
