"""Links a person can open in a browser: the full-size hero image, a contact sheet of the frames, the video.

A store's own `url` is a local path or an `s3://` URL, which a browser cannot open. `media_url` gives an
`http(s)` URL instead:

- an S3 store: a presigned GET URL (SigV4, valid `expires` seconds, at most 7 days as SigV4 allows), made
  locally by boto3 from the credentials it already has; nothing is sent to S3 to make one;
- a local store: `<base_url>/<key>`, where `base_url` is where `prodvid serve` answers for the store
  (`PRODVID_MEDIA_URL`, e.g. `http://127.0.0.1:3001`); without one there is no link.

Only the store's outputs are linked (`OUTPUT_PREFIXES`); the inbox and the sensor's state never are.
"""

from __future__ import annotations

import os
import weakref
from urllib.parse import quote

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from PIL import Image

from prodvid_core import layout
from prodvid_core.encoding import png_bytes
from prodvid_core.errors import ProdvidError
from prodvid_core.render import load_frames
from prodvid_core.storage import INBOX_PREFIX, LocalStore, ObjectStore, S3Store

__all__ = [
    "OUTPUT_PREFIXES",
    "MAX_EXPIRES",
    "DEFAULT_EXPIRES",
    "media_url",
    "base_url_from_env",
    "expires_from_env",
    "inbox_location",
    "save_contact_sheet",
]

OUTPUT_PREFIXES = ("expanded_canvas/", "mask/", "hero_image/", "frames/", "video/")
"""What `prodvid serve` serves and `media_url` links: the pipeline's outputs, never `inbox/` (the team's
uploads) nor `sensors/` (the sensor's state)."""

MAX_EXPIRES = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days
DEFAULT_EXPIRES = MAX_EXPIRES
SHEET_FRAMES = 12  # frames on a contact sheet, evenly spaced, first and last included
SHEET_COLUMNS = 4
SHEET_WIDTH = 1600  # px of the whole sheet: a screen's width, whatever the format


def base_url_from_env() -> str | None:
    """`PRODVID_MEDIA_URL`: where `prodvid serve` answers for the local store; None when unset."""
    return os.environ.get("PRODVID_MEDIA_URL") or None


def expires_from_env() -> int:
    """`PRODVID_MEDIA_URL_EXPIRES`: seconds a presigned S3 link stays valid (default and most: 7 days)."""
    raw = os.environ.get("PRODVID_MEDIA_URL_EXPIRES")
    if not raw:
        return DEFAULT_EXPIRES
    try:
        return check_expires(int(raw))
    except ValueError:
        raise ProdvidError(
            f"PRODVID_MEDIA_URL_EXPIRES must be whole seconds, 1 to {MAX_EXPIRES}, but is {raw!r}."
        ) from None


def check_expires(expires: int) -> int:
    if not 1 <= expires <= MAX_EXPIRES:
        raise ProdvidError(
            f"media URL expiry must be 1 to {MAX_EXPIRES} seconds (7 days, SigV4's limit), but is {expires}."
        )
    return expires


def media_url(
    store: ObjectStore, key: str, *, base_url: str | None = None, expires: int = DEFAULT_EXPIRES
) -> str | None:
    """An `http(s)` URL that opens `key` in a browser, or None where there is none (a local store with no
    `base_url`). `key` must be one of the store's outputs."""
    if not key.startswith(OUTPUT_PREFIXES):
        raise ProdvidError(f"Storage key {key!r} is not an output of prodvid: only outputs get media links.")
    store.url(key)  # checks the key is plain
    if isinstance(store, S3Store):
        return _presigner(store).generate_presigned_url(
            "get_object",
            Params={"Bucket": store.bucket, "Key": store.prefix + key},
            ExpiresIn=check_expires(expires),
        )
    if base_url is None:
        return None
    return f"{base_url.rstrip('/')}/{quote(key)}"


_PRESIGNERS: weakref.WeakKeyDictionary[S3Store, BaseClient] = weakref.WeakKeyDictionary()


def _presigner(store: S3Store) -> BaseClient:
    """A client like the store's, signing with SigV4: botocore presigns S3 URLs with the legacy SigV2 unless
    told otherwise, which newer AWS regions refuse and which cannot say how long a URL lives."""
    if store not in _PRESIGNERS:
        meta = store.client.meta
        _PRESIGNERS[store] = boto3.session.Session().client(
            "s3",
            endpoint_url=store.endpoint_url,
            region_name=meta.region_name,
            config=meta.config.merge(Config(signature_version="s3v4")),
        )
    return _PRESIGNERS[store]


def inbox_location(store: ObjectStore) -> str:
    """Where a person drops photos and briefs: the inbox folder's absolute path, or `s3://bucket/prefix/inbox/`."""
    if isinstance(store, LocalStore):
        return f"{store.root / INBOX_PREFIX.rstrip('/')}/"
    return store.url(f"{INBOX_PREFIX}x")[:-1]


def save_contact_sheet(store: ObjectStore, sku: str, manifest: dict) -> str:
    """Render up to `SHEET_FRAMES` frames, evenly spaced, as one PNG grid at most `SHEET_WIDTH` px wide (each
    frame checked against its sha256 on the way, none enlarged), store it and return its key.

    The frames themselves are not stored one by one (they are windows of the world canvas), so this is what
    a browser shows for "the frames" at a glance.
    """
    count = len(manifest["frames"])
    shown = min(SHEET_FRAMES, count)
    picks = sorted({round(i * (count - 1) / max(shown - 1, 1)) for i in range(shown)})
    width, height = manifest["size"]
    columns = min(SHEET_COLUMNS, len(picks))
    rows = -(-len(picks) // columns)
    cell_w = min(SHEET_WIDTH // columns, width)  # never enlarged
    cell_h = max(1, round(height * cell_w / width))
    sheet = Image.new("RGB", (cell_w * columns, cell_h * rows), "white")
    for n, frame in enumerate(load_frames(store, sku, manifest, indices=picks)):
        thumb = Image.fromarray(frame).resize((cell_w, cell_h), Image.Resampling.LANCZOS)
        sheet.paste(thumb, ((n % columns) * cell_w, (n // columns) * cell_h))
    key = layout.contact_sheet_png(sku)
    store.write_bytes(key, png_bytes(sheet, compress_level=1))  # a preview: fast beats small
    return key
