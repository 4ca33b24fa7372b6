"""One diffusion inpainting call with the checks every caller needs: seeded, resampled, validated, retried.

Both the hero image and the video frames paint through `inpaint`, so seeding, the two resolutions (a window
of the output canvas painted at the model's working size, `resample`) and the detection of unusable output
(NaN from an fp16 overflow, the black image of a safety checker, a constant wash) live in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from prodvid_core import models, resample
from prodvid_core.background import CallClock
from prodvid_core.errors import GenerationError

__all__ = [
    "Prompt", "PaintRequest", "OnStep", "step_seed", "inpaint", "inpaint_batch", "batches", "is_unusable",
    "bucket_of", "bucket_grid",
]  # fmt: skip

# Called after each denoising step of a call: the SKUs the call paints, the steps done, the call's steps.
OnStep = Callable[[list[str], int, int], None]


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


@dataclass(frozen=True, eq=False)
class PaintRequest:
    """One image to paint: the pixels, where to paint (bool H×W), what, with which seed, and for whom.

    `sku` and `what` only name the request in errors ("SKU MUG-1: ... for frame 12").
    """

    image: np.ndarray
    paint: np.ndarray
    prompt: Prompt
    seed: int
    step: int
    sku: str
    what: str


def inpaint_batch(
    pipe,
    requests: Sequence[PaintRequest],
    *,
    max_retries: int = 2,
    native: int | None = None,
    on_step: OnStep | None = None,
    clock: CallClock | None = None,
) -> list[tuple[np.ndarray, int]]:
    """Paint `requests` in one pipeline call; return each new image (uint8) and the attempt that made it.

    The requests' images are windows of the output canvas; the model paints them in their bucket (one of a
    few fixed working sizes at about `native`², default the checkpoint's own, `models.native_size`: see
    `resample`) and the result comes back at the window's size. Only the pixels a request asked for are
    worth keeping: the others went through the resampling and the VAE.

    Requests may come from different SKUs with different prompts and window sizes; they must share the
    bucket (`bucket_of`), the steps and the guidance, which are arguments of the whole call. Each request
    gets its own generator, seeded from its own `(seed, step, attempt)`, so its starting noise does not
    depend on its companions. Its painted pixels still may differ in the last bits from a call of its own:
    the kernels sum in another order at another batch size (README, "Many SKUs at once"). Only the painted
    pixels are checked; an unusable request is painted again with the next seed, together with the others
    that failed, up to `max_retries` times, and then a `GenerationError` names its SKU and `what`. `on_step`
    hears of every denoising step (a progress bar), retries included. `clock` adds up the seconds spent inside
    pipeline calls (`background.CallClock`).
    """
    # 1. Check inputs: one bucket (working size), steps and guidance for the whole call
    if not requests:
        return []
    first, native = requests[0], native or models.native_size(pipe)
    grid = bucket_grid(pipe)
    places = [resample.working(window_of(r), native=native, grid=grid) for r in requests]
    for request, place in zip(requests, places, strict=True):
        if request.image.shape[:2] != request.paint.shape or place.size != places[0].size:
            raise ValueError(
                f"requests of one call have to share one working size but {first.sku} ({first.what}) is "
                f"painted at {places[0].size} and {request.sku} ({request.what}) at {place.size} "
                f"(image {request.image.shape[:2]}, mask {request.paint.shape})."
            )
        if (request.prompt.steps, request.prompt.guidance) != (first.prompt.steps, first.prompt.guidance):
            raise ValueError(f"requests of one call have to share steps and guidance (SKU {request.sku}).")

    # 2. Resample every window into the bucket, its aspect kept (resample.working)
    images = [resample.to_model(r.image, at) for r, at in zip(requests, places, strict=True)]
    paints = [resample.paint_to_model(r.paint, at) for r, at in zip(requests, places, strict=True)]

    # 3. Paint; paint the unusable ones again with their next seeds; resample the usable ones back
    results: list[tuple[np.ndarray, int] | None] = [None] * len(requests)
    pending, reasons = list(range(len(requests))), {}
    for attempt in range(max_retries + 1):
        with clock.calling() if clock is not None else contextlib.nullcontext():
            outs = _call(pipe, [requests[i] for i in pending], [images[i] for i in pending],
                         [paints[i] for i in pending], attempt, on_step)  # fmt: skip
        failed = []
        for i, out in zip(pending, outs, strict=True):
            left, top, right, bottom = places[i].box  # the window's own pixels, not the border around
            reasons[i] = is_unusable(out[top:bottom, left:right][paints[i][top:bottom, left:right]])
            if reasons[i] is None:
                painted = (out * 255).round().clip(0, 255).astype(np.uint8)
                results[i] = resample.to_output(painted, places[i], window_of(requests[i])), attempt
            else:
                failed.append(i)
        pending = failed
        if not pending:
            return results
    request = requests[pending[0]]
    raise GenerationError(
        f"SKU {request.sku}: the model produced {reasons[pending[0]]} for {request.what} "
        f"{max_retries + 1} times (seeds of step {request.step}). "
        "Try another seed in the brief, more steps, or float32 (`--dtype float32`)."
    )


def window_of(request: PaintRequest) -> tuple[int, int]:
    """The (width, height) of a request's window, output pixels."""
    return request.paint.shape[1], request.paint.shape[0]


def bucket_grid(pipe) -> int:
    """The multiple a working side of `pipe` is: its VAE's scale factor × 8 (64 for SD-class models)."""
    return int(getattr(pipe, "vae_scale_factor", 8)) * resample.LATENT_GRID


def bucket_of(pipe, window: tuple[int, int], native: int | None = None) -> tuple[int, int]:
    """The working size `pipe` paints a `window` (width, height) at: what calls must share to be batched."""
    return resample.working_size(window, native=native or models.native_size(pipe), grid=bucket_grid(pipe))


def _call(
    pipe,
    requests: list[PaintRequest],
    images: list[np.ndarray],
    paints: list[np.ndarray],
    attempt: int,
    on_step: OnStep | None = None,
) -> np.ndarray:
    """One pipeline call over `requests`, whose images and masks are at the working size (float images in
    [0, 1], N×h×w×3)."""
    height, width = paints[0].shape
    skus = [r.sku for r in requests]

    def step_done(pipeline, step: int, timestep, tensors: dict) -> dict:
        on_step(skus, step + 1, pipeline.num_timesteps)
        return tensors

    return pipe(
        prompt=[r.prompt.prompt for r in requests],
        negative_prompt=[r.prompt.negative_prompt for r in requests],
        image=[Image.fromarray(image) for image in images],
        mask_image=[Image.fromarray(np.where(paint, 255, 0).astype(np.uint8)) for paint in paints],
        height=height,
        width=width,
        num_inference_steps=requests[0].prompt.steps,
        guidance_scale=requests[0].prompt.guidance,
        # Pure noise under the mask and every step run, for SD and SDXL alike (SDXL defaults to 0.9999):
        # see "Calling a pipeline" in prodvid_core.models.
        strength=1.0,
        generator=[
            torch.Generator(device="cpu").manual_seed(step_seed(r.seed, r.step, attempt)) for r in requests
        ],
        output_type="np",
        callback_on_step_end=step_done if on_step is not None else None,
    ).images


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
    native: int | None = None,
) -> tuple[np.ndarray, int]:
    """Paint the `paint` pixels (bool, H×W) of `image` (uint8, H×W×3); return the new image and the attempt.

    Only the painted pixels' validity is checked: the caller keeps only those. On unusable output the call is
    retried with the next seed, `max_retries` times, then a `GenerationError` names the SKU and `what`.
    """
    request = PaintRequest(image, paint, prompt, seed=seed, step=step, sku=sku, what=what)
    return inpaint_batch(pipe, [request], max_retries=max_retries, native=native)[0]


def batches(items: Sequence, size: int) -> list[list]:
    """`items` in consecutive runs of at most `size` (itertools.batched arrives with Python 3.12)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
