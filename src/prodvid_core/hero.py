"""The hero image: the scene painted around the product, the product itself pasted back untouched.

The model may reach a few pixels into the product's edge so it can blend the contact line (shadow, floor),
but whatever it does there is overwritten: every product pixel of the hero image equals the expanded canvas
exactly. That is the product's promise and the tests check it with difference 0.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from prodvid_core.inpaint import OnStep, PaintRequest, Prompt, batches, bucket_of, inpaint_batch
from prodvid_core.resample import SHAPES

__all__ = ["HeroRequest", "HeroResult", "generate", "generate_batch", "paint_mask", "paste_product"]


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
    batch: list[str] = field(default_factory=list)  # the SKUs painted in the same call, this one included
    model_size: int | None = None  # the side the model painted at when overridden; None: its native one
    shapes: str = SHAPES  # how the call's working size was chosen (resample.SHAPES): it decides pixels

    def metadata(self) -> dict:
        """The sidecar's fields: how the image was made, not how long it took. The wall-clock `seconds`
        would make a re-run after a crash store other bytes than an uninterrupted run (they are reported
        in the run's log and Dagster metadata instead)."""
        meta = asdict(self)
        meta.pop("image")
        meta.pop("seconds")
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


@dataclass(frozen=True, eq=False)
class HeroRequest:
    """One SKU's hero image to paint: its canvas, product mask (255 = product) and scene."""

    sku: str
    canvas: Image.Image
    mask: Image.Image
    prompt: str
    negative_prompt: str = ""
    seed: int = 0


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
    native: int | None = None,
) -> HeroResult:
    """Paint the scene described by `prompt` around the product of `canvas` (where `mask` is 255).

    Example:
        >>> pipe = models.load_inpaint_pipeline("tiny")
        >>> result = hero.generate(pipe, canvas.image, product_mask, sku="MUG-1", prompt="on a beach")
        >>> result.image.save("hero.png")
    """
    request = HeroRequest(sku, canvas, mask, prompt, negative_prompt, seed)
    return generate_batch(
        pipe, [request], steps=steps, guidance=guidance, model=model, blend_px=blend_px, native=native
    )[0]


def generate_batch(
    pipe,
    requests: list[HeroRequest],
    *,
    steps: int = 25,
    guidance: float = 7.5,
    model: str = "",
    blend_px: int = 4,
    batch_size: int = 1,
    native: int | None = None,
    on_step: OnStep | None = None,
) -> list[HeroResult]:
    """The hero images of many SKUs, painted `batch_size` at a time in one pipeline call each.

    Batching makes a GPU paint several SKUs for little more than the time of one. Every product pixel is
    pasted back exactly whatever the batch; the painted background may differ in its last bits from an
    unbatched run (see `inpaint.inpaint_batch`), and `HeroResult.batch` records who shared the call. The
    model paints each canvas at its working size (`native`², default the checkpoint's own); the product is
    pasted back from the output-size canvas, never resampled. `on_step` hears of each denoising step.
    """
    # 1. Check inputs, every SKU before any compute
    if batch_size < 1:
        raise ValueError(f"`batch_size` has to be 1 or more but is {batch_size}.")
    products, paints = [], []
    for r in requests:
        if r.canvas.size != r.mask.size:
            raise ValueError(
                f"`canvas` and `mask` have to be the same size but are {r.canvas.size} and {r.mask.size} "
                f"(SKU {r.sku})."
            )
        products.append(np.asarray(r.mask.convert("L")) >= 128)
        paints.append(paint_mask(products[-1], blend_px))

    # 2. Paint the backgrounds and a thin rim of each product's edge, a batch of one working size (bucket)
    #    at a time: canvases of different formats that fall in one bucket share a call
    results: list[HeroResult | None] = [None] * len(requests)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(bucket_of(pipe, r.canvas.size, native), []).append(i)
    for batch in (b for group in groups.values() for b in batches(group, batch_size)):
        start = time.perf_counter()
        painted = inpaint_batch(
            pipe,
            [_paint_request(requests[i], paints[i], steps, guidance) for i in batch],
            native=native,
            on_step=on_step,
        )
        seconds = round(time.perf_counter() - start, 3)

        # 3. Paste each product back, pixel for pixel
        for i, (pixels, attempt) in zip(batch, painted, strict=True):
            r = requests[i]
            image = paste_product(pixels, np.asarray(r.canvas.convert("RGB")), products[i])
            results[i] = HeroResult(
                image=Image.fromarray(image), model=model, prompt=r.prompt, negative_prompt=r.negative_prompt,
                seed=r.seed, steps=steps, guidance=guidance, attempts=attempt + 1, seconds=seconds,
                batch=[requests[j].sku for j in batch], model_size=native,
            )  # fmt: skip
    return results


def _paint_request(request: HeroRequest, paint: np.ndarray, steps: int, guidance: float) -> PaintRequest:
    return PaintRequest(
        np.asarray(request.canvas.convert("RGB")), paint,
        Prompt(request.prompt, request.negative_prompt, steps, guidance),
        seed=request.seed, step=0, sku=request.sku, what="the hero image",
    )  # fmt: skip
