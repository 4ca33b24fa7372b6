"""One diffusion inpainting call with the checks every caller needs: seeded, validated, retried.

Both the hero image and the video frames paint through `inpaint`, so seeding and the detection of unusable
output (NaN from an fp16 overflow, the black image of a safety checker, a constant wash) live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from prodvid_core.errors import GenerationError

__all__ = ["Prompt", "step_seed", "inpaint", "is_unusable"]


@dataclass(frozen=True)
class Prompt:
    """What to paint and how hard to follow the text."""

    prompt: str
    negative_prompt: str = ""
    steps: int = 25
    guidance: float = 7.5


def step_seed(seed: int, step: int, attempt: int = 0) -> int:
    """The seed of diffusion step `step` (0 is the hero image, k the call that starts at frame k).

    Derived, not incremented, so a resumed run, a retry and an uninterrupted run agree on every seed.
    """
    state = np.random.SeedSequence([seed, step, attempt]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def is_unusable(pixels: np.ndarray) -> str | None:
    """Why painted pixels (floats in [0, 1]) cannot be used, or None if they can."""
    if pixels.size == 0:
        return None
    if not np.isfinite(pixels).all():
        return "NaN or infinite values"
    if float(pixels.std()) < 1e-3:
        return "a blank, constant image"
    return None


def inpaint(
    pipe,
    image: np.ndarray,
    paint: np.ndarray,
    prompt: Prompt,
    *,
    seed: int,
    step: int,
    sku: str,
    what: str,
    max_retries: int = 2,
) -> tuple[np.ndarray, int]:
    """Paint the `paint` pixels (bool, H×W) of `image` (uint8, H×W×3); return the new image and the attempt.

    Only the painted pixels' validity is checked: the caller keeps only those. On unusable output the call is
    retried with the next seed, `max_retries` times, then a `GenerationError` names the SKU and `what`.
    """
    height, width = paint.shape
    init = Image.fromarray(image)
    mask = Image.fromarray(np.where(paint, 255, 0).astype(np.uint8))
    reason = None
    for attempt in range(max_retries + 1):
        generator = torch.Generator(device="cpu").manual_seed(step_seed(seed, step, attempt))
        out = pipe(
            prompt=prompt.prompt,
            negative_prompt=prompt.negative_prompt or None,
            image=init,
            mask_image=mask,
            height=height,
            width=width,
            num_inference_steps=prompt.steps,
            guidance_scale=prompt.guidance,
            generator=generator,
            output_type="np",
        ).images[0]
        reason = is_unusable(out[paint])
        if reason is None:
            return (out * 255).round().clip(0, 255).astype(np.uint8), attempt
    raise GenerationError(
        f"SKU {sku}: the model produced {reason} for {what} {max_retries + 1} times (seeds of step {step}). "
        "Try another seed in the brief, more steps, or float32 (`--dtype float32`)."
    )
