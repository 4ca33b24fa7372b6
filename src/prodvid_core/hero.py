"""The hero image: the scene painted around the product, the product itself pasted back untouched.

The model may reach a few pixels into the product's edge so it can blend the contact line (shadow, floor),
but whatever it does there is overwritten: every product pixel of the hero image equals the expanded canvas
exactly. That is the product's promise and the tests check it with difference 0.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter

from prodvid_core.inpaint import Prompt, inpaint

__all__ = ["HeroResult", "generate", "paint_mask", "paste_product"]


@dataclass
class HeroResult:
    """The hero image and how it was made (the JSON sidecar)."""

    image: Image.Image
    model: str
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    attempts: int
    seconds: float

    def metadata(self) -> dict:
        meta = asdict(self)
        meta.pop("image")
        meta["size"] = list(self.image.size)
        return meta


def paint_mask(product: np.ndarray, blend_px: int = 4) -> np.ndarray:
    """Where the model paints: the background, grown `blend_px` into the product's edge."""
    background = Image.fromarray(np.where(product, 0, 255).astype(np.uint8))
    if blend_px > 0:
        background = background.filter(ImageFilter.MaxFilter(2 * blend_px + 1))
    return np.asarray(background) > 0


def paste_product(painted: np.ndarray, reference: np.ndarray, product: np.ndarray) -> np.ndarray:
    """Every product pixel back from the reference, exactly; every other pixel from the painting."""
    return np.where(product[..., None], reference, painted)


def generate(
    pipe,
    canvas: Image.Image,
    mask: Image.Image,
    *,
    sku: str,
    prompt: str,
    negative_prompt: str = "",
    seed: int = 0,
    steps: int = 25,
    guidance: float = 7.5,
    model: str = "",
    blend_px: int = 4,
) -> HeroResult:
    """Paint the scene described by `prompt` around the product of `canvas` (where `mask` is 255).

    Example:
        >>> pipe = models.load_inpaint_pipeline("tiny")
        >>> result = hero.generate(pipe, canvas.image, product_mask, sku="MUG-1", prompt="on a beach")
        >>> result.image.save("hero.png")
    """
    # 1. Check inputs
    if canvas.size != mask.size:
        raise ValueError(
            f"`canvas` and `mask` have to be the same size but are {canvas.size} and {mask.size}."
        )
    reference = np.asarray(canvas.convert("RGB"))
    product = np.asarray(mask.convert("L")) >= 128

    # 2. Paint the background and a thin rim of the product's edge
    start = time.perf_counter()
    spec = Prompt(prompt=prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance)
    paint = paint_mask(product, blend_px)
    painted, attempt = inpaint(
        pipe, reference, paint, spec, seed=seed, step=0, sku=sku, what="the hero image"
    )

    # 3. Paste the product back, pixel for pixel
    image = Image.fromarray(paste_product(painted, reference, product))
    return HeroResult(
        image=image,
        model=model,
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        steps=steps,
        guidance=guidance,
        attempts=attempt + 1,
        seconds=round(time.perf_counter() - start, 3),
    )
