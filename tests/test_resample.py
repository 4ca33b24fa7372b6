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
def test_a_window_is_painted_in_a_bucket_with_its_own_aspect(window, native):
    """The working size is one of the model's few buckets (sides multiples of 64, area at most native²);
    the window sits in it at its own aspect, as large as the bucket allows, centred."""
    at = resample.working(window, native=native)
    width, height = at.size
    assert at.size in resample.buckets(native)
    assert width % 64 == 0 and height % 64 == 0 and width * height <= native * native
    inner_w, inner_h = at.inner
    assert inner_w == width or inner_h == height  # touches two sides: the largest uniform fit
    if min(inner_w, inner_h) > 32:  # within rounding of one pixel, the window's own aspect
        assert abs(math.log((inner_w / inner_h) / (window[0] / window[1]))) < 0.05
    if max(window) / min(window) <= resample.MAX_ASPECT:  # a bucket for its aspect: little padding
        assert inner_w * inner_h >= 0.6 * native * native
    left, top, right, bottom = at.box
    assert abs(left - (width - right)) <= 1 and abs(top - (height - bottom)) <= 1


def test_few_buckets_per_model():
    assert resample.buckets(512) == (
        (256, 1024), (320, 768), (384, 640), (448, 576), (512, 512),
        (576, 448), (640, 384), (768, 320), (1024, 256),
    )  # fmt: skip
    assert len(resample.buckets(256)) == 5 and len(resample.buckets(1024)) == 17


def test_the_border_around_the_window_is_painted_and_thrown_away():
    """A 1080x1920 window in the 384x640 bucket: 12 px columns on each side are painted by the model (their
    pixels the window's edge), and only the box comes back, at the window's size."""
    at = resample.working((1080, 1920), native=512)
    assert (at.size, at.box) == ((384, 640), (12, 0, 372, 640))
    image = np.random.default_rng(1).integers(0, 256, (1920, 1080, 3), dtype=np.uint8)
    model = resample.to_model(image, at)
    assert model.shape == (640, 384, 3)
    assert np.array_equal(model[:, :12], np.repeat(model[:, 12:13], 12, axis=1))
    paint = resample.paint_to_model(np.zeros((1920, 1080), dtype=bool), at)
    assert paint[:, :12].all() and paint[:, 372:].all() and not paint[:, 12:372].any()
    assert resample.to_output(model, at, (1080, 1920)).shape == (1920, 1080, 3)


def test_a_native_window_is_not_resampled():
    pixels = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    at = resample.working((256, 256), native=256)
    assert (at.size, at.box) == ((256, 256), (0, 0, 256, 256))
    assert resample.to_model(pixels, at) is pixels
    assert resample.to_output(pixels, at, (256, 256)) is pixels


def test_the_model_mask_covers_every_pixel_to_paint():
    """Rounded towards painting: no output pixel to be painted sits under a kept model pixel."""
    paint = np.zeros((1920, 1080), dtype=bool)
    paint[:, 1077:] = True  # a 3 px strip, thinner than one model pixel at this scale
    at = resample.working((1080, 1920), native=512)  # the 360x640 box in a 384x640 bucket
    small = resample.paint_to_model(paint, at)
    back = resample.to_output(
        np.where(small, 255, 0).astype(np.uint8)[..., None].repeat(3, 2), at, (1080, 1920)
    )
    box = small[:, 12:372]
    assert box[:, -1].all() and not box[:, :-2].any()
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
    assert all(size in resample.buckets(native) for size in pipe.sizes), pipe.sizes
    assert pipe.sizes[0] == resample.working_size((1080, 1920), native=native)
    rendered = list(frames.load_frames(LocalStore(tmp_path), "S-1"))
    for record, frame in zip(result.manifest["frames"], rendered, strict=True):
        assert frame.shape == (1920, 1080, 3)
        diff = verify.product_diff(expanded.image, product, frame, offset=tuple(record["offset"]))
        assert diff.visible > 0 and diff.differing == 0, (record["index"], diff)
    assert assert_overlaps_agree(rendered, result.manifest["frames"]) == 12  # exactly where they overlap
