"""The storage layout (README, "Storage layout"), in one place: every key prodvid reads or writes for a
SKU, and the inbox sensor's state."""

from __future__ import annotations

from prodvid_core.errors import InvalidSkuError, validate_sku

__all__ = [
    "PHOTO_SUFFIXES",
    "inbox_photo",
    "inbox_brief",
    "canvas_png",
    "canvas_json",
    "mask_png",
    "hero_png",
    "hero_json",
    "frames_prefix",
    "frame_png",
    "frames_manifest",
    "world_checkpoint",
    "contact_sheet_png",
    "video_mp4",
    "video_json",
    "INBOX_STATE_PREFIX",
    "inbox_state",
    "sku_of",
]

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
INBOX_STATE_PREFIX = "sensors/inbox_sensor/"


def inbox_photo(sku: str, suffix: str) -> str:
    return f"inbox/{validate_sku(sku)}{suffix}"


def inbox_brief(sku: str) -> str:
    return f"inbox/{validate_sku(sku)}.json"


def canvas_png(sku: str) -> str:
    return f"expanded_canvas/{validate_sku(sku)}.png"


def canvas_json(sku: str) -> str:
    return f"expanded_canvas/{validate_sku(sku)}.json"


def mask_png(sku: str) -> str:
    return f"mask/{validate_sku(sku)}.png"


def hero_png(sku: str) -> str:
    return f"hero_image/{validate_sku(sku)}.png"


def hero_json(sku: str) -> str:
    return f"hero_image/{validate_sku(sku)}.json"


def frames_prefix(sku: str) -> str:
    return f"frames/{validate_sku(sku)}/"


def frame_png(sku: str, index: int) -> str:
    return f"{frames_prefix(sku)}{index:05d}.png"


def frames_manifest(sku: str) -> str:
    return f"{frames_prefix(sku)}manifest.json"


def world_checkpoint(sku: str) -> str:
    """The world canvas after the last finished diffusion call: RGB pixels, alpha 255 where painted."""
    return f"{frames_prefix(sku)}world.png"


def contact_sheet_png(sku: str) -> str:
    """Some of the frames as one grid, for a browser (`media.save_contact_sheet`, from Dagster's `frames`)."""
    return f"{frames_prefix(sku)}contact_sheet.png"


def video_mp4(sku: str) -> str:
    return f"video/{validate_sku(sku)}.mp4"


def video_json(sku: str) -> str:
    return f"video/{validate_sku(sku)}.json"


def inbox_state(name: str) -> str:
    """What the inbox sensor's scans remember (`inbox_state.save`): `name` is `<UTC time>-<sha256>`, and the
    object is never rewritten. Outside `inbox/`, which prodvid never writes to."""
    return f"{INBOX_STATE_PREFIX}{name}.json"


_PER_SKU_FILES = ("inbox", "expanded_canvas", "mask", "hero_image", "video")  # <folder>/<SKU>.<ext>


def sku_of(key: str) -> str | None:
    """The SKU whose object (or listing prefix) `key` is, so a storage error can name it: `frames/<SKU>/...`
    and `<folder>/<SKU>.<ext>`; None for keys of no SKU (the sensor's state) and prefixes of many."""
    folder, _, rest = key.partition("/")
    if folder == "frames":
        sku = rest.partition("/")[0] if "/" in rest else None
    elif folder in _PER_SKU_FILES and "/" not in rest and "." in rest:
        sku = rest.rpartition(".")[0]
    else:
        return None
    return sku if sku and _valid_sku(sku) else None


def _valid_sku(sku: str) -> bool:
    try:
        validate_sku(sku)
    except InvalidSkuError:
        return False
    return True
