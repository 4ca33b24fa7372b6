"""`frames/<SKU>/manifest.json`: what a video's frames are, so they can be rendered, checked and resumed.

Top level: `version`, `sku`, `fingerprint` (of all frames), `size` [w, h], `fps`, `num_frames`, the model and
painting settings, `keep_frames` (whether `frames/<SKU>/00000.png …` were written too), `calls` and
`frames`. Per call: `index`, `window` [left, top, right, bottom] in world pixels, `frames` it completes,
`seed` and `batch` (the SKUs painted in the same pipeline call). Per frame: `index`, `shift` [dx, dy] from
the previous frame, `offset` [x, y] (frame k's pixel at p + offset shows frame 0's pixel p, so frame k is
the world's window at (-x, -y) of `size`), `call` (the call that completes it, -1 for frames inside the
hero image), `sha256` and `fingerprint`.

`sha256` is the SHA-256 of the frame's raw pixels: the uint8 H×W×3 RGB array's bytes in row-major order
(`frame.tobytes()`), not of any file, so a frame is checked the same whether it is rendered from the world
or read from a PNG.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from prodvid_core import layout
from prodvid_core.storage import ObjectStore

__all__ = ["read_manifest", "write_manifest", "frame_sha256"]


def frame_sha256(frame: np.ndarray) -> str:
    """The manifest's `sha256` of a frame: of its raw RGB bytes (uint8, H×W×3, row-major)."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a frame has to be uint8 H×W×3 but is {frame.dtype} {frame.shape}.")
    return hashlib.sha256(np.ascontiguousarray(frame)).hexdigest()


def read_manifest(store: ObjectStore, sku: str) -> dict | None:
    """The stored manifest, or None if there is none or it does not parse (everything is made again)."""
    try:
        manifest = json.loads(store.read_bytes(layout.frames_manifest(sku)))
    except (FileNotFoundError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(store: ObjectStore, sku: str, manifest: dict) -> None:
    store.write_bytes(layout.frames_manifest(sku), json.dumps(manifest, indent=1).encode())
