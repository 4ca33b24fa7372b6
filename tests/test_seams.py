"""Seams: a call's new pixels meet the pixels painted before it without a step, and no painted pixel changes.

The model in these tests is the tiny pipeline wrapped so that every image it returns is shifted in colour and
blurred (`ShiftAndBlur`): the VAE round trip of a real checkpoint, exaggerated. With plain copying, each
call's pixels then meet the earlier ones with a step; `seams.correct` has to remove at least 90% of it.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from prodvid_core import camera, frames, hero, layout, seams
from prodvid_core.world import Checkpoint

PROMPT = "a red box on a wooden table"
SHIFT = (0.08, -0.06, 0.05)  # added to every returned image, in [0, 1] units: about (20, -15, 13) in uint8
BLUR = 1.5  # Gaussian radius, px
# diagonal, so the calls' new pixels are L-shaped: horizontal and vertical boundaries
PATH = camera.pan((-200, -90), num_frames=16, fps=12)  # 4 calls, boundaries between each


class ShiftAndBlur:
    """A pipeline that returns the wrapped one's images blurred and shifted in colour."""

    def __init__(self, pipe, shift=SHIFT, blur=BLUR):
        self.pipe, self.shift, self.blur = pipe, np.asarray(shift, dtype=np.float32), blur

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kwargs):
        result = self.pipe(**kwargs)
        images = []
        for image in result.images:
            pil = Image.fromarray((image * 255).round().clip(0, 255).astype(np.uint8))
            blurred = np.asarray(pil.filter(ImageFilter.GaussianBlur(self.blur)), dtype=np.float32) / 255
            images.append(np.clip(blurred + self.shift, 0, 1))
        result.images = np.stack(images)
        return result


def world_step(store, sku: str) -> seams.Step:
    """The step across the boundaries between calls in `sku`'s stored world canvas."""
    world = Checkpoint.from_png(store.read_bytes(layout.world_checkpoint(sku))).world
    return seams.measure_step(world.pixels, world.owner)


# --- the measurement on the real chain -----------------------------------------------------------------


@pytest.fixture(scope="module")
def shifted_pipe(tiny_pipe):
    return ShiftAndBlur(tiny_pipe)


@pytest.fixture(scope="module")
def hero_image(shifted_pipe):
    from photos import labelled_box

    canvas, mask = labelled_box(256)
    return hero.generate(shifted_pipe, canvas, mask, sku="SEAM-1", prompt=PROMPT, steps=2, seed=5).image


def _settings(**kw) -> frames.FrameSettings:
    return frames.FrameSettings(prompt=PROMPT, steps=2, seed=5, lookahead=64, max_window=384, **kw)


def test_correction_removes_the_step_between_calls(shifted_pipe, hero_image, tmp_path):
    from prodvid_core.storage import LocalStore

    plain, fixed = LocalStore(tmp_path / "plain"), LocalStore(tmp_path / "fixed")
    a = frames.generate(shifted_pipe, plain, hero_image, PATH, _settings(seams=False), sku="S")
    b = frames.generate(shifted_pipe, fixed, hero_image, PATH, _settings(), sku="S")
    assert a.calls_made == b.calls_made >= 3
    before, after = world_step(plain, "S"), world_step(fixed, "S")
    print(f"step across calls: plain copy {before}, corrected {after}")
    assert before.pairs == after.pairs > 500
    assert before.step > 5  # the wrapper's shift makes a clear step without correction
    assert after.step <= 0.1 * before.step, (before, after)


def test_correction_changes_no_painted_pixel(shifted_pipe, hero_image, local_store):
    result = frames.generate(shifted_pipe, local_store, hero_image, PATH, _settings(), sku="S")
    got = list(frames.load_frames(local_store, "S"))
    assert np.array_equal(got[0], np.asarray(hero_image))  # the hero image, product included, exactly
    for k, record in enumerate(result.manifest["frames"][1:], start=1):
        dx, dy = record["shift"]
        h, w = 256 - abs(dy), 256 - abs(dx)
        prev = got[k - 1][max(0, -dy) : max(0, -dy) + h, max(0, -dx) : max(0, -dx) + w]
        cur = got[k][max(0, dy) : max(0, dy) + h, max(0, dx) : max(0, dx) + w]
        assert np.array_equal(prev, cur), f"frame {k} changed pixels it carried over"


def test_seams_setting_is_in_the_fingerprint(tiny_pipe, hero_image, tmp_path):
    from prodvid_core.storage import LocalStore

    store = LocalStore(tmp_path)
    path = camera.pan((-40, 0), num_frames=4, fps=12)
    first = frames.generate(tiny_pipe, store, hero_image, path, _settings(), sku="F")
    same = frames.generate(tiny_pipe, store, hero_image, path, _settings(), sku="F")
    other = frames.generate(tiny_pipe, store, hero_image, path, _settings(seams=False), sku="F")
    assert same.calls_made == 0 and same.frames_reused == first.count
    assert other.calls_made == first.calls_made > 0 and other.frames_reused == 0


# --- `correct` on synthetic data -------------------------------------------------------------------------


def _scene(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth colour field with a soft texture on it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.dstack([110 + 60 * np.sin(xx / 50), 120 + 50 * np.cos(yy / 40), 90 + 0.2 * xx])
    noise = Image.fromarray(np.clip(128 + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8))
    texture = np.asarray(noise.filter(ImageFilter.GaussianBlur(1)), dtype=np.float32) - 128
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def _model(image: np.ndarray, shift=(20, -15, 12), blur=1.5, seed=0) -> np.ndarray:
    """What a model returns for `image`: blurred, shifted in colour, with a little noise of its own."""
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0, 2, image.shape)
    return np.clip(blurred + shift + noise, 0, 255).astype(np.uint8)


def _case(h=160, w=200):
    """old: the painted scene; out: the model's output for a window whose right part and bottom are new."""
    old = _scene(h, w, 1)
    painted = np.ones((h, w), dtype=bool)
    painted[:, w - 64 :] = False
    painted[h - 40 :, :] = False
    truth = np.where(painted[..., None], old, _scene(h, w, 2))  # the model continues the scene
    return _model(truth), old, painted


def _composite(out, old, painted):
    return np.where(painted[..., None], old, out), np.where(painted, 0, 1)


def test_correct_removes_the_step_on_synthetic_data():
    out, old, painted = _case()
    fixed = seams.correct(out, old, painted)
    before = seams.measure_step(*_composite(out, old, painted))
    after = seams.measure_step(*_composite(fixed, old, painted))
    assert before.step > 10
    assert after.step <= 0.1 * before.step, (before, after)
    # far from the boundary the new pixels carry the shift away too, not just next to it
    new = ~painted
    assert abs((fixed[new].astype(float) - out[new]).mean(axis=0) - (-20, 15, -12)).max() < 4


def test_correct_never_touches_painted_pixels_and_is_deterministic():
    out, old, painted = _case()
    fixed = seams.correct(out, old, painted)
    assert fixed.dtype == np.uint8 and fixed.shape == out.shape
    assert np.array_equal(fixed[painted], out[painted])
    assert not np.array_equal(fixed[~painted], out[~painted])
    assert seams.correct(out, old, painted).tobytes() == fixed.tobytes()
    # inputs are left as they were
    assert np.array_equal(out, _case()[0]) and np.array_equal(old, _case()[1])


@pytest.mark.parametrize("coverage", ["none", "all"])
def test_nothing_to_correct(coverage):
    out, old, _ = _case()
    painted = np.full(out.shape[:2], coverage == "all")
    fixed = seams.correct(out, old, painted)
    assert np.array_equal(fixed, out) and fixed is not out


@pytest.mark.parametrize("band", [(slice(None), slice(100, 101)), (slice(77, 78), slice(None)), (5, 5)])
def test_thin_bands_meet_their_neighbours(band):
    """One new column, one new row, one new pixel: each takes its painted neighbours' difference."""
    out = np.full((64, 120, 3), 100, np.uint8)
    old = np.full((64, 120, 3), 130, np.uint8)
    painted = np.ones((64, 120), dtype=bool)
    painted[band] = False
    fixed = seams.correct(out, old, painted)
    assert np.array_equal(fixed[~painted], old[~painted])  # out + (old - out), exactly
    assert np.array_equal(fixed[painted], out[painted])


def test_corrected_pixels_clip_to_uint8():
    """A correction past 0 or 255 clips there; it never wraps around."""
    out = np.full((50, 80, 3), 200, np.uint8)
    out[:, 60:] = 240
    old = np.full((50, 80, 3), 255, np.uint8)
    old[:, :, 2] = 0
    painted = np.zeros((50, 80), dtype=bool)
    painted[:, :40] = True
    fixed = seams.correct(out, old, painted).astype(int)
    # red and green: +55 everywhere (200 -> 255, 240 -> 295 clipped); blue: -200 (200 -> 0, 240 -> 40)
    assert (fixed[:, 40:, :2] == 255).all()
    assert (fixed[:, 40:60, 2] == 0).all() and (fixed[:, 60:, 2] == 40).all()


def test_correct_checks_its_inputs():
    out, old, painted = _case()
    with pytest.raises(ValueError, match="`painted` has to be bool"):
        seams.correct(out, old, painted[:, :-1])
    with pytest.raises(ValueError, match="`old` has to be uint8"):
        seams.correct(out, old.astype(np.float32), painted)
    with pytest.raises(ValueError, match="`out` has to be uint8"):
        seams.correct(out[..., 0], old, painted)


def test_measure_step_sees_a_step_and_only_a_step():
    owner = np.zeros((40, 60), np.int16)
    owner[:, 30:] = 1
    owner[:5] = -1  # unpainted rows are left out
    flat = np.full((40, 60, 3), 90, np.uint8)
    assert seams.measure_step(flat, owner).step == 0
    stepped = flat.copy()
    stepped[:, 30:] += 12
    got = seams.measure_step(stepped, owner)
    assert got.pairs == 35 and got.within == 0 and got.across == pytest.approx(12)
