"""The request check: everything a run needs, validated before anything is written or any model loaded.

A request is SKU ids, photos, briefs (their camera paths at each SKU's format) and the run's settings
(models, scheduler, device) plus where to store. `check_sku` and `check_settings` raise a `ProdvidError`
naming the SKU, the field, what was expected and what was given; a rejected request changes nothing
stored. This module imports no heavy library: the CLI runs it before it imports torch or diffusers, so a
mistake is answered in a fraction of a second. Only the device check needs torch, so it comes last.

What is allowed but likely a mistake (an animated photo, a product a few pixels high, a prompt longer than
the text encoder reads) comes back as warnings, for the caller to show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from prodvid_core import camera, canvas, leases, mask, models, plan
from prodvid_core.brief import Brief, prompt_warnings
from prodvid_core.canvas import Canvas
from prodvid_core.errors import InvalidInputError, StorageError, validate_sku
from prodvid_core.formats import Framing
from prodvid_core.settings import Settings, framing

__all__ = [
    "Checked",
    "MAX_PHOTO_BYTES",
    "check_sku",
    "check_settings",
    "check_store",
    "make_canvas",
    "read_file",
]


# The presets' native sides; a real checkpoint's is known only once loaded, so 512 (SD's, the smallest of the
# real ones) stands in for it: the plan's size is checked for the largest it can be.
_NATIVE = {models.TINY_PRESET: 256, models.TINY_XL_PRESET: 512, models.SDXL_INPAINT_MODEL: 1024}


@dataclass
class Checked:
    """A SKU whose request passed: its canvas and mask (the photo decoded, the product found), its camera
    path at its format, and the warnings to show."""

    sku: str
    canvas: Canvas
    mask: Image.Image
    path: camera.CameraPath
    framing: Framing
    warnings: list[str] = field(default_factory=list)


MAX_PHOTO_BYTES = 256 * 1024 * 1024  # read no further: a photo within canvas.MAX_PIXELS is far smaller


def read_file(path: Path, what: str, sku: str, limit: int) -> bytes:
    """A file the user named (`what`: the flag or setting), read no further than `limit` bytes, so a device
    or a huge file is refused instead of filling memory."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InvalidInputError(f"SKU {sku}: cannot read {what} {path}: {e.strerror or e}.") from None
    if len(data) > limit:
        raise InvalidInputError(f"SKU {sku}: {what} {path} is over {limit} bytes; at most {limit} are read.")
    return data


def make_canvas(photo: bytes, *, sku: str, brief: Brief, settings: Settings) -> tuple[Canvas, Image.Image]:
    """The canvas of the SKU's format with its product placed as `framing` says, and its product mask."""
    placed = framing(brief, settings)
    expanded = canvas.expand(
        photo, sku=sku, size=placed.size, fill=placed.fill, margin=placed.margin, anchor=placed.anchor
    )
    return expanded, mask.segment(expanded.image, sku=sku)


def check_sku(sku: str, photo: bytes, brief: Brief, settings: Settings) -> Checked:
    """Check one SKU's part of a request: its id, its camera path at its format (bounded: `camera`), its
    photo (decoded in full, a product found on white). Costs a canvas, no model."""
    validate_sku(sku)
    placed = framing(brief, settings)
    path = brief.camera_path(sku, placed.size)
    native = settings.model_size or _NATIVE.get(settings.frames_model, 512)
    plan.check_extent(
        path,
        placed.size,
        native=native,
        lookahead=settings.lookahead,
        max_window=settings.max_window,
        sku=sku,
    )
    expanded, product = make_canvas(photo, sku=sku, brief=brief, settings=settings)
    notes = prompt_warnings(brief, sku=sku) + canvas.photo_warnings(photo, expanded, sku=sku)
    return Checked(sku, expanded, product, path, placed, notes)


def check_settings(settings: Settings) -> list[str]:
    """Check what `Settings` cannot know alone: that each model and LoRA is there (`models.check_available`,
    `models.check_lora_available`: a folder with model_index.json or a .safetensors file, a Hub id in the
    local cache or known to the Hub), then that the device exists. The device check imports torch, so it
    runs last and only for an explicit CUDA device (or `offload`, to tell whether there is one).

    Returns warnings: `offload` on the CPU does nothing (the weights are in CPU memory already)."""
    leases.check_env()
    for model in dict.fromkeys((settings.hero_model, settings.frames_model)):
        models.check_available(model)
    for lora in settings.lora:
        models.check_lora_available(lora)
    if settings.device not in ("auto", "cpu"):
        models.resolve_device(settings.device)
    if settings.offload and not models.resolve_device(settings.device).startswith("cuda"):
        return [
            "`offload` does nothing on the CPU, where the weights are already; it is for GPUs under 10 GB."
        ]
    return []


def check_store(location: str | None) -> None:
    """Refuse a local store location that names a file (or lies under one), before anything is made.

    S3 locations are checked when the store is opened (`storage.S3Store`)."""
    location = location or os.environ.get("PRODVID_STORE") or "./prodvid-data"
    if location.startswith("s3://"):
        return
    path = Path(location).expanduser()
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == path else f"lies under {str(folder)!r}, a file"
                raise StorageError(
                    f"store {location!r} {what}, not a folder: give a folder (made if missing) or "
                    "s3://bucket/prefix (--store, PRODVID_STORE)."
                )
            return
