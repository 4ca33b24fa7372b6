"""A photo given by where it is (a local path or `s3://bucket/key`), read and then put into the inbox.

This is how a SKU is made from Dagster's launchpad without a shell: the run config names the photo, the first
step reads it, the request check (`request.check_sku`) decodes it and finds the product, and only then is it
copied to `inbox/<SKU><suffix>`, beside the photos that land there the usual way. The inbox is never
overwritten: a SKU that already has a photo there keeps it (the same bytes given again are accepted).
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from prodvid_core import layout
from prodvid_core.errors import InvalidInputError, StorageError
from prodvid_core.request import MAX_PHOTO_BYTES, read_file
from prodvid_core.storage import ObjectStore, open_store

__all__ = ["read_photo", "drop_photo"]


def _suffix(source: str, sku: str, what: str) -> str:
    suffix = posixpath.splitext(source)[1].lower()
    if suffix not in layout.PHOTO_SUFFIXES:
        raise InvalidInputError(
            f"SKU {sku}: {what} {source!r} must end in {', '.join(layout.PHOTO_SUFFIXES)}, got "
            f"{suffix or 'no suffix'!r}."
        )
    return suffix


def read_photo(source: str, *, sku: str, what: str, endpoint_url: str | None = None) -> tuple[bytes, str]:
    """The bytes and the suffix of the photo at `source`: `s3://bucket/key` (read with the store's endpoint
    and the usual AWS credentials) or a path on the machine the run runs on. `what` names the setting in
    errors."""
    suffix = _suffix(source, sku, what)
    if source.startswith("s3://"):
        folder, _, name = source.rpartition("/")
        try:
            data = open_store(folder, endpoint_url=endpoint_url).read_bytes(name)
        except FileNotFoundError:
            raise InvalidInputError(f"SKU {sku}: {what} {source} does not exist.") from None
        except StorageError as e:
            raise InvalidInputError(f"SKU {sku}: {what}: {e}") from None
    else:
        data = read_file(Path(source).expanduser(), what, sku, MAX_PHOTO_BYTES)
    if len(data) > MAX_PHOTO_BYTES:
        raise InvalidInputError(f"SKU {sku}: {what} {source} is over {MAX_PHOTO_BYTES} bytes.")
    return data, suffix


def drop_photo(store: ObjectStore, sku: str, data: bytes, suffix: str, *, existing: str | None) -> str:
    """Put the photo into the inbox as `inbox/<SKU><suffix>` and return its key. `existing` is the SKU's photo
    already in the inbox, if any: it is kept when it holds these bytes, and is never replaced."""
    key = layout.inbox_photo(sku, suffix)
    if existing is not None:
        if existing == key and store.read_bytes(existing) == data:
            return existing
        raise InvalidInputError(
            f"SKU {sku}: the inbox already holds another photo, {store.url(existing)}, and prodvid never "
            "replaces an input: leave `photo` unset to use it, or give the new photo another SKU."
        )
    store.write_bytes(key, data)
    return key
