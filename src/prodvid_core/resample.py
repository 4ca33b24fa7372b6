"""Two resolutions: windows of the output canvas are painted at one of a few fixed working sizes.

Diffusion models paint well only near the pixel area they were trained at (512² for SD 1.5/2 inpainting,
1024² for SDXL inpainting); catalog formats are 1080 px and more. So every diffusion call takes its window
of the canvas (output pixels), resamples it at about the model's native area, paints it, and resamples the
result back; the caller keeps only the pixels it asked for. The GPU cost of a call then depends on the
model, never on the output size, and the product, which is only ever read from the output-size canvas, is
never resampled.

Fixed shapes: a call is not painted at its window's own aspect but in one of a few **buckets** per model,
the sizes near the native area whose sides are multiples of `grid` (the VAE's scale factor × 8, 64 for
every SD-class model, so the UNet's three down-samplings divide the latent exactly) with aspects from 1:4
to 4:1: 9 buckets at 512² (256x1024 … 512x512 … 1024x256), 17 at 1024². The window is resampled with its
own aspect (never stretched) to the largest size that fits its bucket, centred, and the border left over
is part of the area the model paints (its pixels are thrown away). A compiled UNet and VAE then see only
these shapes, and calls of different SKUs, formats and windows that fall in one bucket share one batch.

Example:
    >>> working_size((1080, 1920), native=512)
    (384, 640)
    >>> working((1080, 1920), native=512).box  # the window's pixels inside the bucket
    (12, 0, 372, 640)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "LATENT_GRID",
    "BUCKET_GRID",
    "MAX_ASPECT",
    "SHAPES",
    "Working",
    "buckets",
    "working",
    "working_size",
    "to_model",
    "paint_to_model",
    "to_output",
]

LATENT_GRID = 8  # a latent cell of every SD-class VAE
BUCKET_GRID = 64  # the VAE's scale factor (8) × 8: bucket sides are multiples of it
MAX_ASPECT = 4.0  # buckets run from 1:4 to 4:1; a longer window is fitted into the last one
SHAPES = f"buckets-{BUCKET_GRID}"  # how calls are sized, recorded with what it decides (hero, fingerprints)


@dataclass(frozen=True)
class Working:
    """Where a window is painted: the bucket (`size`, width × height) and the window's box inside it."""

    size: tuple[int, int]
    box: tuple[int, int, int, int]  # left, top, right, bottom (exclusive), model pixels

    @property
    def inner(self) -> tuple[int, int]:
        return self.box[2] - self.box[0], self.box[3] - self.box[1]


@functools.cache
def buckets(native: int, grid: int = BUCKET_GRID) -> tuple[tuple[int, int], ...]:
    """The working sizes of a model of native side `native`: for each aspect from 1:4 to 4:1, the largest
    sizes whose sides are multiples of `grid` and whose area is at most `native`² (neither side can grow
    without leaving the area), widest last."""
    if native < grid:
        return ((grid, grid),)
    area, out = native * native, []
    for width in range(grid, area // grid + 1, grid):
        height = area // width // grid * grid
        if height < grid or area // height // grid * grid != width:
            continue  # another bucket has this height and a larger width
        if max(width / height, height / width) <= MAX_ASPECT:
            out.append((width, height))
    return tuple(out)


def working(window: tuple[int, int], *, native: int, grid: int = BUCKET_GRID) -> Working:
    """The bucket a `window` (width, height) is painted in and its box there: of `buckets(native)`, the one
    that holds the window at the largest uniform scale (the least padding on a tie)."""
    width, height = window
    if width < 1 or height < 1 or native < LATENT_GRID:
        raise ValueError(f"`window` and `native` have to be positive but are {window} and {native}.")

    def fitted(bucket: tuple[int, int]) -> tuple[int, int]:
        scale = min(bucket[0] / width, bucket[1] / height)
        return min(bucket[0], max(1, round(width * scale))), min(bucket[1], max(1, round(height * scale)))

    best = max(buckets(native, grid), key=lambda b: (fitted(b)[0] * fitted(b)[1], -b[0] * b[1]))
    inner_w, inner_h = fitted(best)
    left, top = (best[0] - inner_w) // 2, (best[1] - inner_h) // 2
    return Working(best, (left, top, left + inner_w, top + inner_h))


def working_size(window: tuple[int, int], *, native: int, grid: int = BUCKET_GRID) -> tuple[int, int]:
    """The size (width, height) the model paints a `window` at: its bucket."""
    return working(window, native=native, grid=grid).size


def to_model(image: np.ndarray, at: Working) -> np.ndarray:
    """A window (uint8 H×W×3) in its bucket: Lanczos to the box (antialiased when reducing), the border
    around it filled with the box's edge pixels (painted over by the model, see `paint_to_model`)."""
    inner = at.inner
    if (image.shape[1], image.shape[0]) != inner:
        image = np.asarray(Image.fromarray(image).resize(inner, Image.Resampling.LANCZOS))
    return _pad(image, at, mode="edge")


def paint_to_model(paint: np.ndarray, at: Working) -> np.ndarray:
    """The paint mask (bool H×W) in its bucket: a model pixel of the box is painted if any pixel it covers
    is; the border around the box is painted too.

    Rounding towards painting, never away: every output pixel to be painted lies under painted model
    pixels, so none of them is filled from the resampled old pixels.
    """
    inner = at.inner
    if (paint.shape[1], paint.shape[0]) != inner:
        coverage = Image.fromarray(paint.astype(np.uint8) * 255).resize(inner, Image.Resampling.BOX)
        paint = np.asarray(coverage) > 0
    return _pad(paint, at, mode="constant", constant_values=True)


def to_output(painted: np.ndarray, at: Working, window: tuple[int, int]) -> np.ndarray:
    """The model's painting (uint8, the bucket's size) of the box, back at the `window`'s size (width,
    height), with Lanczos."""
    left, top, right, bottom = at.box
    if at.inner != at.size:
        painted = painted[top:bottom, left:right]
    if (painted.shape[1], painted.shape[0]) == tuple(window):
        return painted
    return np.asarray(Image.fromarray(painted).resize(window, Image.Resampling.LANCZOS))


def _pad(array: np.ndarray, at: Working, **how) -> np.ndarray:
    left, top, right, bottom = at.box
    pad = [(top, at.size[1] - bottom), (left, at.size[0] - right)] + [(0, 0)] * (array.ndim - 2)
    return array if not any(any(p) for p in pad) else np.pad(array, pad, **how)
