"""The world canvas a video's frames are windows of, and its checkpoint: one PNG after each diffusion call.

A pixel is painted once and never repainted, so the world after the last call holds every frame: frame k
is the integer window `plan.frame_box(k)` of it. The checkpoint keeps, besides the pixels, which step
painted each pixel; that lets one stored world give back the world after any earlier call, which is what a
changed camera path that shares only the first calls resumes from.
"""

from __future__ import annotations

import base64
import io
import json
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from prodvid_core.encoding import png_bytes
from prodvid_core.plan import Box

__all__ = ["World", "Checkpoint"]


class World:
    """The world canvas: its pixels, and the owner of each, the step that painted it (-1 none, 0 the hero
    image, c + 1 call c)."""

    def __init__(self, bounds: Box):
        self.bounds = tuple(bounds)
        w, h = bounds[2] - bounds[0], bounds[3] - bounds[1]
        self.pixels = np.zeros((h, w, 3), dtype=np.uint8)
        self.owner = np.full((h, w), -1, dtype=np.int16)

    def _slice(self, box: Box) -> tuple[slice, slice]:
        x0, y0 = self.bounds[0], self.bounds[1]
        return slice(box[1] - y0, box[3] - y0), slice(box[0] - x0, box[2] - x0)

    def copy(self) -> World:
        """A snapshot: what a background writer encodes while the caller paints on (`background.Writer`)."""
        world = World.__new__(World)
        world.bounds, world.pixels, world.owner = self.bounds, self.pixels.copy(), self.owner.copy()
        return world

    def contains(self, box: Box) -> bool:
        x0, y0, x1, y1 = self.bounds
        return x0 <= box[0] and y0 <= box[1] and box[2] <= x1 and box[3] <= y1

    def window(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """The pixels of `box` (a view: it changes as the world is painted) and which of them are painted."""
        s = self._slice(box)
        return self.pixels[s], self.owner[s] >= 0

    def paint(self, box: Box, pixels: np.ndarray, new: np.ndarray, *, owner: int) -> None:
        """Keep only the newly painted pixels: already-painted ones are never replaced."""
        s = self._slice(box)
        self.pixels[s][new] = pixels[new]
        self.owner[s][new] = owner

    def rewind(self, call: int) -> None:
        """Forget what the calls after `call` painted."""
        later = self.owner > call + 1
        self.pixels[later], self.owner[later] = 0, -1

    def moved_to(self, bounds: Box) -> World:
        """The same world in `bounds` (a changed path may have moved the world's edges)."""
        world = World(bounds)
        (x0, y0, x1, y1), (u0, v0, u1, v1) = bounds, self.bounds
        common = (max(x0, u0), max(y0, v0), min(x1, u1), min(y1, v1))
        if common[0] >= common[2] or common[1] >= common[3]:
            raise ValueError("checkpoint lies outside the world")
        src, dst = self._slice(common), world._slice(common)
        world.pixels[dst], world.owner[dst] = self.pixels[src], self.owner[src]
        if (world.owner >= 0).sum() != (self.owner >= 0).sum():
            raise ValueError("checkpoint has painted pixels outside the world")
        return world


@dataclass
class Checkpoint:
    """The world after call `last_call` (-1: only the hero image), stored as one atomic PNG object.

    RGB = the pixels, alpha = painted; text chunks: the world's bounds, each pixel's owner (zlib), the
    records of the calls made (window, seed, batch) and the fingerprint of the world after the hero image
    and after each call, which is what a re-run compares its own plan with.
    """

    world: World
    worlds: list[str]  # [c + 1]: fingerprint of the world after call c ([0]: after the hero image)
    calls: list[dict]  # [c]: call c's manifest record

    @property
    def last_call(self) -> int:
        return len(self.worlds) - 2

    def to_png(self) -> bytes:
        w = self.world
        rgba = np.dstack([w.pixels, np.where(w.owner >= 0, 255, 0).astype(np.uint8)])
        owners = base64.b64encode(zlib.compress(w.owner.astype("<i2").tobytes(), 9)).decode()
        text = {
            "call": str(self.last_call),
            "worlds": json.dumps(self.worlds),
            "calls": json.dumps(self.calls),
            "bounds": json.dumps(list(w.bounds)),
            "owners": owners,
        }
        # Level 1: the checkpoint is rewritten after every call and read back only by a re-run; at level 6
        # zlib took most of a story-format video's time on the CPU.
        return png_bytes(rgba, text, compress_level=1)

    @classmethod
    def from_png(cls, data: bytes) -> Checkpoint:
        """Raises ValueError (or OSError, KeyError, zlib.error) for a checkpoint that does not read back."""
        image = Image.open(io.BytesIO(data))
        image.load()
        text = dict(image.text)
        world = World(tuple(json.loads(text["bounds"])))
        rgba = np.asarray(image.convert("RGBA"))
        owner = np.frombuffer(zlib.decompress(base64.b64decode(text["owners"])), dtype="<i2")
        if rgba.shape[:2] != world.owner.shape or owner.size != world.owner.size:
            raise ValueError("checkpoint size does not match its bounds")
        world.pixels[:], world.owner[:] = rgba[..., :3], owner.reshape(world.owner.shape)
        if not np.array_equal(rgba[..., 3] == 255, world.owner >= 0):
            raise ValueError("checkpoint alpha does not match its owners")
        worlds, calls = json.loads(text["worlds"]), json.loads(text["calls"])
        if not worlds or int(text["call"]) != len(worlds) - 2 or len(calls) != len(worlds) - 1:
            raise ValueError("checkpoint call count does not match its records")
        return cls(world, worlds, calls)
