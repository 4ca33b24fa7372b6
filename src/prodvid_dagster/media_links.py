"""Links on the materializations that open the result in a browser: the full-size hero image, the frames'
contact sheet, the video.

The URLs come from the core (`prodvid_core.media.media_url`): a presigned URL for an S3 store, or the
address of `prodvid serve` for a local store (`StoreResource.media_url`, else `$PRODVID_MEDIA_URL`; `make ui`
sets it). Without one a local store's entry says how to get links instead of giving a path that only opens
on the machine running the step.
"""

from __future__ import annotations

import dagster as dg

from prodvid_core import media
from prodvid_core.errors import ProdvidError
from prodvid_dagster.resources import StoreResource

__all__ = ["open_links", "NO_SERVER"]

NO_SERVER = (
    "no media server: start the UI with `make ui`, or run `prodvid serve` and set PRODVID_MEDIA_URL to its "
    "address (e.g. http://127.0.0.1:3001)"
)


def open_links(store: StoreResource, labelled: dict[str, str]) -> dict[str, dg.MetadataValue]:
    """`{label: url}` metadata for the store keys in `labelled` (`{"full size": "hero_image/MUG-1.png"}`)."""
    try:
        expires = store.media_url_expires or media.expires_from_env()
        base_url = store.media_url or media.base_url_from_env()
        urls = {
            label: media.media_url(store.open(), key, base_url=base_url, expires=expires)
            for label, key in labelled.items()
        }
    except ProdvidError as e:
        raise dg.Failure(description=str(e), allow_retries=False) from None
    return {
        label: dg.MetadataValue.url(url) if url else dg.MetadataValue.text(NO_SERVER)
        for label, url in urls.items()
    }
