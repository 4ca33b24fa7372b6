"""Each step's result as files a person can open (PNG, MP4, JSON), in the storage layout, and back.

The CLI and the Dagster IO manager both store through these functions, so the layout has one definition.
A file with a JSON sidecar is replaced in three writes: the old sidecar is deleted, the file written, the
new sidecar written. So a sidecar present always describes the file stored, also after a crash between
them while an earlier run's files are replaced.
"""

from __future__ import annotations

import io
import json

from PIL import Image

from prodvid_core import layout
from prodvid_core.canvas import Canvas, Placement
from prodvid_core.encoding import png_bytes, sha256
from prodvid_core.hero import HeroResult
from prodvid_core.storage import ObjectStore
from prodvid_core.video import VideoResult

__all__ = [
    "save_canvas",
    "load_canvas",
    "save_mask",
    "load_mask",
    "save_hero",
    "load_hero",
    "hero_from",
    "save_video",
    "load_video",
    "video_from",
    "read_json",
]


def read_json(store: ObjectStore, key: str) -> dict | None:
    try:
        return json.loads(store.read_bytes(key))
    except FileNotFoundError:
        return None


def _require_json(store: ObjectStore, key: str) -> dict:
    meta = read_json(store, key)
    if meta is None:
        raise FileNotFoundError(key)
    return meta


def _write_json(store: ObjectStore, key: str, data: dict) -> None:
    store.write_bytes(key, json.dumps(data, indent=2, sort_keys=True).encode())


def _write_described(store: ObjectStore, key: str, data: bytes, sidecar: str, meta: dict) -> None:
    """Store `data` under `key` and `meta` (with its sha256) as its sidecar, in the order that keeps a stored
    sidecar true at every moment (module docstring)."""
    store.delete(sidecar)
    store.write_bytes(key, data)
    _write_json(store, sidecar, {**meta, "sha256": sha256(data)})


def _read_png(store: ObjectStore, key: str) -> Image.Image:
    image = Image.open(io.BytesIO(store.read_bytes(key)))
    image.load()
    return image


def save_canvas(store: ObjectStore, sku: str, canvas: Canvas) -> list[str]:
    _write_described(
        store, layout.canvas_png(sku), png_bytes(canvas.image), layout.canvas_json(sku), canvas.metadata()
    )
    return [layout.canvas_png(sku), layout.canvas_json(sku)]


def load_canvas(store: ObjectStore, sku: str) -> Canvas:
    meta = _require_json(store, layout.canvas_json(sku))
    return Canvas(
        image=_read_png(store, layout.canvas_png(sku)),
        placement=Placement.from_json(meta),
        source_sha256=meta["source_sha256"],
    )


def save_mask(store: ObjectStore, sku: str, mask: Image.Image) -> list[str]:
    store.write_bytes(layout.mask_png(sku), png_bytes(mask.convert("L")))
    return [layout.mask_png(sku)]


def load_mask(store: ObjectStore, sku: str) -> Image.Image:
    return _read_png(store, layout.mask_png(sku)).convert("L")


def save_hero(store: ObjectStore, sku: str, hero: HeroResult, *, canvas_sha256: str = "") -> list[str]:
    meta = {**hero.metadata(), "canvas_sha256": canvas_sha256}
    _write_described(store, layout.hero_png(sku), png_bytes(hero.image), layout.hero_json(sku), meta)
    return [layout.hero_png(sku), layout.hero_json(sku)]


def load_hero(store: ObjectStore, sku: str) -> HeroResult:
    meta = _require_json(store, layout.hero_json(sku))
    return hero_from(meta, store.read_bytes(layout.hero_png(sku)), sku=sku)


def hero_from(meta: dict, png: bytes, *, sku: str) -> HeroResult:
    """A `HeroResult` from the stored sidecar and PNG bytes (for callers that checked the bytes first)."""
    fields = {k: meta[k] for k in ("model", "prompt", "negative_prompt", "seed", "steps", "guidance")}
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return HeroResult(
        image=image,
        attempts=meta.get("attempts", 1),
        seconds=meta.get("seconds", 0.0),
        batch=meta.get("batch") or [sku],
        model_size=meta.get("model_size"),
        shapes=meta.get("shapes", ""),
        **fields,
    )


def save_video(store: ObjectStore, sku: str, video: VideoResult, *, frames_sha256: str = "") -> list[str]:
    meta = {**video.metadata(), "frames_sha256": frames_sha256}
    _write_described(store, layout.video_mp4(sku), video.data, layout.video_json(sku), meta)
    return [layout.video_mp4(sku), layout.video_json(sku)]


def load_video(store: ObjectStore, sku: str) -> VideoResult:
    meta = _require_json(store, layout.video_json(sku))
    return video_from(meta, store.read_bytes(layout.video_mp4(sku)))


def video_from(meta: dict, data: bytes) -> VideoResult:
    """A `VideoResult` from the stored sidecar and MP4 bytes (for callers that checked the bytes first)."""
    return VideoResult(
        data=data,
        fps=meta["fps"],
        frame_count=meta["frame_count"],
        size=tuple(meta["size"]),
        codec=meta["codec"],
        pix_fmt=meta["pix_fmt"],
    )
