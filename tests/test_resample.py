"""Two resolutions: output-size windows painted at the model's working size, the product never resampled."""

from __future__ import annotations

import math

import numpy as np
import pytest

from checks import assert_overlaps_agree
from pipe_wrappers import Recording
from prodvid_core import camera, canvas, frames, hero, mask, models, resample, verify
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore


@pytest.mark.parametrize(
    "window", [(1080, 1920), (1920, 1080), (1000, 562), (64, 3840), (300, 300), (40, 30)]
)
@pytest.mark.parametrize("native", [256, 512, 1024])
def test_working_size_keeps_the_aspect_at_about_the_native_area(window, native):
    width, height = resample.working_size(window, native=native)
    assert width % 8 == 0 and height % 8 == 0 and width >= 8 and height >= 8
    assert width * height <= native * native  # never above the model's native area
    if min(width, height) > 64:  # one latent cell of rounding is small against the side
        assert width * height >= 0.85 * native * native
        assert abs(math.log((width / height) / (window[0] / window[1]))) < 0.1


def test_a_native_window_is_not_resampled():
    pixels = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert resample.working_size((256, 256), native=256) == (256, 256)
    assert resample.to_model(pixels, (256, 256)) is pixels
    assert resample.to_output(pixels, (256, 256)) is pixels


def test_the_model_mask_covers_every_pixel_to_paint():
    """Rounded towards painting: no output pixel to be painted sits under a kept model pixel."""
    paint = np.zeros((1920, 1080), dtype=bool)
    paint[:, 1077:] = True  # a 3 px strip, thinner than one model pixel at this scale
    small = resample.paint_to_model(paint, (384, 680))
    back = resample.to_output(np.where(small, 255, 0).astype(np.uint8)[..., None].repeat(3, 2), (1080, 1920))
    assert small[:, -1].all() and not small[:, :-2].any()
    assert (back[paint] > 0).all()


def test_a_story_is_painted_at_the_models_size_and_the_product_kept_exact(tiny_pipe, tmp_path):
    """1080x1920 output, the tiny model's 256 px native area: hero and frames never call the model above
    it, the product is placed once at full output detail and exact in the hero image and every frame."""
    pipe = Recording(tiny_pipe)
    native = models.native_size(tiny_pipe)
    assert native == 256
    expanded = canvas.expand(sample_photo_bytes(), sku="S-1", size=(1080, 1920))
    assert expanded.placement.scale == 1.0  # the sample fits: copied, not resampled
    product = mask.segment(expanded.image, sku="S-1")
    made = hero.generate(pipe, expanded.image, product, sku="S-1", prompt="on a table", steps=2, seed=1)
    assert made.image.size == (1080, 1920)
    assert verify.product_diff(expanded.image, product, made.image).differing == 0
    path = camera.pan((-270, -120), num_frames=12, fps=24)  # a quarter of the width, as 64 px at 256
    settings = frames.FrameSettings(prompt="on a table", steps=2, seed=1)
    result = frames.generate(pipe, LocalStore(tmp_path), made.image, path, settings, sku="S-1")
    assert result.calls_made >= 1 and len(pipe.sizes) == 1 + result.calls_made
    assert all(w * h <= native * native and w % 8 == 0 and h % 8 == 0 for w, h in pipe.sizes), pipe.sizes
    assert pipe.sizes[0] == resample.working_size((1080, 1920), native=native)
    rendered = list(frames.load_frames(LocalStore(tmp_path), "S-1"))
    for record, frame in zip(result.manifest["frames"], rendered, strict=True):
        assert frame.shape == (1920, 1080, 3)
        diff = verify.product_diff(expanded.image, product, frame, offset=tuple(record["offset"]))
        assert diff.visible > 0 and diff.differing == 0, (record["index"], diff)
    assert assert_overlaps_agree(rendered, result.manifest["frames"]) == 12  # exactly where they overlap
