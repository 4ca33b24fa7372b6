"""SDXL-class checkpoints paint the hero image and the frames through the same code as SD's (`tiny-xl`)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from prodvid_core import camera, frames, hero, models
from prodvid_core.inpaint import Prompt, inpaint
from prodvid_core.storage import LocalStore
from prodvid_core.verify import product_diff

PROMPT = "a red box on a wooden table"
PATH = camera.pan((-24, -12), num_frames=5, fps=12)


def _labelled_box(size: int) -> tuple[Image.Image, Image.Image]:
    """`photos.labelled_box` at any size: a red box with a pure-white label, on white; canvas and mask."""
    img = np.full((size, size, 3), 255, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    box, label = (
        np.s_[size * 15 // 32 : size * 29 // 32, size * 11 // 32 : size * 21 // 32],
        np.s_[size * 19 // 32 : size * 24 // 32, size * 12 // 32 : size * 20 // 32],
    )
    img[box], mask[box] = (200, 30, 30), 255
    img[label] = 255
    return Image.fromarray(img), Image.fromarray(mask)


@pytest.fixture(scope="module")
def xl_pipe(_prodvid_cache):
    return models.load_inpaint_pipeline(models.TINY_XL_PRESET, device="cpu")


@pytest.fixture(scope="module")
def hero_set(xl_pipe):
    canvas, mask = _labelled_box(128)
    result = hero.generate(
        xl_pipe, canvas, mask, sku="BOX-XL", prompt=PROMPT, steps=2, seed=3, model="tiny-xl"
    )
    return canvas, mask, result


def test_hero_keeps_every_product_pixel(hero_set):
    canvas, mask, result = hero_set
    diff = product_diff(canvas, mask, result.image)
    assert diff.visible == int((np.asarray(mask) >= 128).sum()) > 0
    assert diff.differing == 0 and diff.first is None
    background = np.asarray(mask) < 128
    assert not np.array_equal(np.asarray(result.image)[background], np.asarray(canvas)[background])
    assert (result.image.size, result.model, result.attempts) == ((128, 128), "tiny-xl", 1)


def test_frames_are_exact_product_and_deterministic(xl_pipe, hero_set, tmp_path):
    canvas, mask, result = hero_set
    settings = frames.FrameSettings(prompt=PROMPT, steps=2, seed=3, max_window=256, model="tiny-xl")
    runs = []
    for name in ("a", "b"):
        store = LocalStore(tmp_path / name)
        frame_set = frames.generate(xl_pipe, store, result.image, PATH, settings, sku="BOX-XL")
        runs.append((frame_set, list(frames.load_frames(store, "BOX-XL"))))
    (first, pixels), (again, pixels_again) = runs
    assert first.count == len(pixels) == PATH.num_frames
    assert first.calls_made >= 1
    for k, record in enumerate(first.manifest["frames"]):
        assert product_diff(canvas, mask, pixels[k], offset=tuple(record["offset"])).differing == 0
        assert np.array_equal(pixels[k], pixels_again[k])
    assert [r["sha256"] for r in first.manifest["frames"]] == [r["sha256"] for r in again.manifest["frames"]]
    assert not np.array_equal(pixels[-1], pixels[0])  # the camera moved and new background was painted


@pytest.mark.parametrize("preset", ["tiny", "tiny-xl"])
def test_what_is_under_the_mask_does_not_change_what_is_painted(preset):
    """Both classes start the masked region from pure noise (`strength=1.0`): the placeholder under the mask
    (white in the hero canvas, black in the unpainted world) leaves no trace. At SDXL's default strength,
    0.9999, it would, and a 1-step call would not run at all."""
    pipe = models.load_inpaint_pipeline(preset, device="cpu")
    side = models.native_size(pipe)  # a window at the native size is painted as it is, not resampled
    keep = np.s_[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4]
    paint = np.ones((side, side), dtype=bool)
    paint[keep] = False
    outs = []
    for fill, steps in ((255, 2), (0, 2), (0, 1)):
        image = np.full((side, side, 3), fill, dtype=np.uint8)
        image[keep] = (200, 40, 40)
        prompt = Prompt(PROMPT, steps=steps)
        outs.append(inpaint(pipe, image, paint, prompt, seed=7, step=0, sku="S", what="x")[0])
    assert np.array_equal(outs[0][paint], outs[1][paint])
    assert not np.array_equal(outs[1][paint], outs[2][paint])  # one step paints, and paints otherwise
