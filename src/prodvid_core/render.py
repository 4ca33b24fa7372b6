"""Frames rendered from the stored world canvas and manifest, wherever they are needed.

A frame is an integer window of the world, so `frames/<SKU>/world.png` and `manifest.json` are the frames:
the video step, the Dagster checks and previews, and `prodvid frames` render the windows they need, and
every rendered frame is checked against the manifest's `sha256` of its pixels. Per-frame PNGs are a
rendering too, written only on request (`keep_frames`, `export_frames`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from prodvid_core import layout
from prodvid_core.encoding import png_bytes
from prodvid_core.errors import IntegrityError
from prodvid_core.manifest import frame_sha256, read_manifest
from prodvid_core.plan import frame_box
from prodvid_core.storage import ObjectStore
from prodvid_core.world import Checkpoint, World

__all__ = ["render_frame", "load_checkpoint", "load_frames", "store_frame_png", "export_frames"]


def render_frame(world: World, offset: Iterable[int], size: Iterable[int]) -> np.ndarray:
    """A frame's pixels: a copy of its window of the world, uint8 H×W×3."""
    return world.window(frame_box(offset, size))[0].copy()


def load_checkpoint(store: ObjectStore, sku: str) -> Checkpoint:
    """The stored world checkpoint; `IntegrityError` if it is missing or does not read back."""
    key = layout.world_checkpoint(sku)
    try:
        return Checkpoint.from_png(store.read_bytes(key))
    except FileNotFoundError:
        raise IntegrityError(
            f"SKU {sku}: {store.url(key)} is missing, so its frames cannot be rendered; make the frames "
            "again."
        ) from None
    except (OSError, ValueError, KeyError, TypeError, zlib.error) as e:
        raise IntegrityError(
            f"SKU {sku}: {store.url(key)} does not read back ({e}); make the frames again."
        ) from None


def load_frames(
    store: ObjectStore,
    sku: str,
    manifest: dict | None = None,
    *,
    indices: Iterable[int] | None = None,
    verify: bool = True,
) -> Iterator[np.ndarray]:
    """The frames in order (or those of `indices`), as uint8 H×W×3 arrays rendered from the stored world.

    Each frame's pixels are checked against the manifest's `sha256`: a frame that differs (a damaged or
    edited world) raises `IntegrityError` naming the SKU and frame. `verify=False` renders without that
    check, for a check that reports on the pixels themselves (the Dagster checks).

    Example:
        >>> for frame in load_frames(store, "MUG-1"):
        ...     print(frame.shape)
    """
    manifest = manifest or read_manifest(store, sku)
    if manifest is None:
        raise FileNotFoundError(layout.frames_manifest(sku))
    records = manifest["frames"]
    if indices is not None:
        records = [records[k] for k in indices]
    if not records:
        return
    checkpoint = load_checkpoint(store, sku)
    for record in records:
        box = frame_box(record["offset"], manifest["size"])
        if record["call"] > checkpoint.last_call or not checkpoint.world.contains(box):
            raise IntegrityError(
                f"SKU {sku}: frame {record['index']} needs call {record['call']} but the stored world holds "
                f"calls up to {checkpoint.last_call}; make the frames again."
            )
        frame = render_frame(checkpoint.world, record["offset"], manifest["size"])
        if verify and frame_sha256(frame) != record["sha256"]:
            raise IntegrityError(
                f"SKU {sku}: frame {record['index']} rendered from {store.url(layout.world_checkpoint(sku))} "
                f"does not match its sha256 in the manifest (expected {record['sha256'][:12]}…, got "
                f"{frame_sha256(frame)[:12]}…); the world was damaged or edited, make the frames again."
            )
        yield frame


def store_frame_png(store: ObjectStore, sku: str, index: int, frame: np.ndarray) -> str:
    """Write one frame as `frames/<SKU>/<index:05d>.png` (only on request: `keep_frames`); its key."""
    key = layout.frame_png(sku, index)
    store.write_bytes(key, png_bytes(frame))
    return key


def export_frames(store: ObjectStore, sku: str, folder: Path, manifest: dict | None = None) -> list[Path]:
    """Write `sku`'s frames to a local folder as `00000.png …`, rendered from the store and verified."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, frame in enumerate(load_frames(store, sku, manifest)):
        path = folder / f"{k:05d}.png"
        path.write_bytes(png_bytes(frame))
        paths.append(path)
    return paths
