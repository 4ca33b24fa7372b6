"""Two resolutions: windows of the output canvas are painted at the model's working size.

Diffusion models paint well only near the pixel area they were trained at (512² for SD 1.5/2 inpainting,
1024² for SDXL inpainting); catalog formats are 1080 px and more. So every diffusion call takes its window
of the canvas (output pixels), resamples it to the same aspect at about the model's native area, paints it,
and resamples the result back; the caller keeps only the pixels it asked for. The GPU cost of a call then
depends on the model, never on the output size, and the product, which is only ever read from the
output-size canvas, is never resampled.

Example:
    >>> working_size((1080, 1920), native=512)
    (384, 680)
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

__all__ = ["LATENT_GRID", "working_size", "to_model", "paint_to_model", "to_output"]

LATENT_GRID = 8  # a latent cell of every SD-class VAE: working sides are multiples of it


def working_size(window: tuple[int, int], *, native: int) -> tuple[int, int]:
    """The model's size for a `window` (width, height): its aspect at about `native`², never above it.

    Sides are multiples of the latent grid and at least one cell; of the sizes near the window's aspect,
    the largest whose area does not exceed `native`² is taken.
    """
    width, height = window
    if width < 1 or height < 1 or native < LATENT_GRID:
        raise ValueError(f"`window` and `native` have to be positive but are {window} and {native}.")
    scale = native / math.sqrt(width * height)
    cells_w = max(1, round(width * scale / LATENT_GRID))
    cells_h = max(1, round(height * scale / LATENT_GRID))
    limit = native * native / LATENT_GRID**2
    while cells_w * cells_h > limit:  # rounding up both sides may overshoot the area: shrink the longer
        if cells_w * height >= cells_h * width:
            cells_w -= 1
        else:
            cells_h -= 1
    return cells_w * LATENT_GRID, cells_h * LATENT_GRID


def to_model(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A window (uint8 H×W×3) at the model's `size` (width, height); Lanczos, antialiased when reducing."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def paint_to_model(paint: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The paint mask (bool H×W) at the model's `size`: a model pixel is painted if any pixel it covers is.

    Rounding towards painting, never away: every output pixel to be painted lies under painted model
    pixels, so none of them is filled from the resampled old pixels.
    """
    if (paint.shape[1], paint.shape[0]) == size:
        return paint
    coverage = Image.fromarray(paint.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)
    return np.asarray(coverage) > 0


def to_output(painted: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The model's painting (uint8 h×w×3) back at the window's `size` (width, height), with Lanczos."""
    if (painted.shape[1], painted.shape[0]) == size:
        return painted
    return np.asarray(Image.fromarray(painted).resize(size, Image.Resampling.LANCZOS))
