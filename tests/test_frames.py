import threading

import numpy as np
import pytest
from PIL import Image

from photos import labelled_box
from prodvid_core import camera, frames, hero, layout
from prodvid_core.errors import GenerationError
from prodvid_core.inpaint import is_unusable, step_seed
from prodvid_core.storage import LocalStore

PROMPT = "a red box on a wooden table"
PATH = camera.pan((-60, -28), num_frames=14, fps=12)


@pytest.fixture(scope="module")
def hero_set(tiny_pipe):
    canvas, mask = labelled_box(256)
    result = hero.generate(tiny_pipe, canvas, mask, sku="BOX-1", prompt=PROMPT, steps=2, seed=3)
    return canvas, mask, result.image


def _settings(**kw):
    return frames.FrameSettings(**{"prompt": PROMPT, "steps": 2, "seed": 3, "max_window": 384, **kw})


def _stored(store, sku):
    return {k: store.read_bytes(k) for k in store.list(layout.frames_prefix(sku)) if k.endswith(".png")}


def test_hero_keeps_every_product_pixel(hero_set):
    canvas, mask, image = hero_set
    product = np.asarray(mask) == 255
    assert np.array_equal(np.asarray(image)[product], np.asarray(canvas)[product])
    assert not np.array_equal(np.asarray(image)[~product], np.asarray(canvas)[~product])


def test_frames_are_exact_product_and_agree_on_overlaps(tiny_pipe, hero_set, local_store):
    canvas, mask, image = hero_set
    result = frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="BOX-1")
    got = list(frames.load_frames(local_store, "BOX-1"))
    assert len(got) == PATH.num_frames == result.count
    assert np.array_equal(got[0], np.asarray(image))
    product, reference = np.asarray(mask) == 255, np.asarray(canvas)
    ys, xs = np.nonzero(product)
    for k, record in enumerate(result.manifest["frames"]):
        ox, oy = record["offset"]
        assert tuple(record["offset"]) == PATH.offsets()[k]
        # product pixels at their shifted position, exactly
        yy, xx = ys + oy, xs + ox
        inside = (yy >= 0) & (yy < 256) & (xx >= 0) & (xx < 256)
        assert inside.mean() > 0.9
        assert np.array_equal(got[k][yy[inside], xx[inside]], reference[ys[inside], xs[inside]])
        if k:  # consecutive frames agree on their overlap, pixel for pixel
            dx, dy = record["shift"]
            prev, cur = got[k - 1], got[k]
            h, w = 256 - abs(dy), 256 - abs(dx)
            p = prev[max(0, -dy) : max(0, -dy) + h, max(0, -dx) : max(0, -dx) + w]
            c = cur[max(0, dy) : max(0, dy) + h, max(0, dx) : max(0, dx) + w]
            assert np.array_equal(p, c), f"frame {k} changed pixels it carried over"


def test_lookahead_serves_many_frames_per_call(tiny_pipe, hero_set, tmp_path):
    image = hero_set[2]
    with_lookahead = frames.generate(tiny_pipe, LocalStore(tmp_path / "a"), image, PATH, _settings(), sku="B")
    per_frame = frames.generate(
        tiny_pipe, LocalStore(tmp_path / "b"), image, PATH, _settings(lookahead=0), sku="B"
    )
    moving = sum(1 for s in PATH.shifts if s != (0, 0))
    assert per_frame.calls_made == moving == len(per_frame.manifest["calls"])
    assert with_lookahead.calls_made < per_frame.calls_made
    assert with_lookahead.calls_made == len(with_lookahead.manifest["calls"]) <= 2
    for call in with_lookahead.manifest["calls"]:
        assert all(v % 8 == 0 for v in call["window"])


def test_same_inputs_give_byte_identical_frames(tiny_pipe, hero_set, tmp_path):
    image = hero_set[2]
    a, b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    frames.generate(tiny_pipe, a, image, PATH, _settings(), sku="B")
    frames.generate(tiny_pipe, b, image, PATH, _settings(), sku="B")
    assert _stored(a, "B") == _stored(b, "B")
    c = LocalStore(tmp_path / "c")
    frames.generate(tiny_pipe, c, image, PATH, _settings(seed=4), sku="B")
    assert _stored(a, "B")[layout.frame_png("B", 13)] != _stored(c, "B")[layout.frame_png("B", 13)]


@pytest.mark.parametrize("fail_at, drop_checkpoint", [(5, False), (9, False), (9, True)])
def test_resume_after_a_crash_is_byte_identical(
    tiny_pipe, hero_set, tmp_path, monkeypatch, fail_at, drop_checkpoint
):
    image = hero_set[2]
    path = camera.pan((-200, -20), num_frames=16, fps=12)
    settings = _settings(lookahead=64)
    whole = LocalStore(tmp_path / "whole")
    full = frames.generate(tiny_pipe, whole, image, path, settings, sku="B")
    assert full.calls_made >= 3

    broken = LocalStore(tmp_path / "broken")
    monkeypatch.setenv(frames.FAIL_AT_FRAME_ENV, str(fail_at))
    with pytest.raises(RuntimeError, match=f"frame {fail_at}"):
        frames.generate(tiny_pipe, broken, image, path, settings, sku="B")
    monkeypatch.delenv(frames.FAIL_AT_FRAME_ENV)
    if drop_checkpoint:
        (broken.root / layout.world_checkpoint("B")).unlink()
    resumed = frames.generate(tiny_pipe, broken, image, path, settings, sku="B")
    assert resumed.frames_reused == fail_at
    done_before = full.manifest["frames"][fail_at - 1]["call"]
    expected_calls = full.calls_made - (0 if drop_checkpoint else done_before + 1)
    assert resumed.calls_made == expected_calls
    assert _stored(broken, "B") == _stored(whole, "B")
    assert resumed.manifest == full.manifest


def test_a_corrupt_frame_is_made_again_and_later_ones_kept_in_step(tiny_pipe, hero_set, local_store):
    image = hero_set[2]
    frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B")
    before = _stored(local_store, "B")
    local_store.write_bytes(layout.frame_png("B", 6), b"garbage")
    again = frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B")
    assert again.frames_reused == 6 and again.calls_made == 0
    assert _stored(local_store, "B") == before


def test_a_changed_setting_makes_every_frame_again(tiny_pipe, hero_set, local_store):
    image = hero_set[2]
    frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B")
    changed = frames.generate(tiny_pipe, local_store, image, PATH, _settings(guidance=3.0), sku="B")
    assert changed.frames_reused == 0 and changed.calls_made >= 1


def test_a_shorter_video_drops_the_frames_it_no_longer_has(tiny_pipe, hero_set, local_store):
    image = hero_set[2]
    frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B")
    short = camera.CameraPath(shifts=PATH.shifts[:4], fps=PATH.fps)
    frames.generate(tiny_pipe, local_store, image, short, _settings(), sku="B")
    assert len(_stored(local_store, "B")) == 5 + 1  # 5 frames + the world checkpoint


class _BlankFirst:
    """Wraps the real tiny pipeline and blanks its first `blank` outputs, like a safety checker would."""

    def __init__(self, pipe, blank: int):
        self.pipe, self.blank, self.calls = pipe, blank, 0

    def __call__(self, **kwargs):
        out = self.pipe(**kwargs)
        self.calls += 1
        if self.calls <= self.blank:
            out.images[:] = 0.0
        return out

    def __getattr__(self, name):  # the pipeline's config (native size) as the real one has it
        return getattr(self.pipe, name)


def test_blank_output_is_retried_with_the_next_seed(tiny_pipe, hero_set, local_store):
    pipe = _BlankFirst(tiny_pipe, blank=1)
    result = frames.generate(pipe, local_store, hero_set[2], PATH, _settings(), sku="B")
    assert pipe.calls == result.calls_made + 1
    assert result.manifest["calls"][0]["seed"] != step_seed(3, result.manifest["calls"][0]["frames"][0])
    assert not np.any([np.all(f == 0) for f in frames.load_frames(local_store, "B")])


def test_output_that_stays_blank_fails_naming_sku_and_frame(tiny_pipe, hero_set, local_store):
    pipe = _BlankFirst(tiny_pipe, blank=100)
    with pytest.raises(GenerationError, match=r"SKU B: .*blank.*frame 1"):
        frames.generate(pipe, local_store, hero_set[2], PATH, _settings(max_retries=2), sku="B")
    assert pipe.calls == 3
    assert [r["index"] for r in frames.read_manifest(local_store, "B")["frames"]] == [0]


def test_nan_output_is_detected():
    assert "NaN" in is_unusable(np.array([0.5, np.nan]))
    assert is_unusable(np.random.default_rng(0).random(100)) is None


def test_odd_sized_hero_is_refused(tiny_pipe, local_store):
    with pytest.raises(Exception, match="even sides"):
        frames.generate(tiny_pipe, local_store, Image.new("RGB", (251, 256)), PATH, _settings(), sku="B")


def test_a_longer_path_keeps_the_frames_and_calls_it_shares(tiny_pipe, hero_set, tmp_path):
    """Extending a video keeps every frame and every call made before the first call that differs.

    The world checkpoint knows which call painted each pixel, so it gives back the world after the last
    shared call even though the short plan's last call is not shared; the result is byte for byte a fresh
    run of the longer path.
    """
    image, settings = hero_set[2], _settings(lookahead=64)
    short = camera.from_shifts([(-4, 0)] * 30, fps=12)
    longer = camera.from_shifts([(-4, 0)] * 30 + [(0, -4)] * 20, fps=12)
    store = LocalStore(tmp_path / "a")
    first = frames.generate(tiny_pipe, store, image, short, settings, sku="B")
    extended = frames.generate(tiny_pipe, store, image, longer, settings, sku="B")
    fresh = frames.generate(tiny_pipe, LocalStore(tmp_path / "b"), image, longer, settings, sku="B")
    assert _stored(store, "B") == _stored(LocalStore(tmp_path / "b"), "B")
    assert extended.manifest == fresh.manifest
    shared = 0
    for a, b in zip(first.manifest["calls"], fresh.manifest["calls"], strict=False):
        if (a["window"], a["frames"][0]) != (b["window"], b["frames"][0]):
            break
        shared += 1
    assert 1 <= shared < len(first.manifest["calls"])  # the short plan's last call is not shared
    assert extended.frames_reused >= fresh.manifest["calls"][shared - 1]["frames"][-1]
    assert extended.calls_made == fresh.calls_made - shared


def test_load_frame_set_gives_back_what_generate_stored(tiny_pipe, hero_set, local_store):
    with pytest.raises(FileNotFoundError, match="SKU B: no frames/B/manifest.json"):
        frames.load_frame_set(local_store, "B")
    made = frames.generate(tiny_pipe, local_store, hero_set[2], PATH, _settings(), sku="B")
    loaded = frames.load_frame_set(local_store, "B")
    assert loaded.manifest == made.manifest and loaded.keys == made.keys
    assert (loaded.calls_made, loaded.frames_reused, loaded.count) == (0, PATH.num_frames, PATH.num_frames)


class _RecordingStore(LocalStore):
    """A real local store that records which thread read and wrote each key."""

    def __init__(self, root):
        super().__init__(root)
        self.reads: list[tuple[str, str]] = []
        self.writes: list[tuple[str, str]] = []

    def read_bytes(self, key: str) -> bytes:
        self.reads.append((key, threading.current_thread().name))
        return super().read_bytes(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self.writes.append((key, threading.current_thread().name))
        super().write_bytes(key, data)


def test_frames_are_stored_and_checked_by_worker_threads_and_the_manifest_once_per_call(
    tiny_pipe, hero_set, tmp_path
):
    path = camera.pan((-60, -28), num_frames=24, fps=12)
    request = frames.FramesRequest("B", hero_set[2], path, _settings(lookahead=64))
    store = _RecordingStore(tmp_path / "parallel")
    (result,) = frames.generate_batch(tiny_pipe, store, [request], workers=3)
    frame_writes = [thread for key, thread in store.writes if key.endswith(".png") and "/0" in key]
    manifest_writes = [key for key, _ in store.writes if key.endswith("manifest.json")]
    assert len(frame_writes) == 24 and all(thread.startswith("frames") for thread in frame_writes)
    assert len(manifest_writes) == 1 + result.calls_made < 24  # frame 0, then once after each call
    serial = LocalStore(tmp_path / "serial")
    frames.generate_batch(tiny_pipe, serial, [request], workers=1)
    assert _stored(serial, "B") == _stored(store, "B")
    assert frames.read_manifest(serial, "B") == frames.read_manifest(store, "B")

    # a re-run checks every stored frame, read and hashed by the worker threads too
    store.reads.clear()
    (again,) = frames.generate_batch(tiny_pipe, store, [request], workers=3)
    assert (again.frames_reused, again.calls_made) == (24, 0)
    frame_reads = [thread for key, thread in store.reads if key.endswith(".png") and "/0" in key]
    assert len(frame_reads) == 24 and all(thread.startswith("frames") for thread in frame_reads)
