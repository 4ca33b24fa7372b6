"""The core promise, checked: product pixels are never altered (README, "The core promise").

The reference is the expanded canvas under the product mask. The hero image must show every product pixel
exactly; frame k shows frame 0's pixel p at p + offset (its manifest `offset`), so its visible product
pixels must equal the reference there, and the ones the camera has moved out of the frame are not checked.
Equality is exact, difference 0, never a tolerance. The Dagster checks and the tests both ask this module,
so the promise is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["ProductDiff", "product_diff"]


@dataclass(frozen=True)
class ProductDiff:
    """How one image shows the product.

    Attributes:
        visible: product pixels inside the image (all of them for the hero image).
        differing: visible product pixels whose colour differs from the reference.
        first: (x, y) in the image of the first differing pixel in row-major order, None if none differs.
    """

    visible: int
    differing: int
    first: tuple[int, int] | None

    @property
    def exact(self) -> bool:
        return self.differing == 0


def _rgb(image: Image.Image | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"`{name}` must be an RGB image (H×W×3) but has shape {array.shape}.")
    return array


def product_diff(
    reference: Image.Image | np.ndarray,
    product_mask: Image.Image | np.ndarray,
    image: Image.Image | np.ndarray,
    *,
    offset: tuple[int, int] = (0, 0),
) -> ProductDiff:
    """Compare the product pixels of `image` with the reference: the canvas `reference` under `product_mask`.

    Args:
        reference: the expanded canvas (a PIL image in any mode, or an H×W×3 array).
        product_mask: 8-bit, >= 128 is product (the `mask` asset is 0/255), the size of `reference`.
        image: the hero image or a frame; PIL or H×W×3 array. Its size may differ from the reference.
        offset: (x, y) where the image shows the canvas's pixel (0, 0): a frame's manifest `offset`.

    Example:
        >>> diff = product_diff(canvas.image, mask, frame, offset=record["offset"])  # doctest: +SKIP
        >>> diff.exact, diff.visible, diff.first
    """
    reference_rgb = _rgb(reference, "reference")
    mask = np.asarray(product_mask.convert("L") if isinstance(product_mask, Image.Image) else product_mask)
    if mask.shape != reference_rgb.shape[:2]:
        raise ValueError(
            f"`product_mask` must be the size of `reference` ({reference_rgb.shape[1]}x"
            f"{reference_rgb.shape[0]}) but has shape {mask.shape}."
        )
    pixels = _rgb(image, "image")
    ys, xs = np.nonzero(mask >= 128)
    y, x = ys + int(offset[1]), xs + int(offset[0])
    h, w = pixels.shape[:2]
    visible = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    bad = np.any(pixels[y[visible], x[visible]] != reference_rgb[ys[visible], xs[visible]], axis=-1)
    first = None
    if bad.any():
        i = int(np.argmax(bad))
        first = (int(x[visible][i]), int(y[visible][i]))
    return ProductDiff(visible=int(visible.sum()), differing=int(bad.sum()), first=first)
