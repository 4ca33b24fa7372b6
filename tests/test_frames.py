import hashlib
import io
import threading

import numpy as np
import pytest
from PIL import Image

from checks import assert_overlaps_agree
from photos import labelled_box
from pipe_wrappers import FailAfter, Wrapped
from prodvid_core import camera, frames, hero, layout, plan, run, verify
from prodvid_core.errors import GenerationError, IntegrityError
from prodvid_core.inpaint import is_unusable, step_seed
from prodvid_core.storage import LocalStore
from prodvid_core.world import Checkpoint

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
    """Everything stored for `sku`'s frames: the world, the manifest and any frame PNGs."""
    return {k: store.read_bytes(k) for k in store.list(layout.frames_prefix(sku))}


def _pngs(store, sku):
    return {k: v for k, v in _stored(store, sku).items() if k.rsplit("/", 1)[-1][:5].isdigit()}


class _ManifestRendersStore(LocalStore):
    """A real local store that, each time the manifest is written, renders every frame it lists from the
    stored world and checks it against its sha256: the manifest never lists a frame the world cannot show."""

    def write_bytes(self, key: str, data: bytes) -> None:
        super().write_bytes(key, data)
        if key.endswith("manifest.json"):
            sku = key.split("/")[1]
            listed = frames.read_manifest(self, sku)
            assert len(list(frames.load_frames(self, sku, listed))) == len(listed["frames"])


def test_hero_keeps_every_product_pixel(hero_set):
    canvas, mask, image = hero_set
    product = np.asarray(mask) == 255
    assert np.array_equal(np.asarray(image)[product], np.asarray(canvas)[product])
    assert not np.array_equal(np.asarray(image)[~product], np.asarray(canvas)[~product])


def test_frames_are_rendered_exact_and_agree_on_overlaps(tiny_pipe, hero_set, local_store):
    canvas, mask, image = hero_set
    result = frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="BOX-1")
    # only the world and the manifest are stored; the frames are rendered from them
    assert sorted(_stored(local_store, "BOX-1")) == sorted(result.keys)
    assert sorted(result.keys) == [layout.frames_manifest("BOX-1"), layout.world_checkpoint("BOX-1")]
    got = list(frames.load_frames(local_store, "BOX-1"))
    assert len(got) == PATH.num_frames == result.count
    assert np.array_equal(got[0], np.asarray(image))
    product, reference = np.asarray(mask) == 255, np.asarray(canvas)
    ys, xs = np.nonzero(product)
    for k, record in enumerate(result.manifest["frames"]):
        assert got[k].dtype == np.uint8 and got[k].shape == (256, 256, 3)
        assert record["sha256"] == hashlib.sha256(got[k].tobytes()).hexdigest()  # of the raw RGB pixels
        ox, oy = record["offset"]
        assert tuple(record["offset"]) == PATH.offsets()[k]
        diff = verify.product_diff(canvas, mask, got[k], offset=(ox, oy))
        assert diff.visible > 0.9 * product.sum() and diff.differing == 0, (k, diff)
        # product pixels at their shifted position, exactly
        yy, xx = ys + oy, xs + ox
        inside = (yy >= 0) & (yy < 256) & (xx >= 0) & (xx < 256)
        assert np.array_equal(got[k][yy[inside], xx[inside]], reference[ys[inside], xs[inside]])
    assert_overlaps_agree(got, result.manifest["frames"])  # consecutive frames, pixel for pixel
    # a selection renders the same frames
    first, last = frames.load_frames(local_store, "BOX-1", indices=[0, result.count - 1])
    assert np.array_equal(first, got[0]) and np.array_equal(last, got[-1])


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


def test_same_inputs_give_byte_identical_frames(tiny_pipe, hero_set, tmp_path):
    image = hero_set[2]
    a, b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    frames.generate(tiny_pipe, a, image, PATH, _settings(), sku="B")
    frames.generate(tiny_pipe, b, image, PATH, _settings(), sku="B")
    assert _stored(a, "B") == _stored(b, "B")
    c = LocalStore(tmp_path / "c")
    frames.generate(tiny_pipe, c, image, PATH, _settings(seed=4), sku="B")
    assert not np.array_equal(list(frames.load_frames(a, "B"))[13], list(frames.load_frames(c, "B"))[13])


@pytest.mark.parametrize("fail_after, drop_checkpoint", [(0, False), (1, False), (2, False), (2, True)])
def test_resume_after_a_crash_is_byte_identical(tiny_pipe, hero_set, tmp_path, fail_after, drop_checkpoint):
    """A run that fails after `fail_after` diffusion calls, run again, stores byte for byte the world,
    manifest and MP4 of an uninterrupted run, and makes only the calls that were not checkpointed."""
    image = hero_set[2]
    path = camera.pan((-200, -20), num_frames=16, fps=12)
    settings = _settings(lookahead=64)
    whole = LocalStore(tmp_path / "whole")
    full = frames.generate(tiny_pipe, whole, image, path, settings, sku="B")
    assert full.calls_made >= 3

    broken = _ManifestRendersStore(tmp_path / "broken")
    with pytest.raises(RuntimeError, match=f"after {fail_after} calls"):
        frames.generate(FailAfter(tiny_pipe, fail_after), broken, image, path, settings, sku="B")
    listed = frames.read_manifest(broken, "B")["frames"]
    # the frames listed are those of the checkpointed calls: frame 0, and every frame of the calls made
    assert [r["call"] for r in listed] == [r["call"] for r in full.manifest["frames"][: len(listed)]]
    assert len(listed) == 1 + sum(len(c["frames"]) for c in full.manifest["calls"][:fail_after])
    if drop_checkpoint:
        (broken.root / layout.world_checkpoint("B")).unlink()
    pipe = FailAfter(tiny_pipe, 100)
    resumed = frames.generate(pipe, broken, image, path, settings, sku="B")
    assert resumed.frames_reused == (0 if drop_checkpoint else len(listed))
    assert resumed.calls_made == pipe.calls == full.calls_made - (0 if drop_checkpoint else fail_after)
    assert _stored(broken, "B") == _stored(whole, "B")
    assert resumed.manifest == full.manifest
    videos = [
        run.make_video(store, "B", result)[0].data for store, result in ((whole, full), (broken, resumed))
    ]
    assert videos[0] == videos[1]


def test_a_crash_between_checkpoint_and_manifest_keeps_the_call(tiny_pipe, hero_set, tmp_path):
    """The world is stored before the manifest listing its frames: a crash between the two loses no call."""

    class _NoManifestAfterCall(LocalStore):
        def write_bytes(self, key: str, data: bytes) -> None:
            if key.endswith("manifest.json") and self.exists(key):
                raise OSError("disk full")
            super().write_bytes(key, data)

    image, path, settings = (
        hero_set[2],
        camera.pan((-150, -20), num_frames=16, fps=12),
        _settings(lookahead=64),
    )
    full = frames.generate(tiny_pipe, LocalStore(tmp_path / "whole"), image, path, settings, sku="B")
    store = _NoManifestAfterCall(tmp_path / "broken")
    with pytest.raises(OSError, match="disk full"):
        frames.generate(tiny_pipe, store, image, path, settings, sku="B")
    assert [r["index"] for r in frames.read_manifest(store, "B")["frames"]] == [0]
    resumed = frames.generate(tiny_pipe, LocalStore(tmp_path / "broken"), image, path, settings, sku="B")
    assert resumed.calls_made == full.calls_made - 1 and resumed.manifest == full.manifest
    assert resumed.frames_reused == 1 + len(full.manifest["calls"][0]["frames"])


def test_a_damaged_world_is_detected_and_made_again(tiny_pipe, hero_set, local_store):
    image = hero_set[2]
    made = frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B")
    before = _stored(local_store, "B")
    key = layout.world_checkpoint("B")

    # a pixel changed in a world that still reads back: the frames showing it do not match their sha256
    checkpoint = Checkpoint.from_png(before[key])
    last = made.manifest["frames"][-1]
    x0, y0, *_ = plan.frame_box(last["offset"], made.manifest["size"])
    checkpoint.world.pixels[y0 - checkpoint.world.bounds[1], x0 - checkpoint.world.bounds[0]] ^= 1
    local_store.write_bytes(key, checkpoint.to_png())
    with pytest.raises(IntegrityError, match=r"SKU B: frame \d+ .* does not match its sha256"):
        list(frames.load_frames(local_store, "B"))
    again = frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B")
    assert again.frames_reused == 0 and again.calls_made == made.calls_made
    assert _stored(local_store, "B") == before

    # a world that does not read back
    local_store.write_bytes(key, b"garbage")
    with pytest.raises(IntegrityError, match="SKU B: .*world.png does not read back"):
        list(frames.load_frames(local_store, "B"))
    local_store.delete(key)
    with pytest.raises(IntegrityError, match="SKU B: .*world.png is missing"):
        list(frames.load_frames(local_store, "B"))
    frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B")
    assert _stored(local_store, "B") == before


def test_a_changed_setting_makes_every_frame_again(tiny_pipe, hero_set, local_store):
    image = hero_set[2]
    frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B")
    changed = frames.generate(tiny_pipe, local_store, image, PATH, _settings(guidance=3.0), sku="B")
    assert changed.frames_reused == 0 and changed.calls_made >= 1


def test_keep_frames_writes_the_rendered_frames_as_pngs(tiny_pipe, hero_set, local_store):
    image = hero_set[2]
    kept = frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B", keep_frames=True)
    pngs = _pngs(local_store, "B")
    assert sorted(pngs) == [layout.frame_png("B", k) for k in range(PATH.num_frames)]
    assert sorted(kept.keys) == sorted(_stored(local_store, "B"))
    for k, frame in enumerate(frames.load_frames(local_store, "B")):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(pngs[layout.frame_png("B", k)]))), frame)
    # the PNGs are not in the fingerprint: the world and every call are reused, valid PNGs left as they are
    mtimes = {k: (local_store.root / k).stat().st_mtime_ns for k in pngs}
    again = frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B", keep_frames=True)
    assert (again.calls_made, again.frames_reused) == (0, PATH.num_frames)
    assert {k: (local_store.root / k).stat().st_mtime_ns for k in pngs} == mtimes
    # a missing one is written again
    local_store.delete(layout.frame_png("B", 5))
    frames.generate(tiny_pipe, local_store, image, PATH, _settings(), sku="B", keep_frames=True)
    assert _pngs(local_store, "B") == pngs

    # changed frames: the stale PNGs are replaced by the new frames
    frames.generate(tiny_pipe, local_store, image, PATH, _settings(seed=4), sku="B", keep_frames=True)
    new = _pngs(local_store, "B")
    assert sorted(new) == sorted(pngs) and new[layout.frame_png("B", 13)] != pngs[layout.frame_png("B", 13)]
    for k, frame in enumerate(frames.load_frames(local_store, "B")):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(new[layout.frame_png("B", k)]))), frame)

    # a shorter video drops the PNGs it no longer has; a run without keep_frames drops them all
    short = camera.CameraPath(shifts=PATH.shifts[:4], fps=PATH.fps)
    frames.generate(tiny_pipe, local_store, image, short, _settings(), sku="B", keep_frames=True)
    assert sorted(_pngs(local_store, "B")) == [layout.frame_png("B", k) for k in range(5)]
    without = frames.generate(tiny_pipe, local_store, image, short, _settings(), sku="B")
    assert _pngs(local_store, "B") == {} and without.calls_made == 0
    assert sorted(without.keys) == sorted(_stored(local_store, "B"))


class _BlankFirst(Wrapped):
    """Blanks the real pipeline's first `blank` outputs, like a safety checker would."""

    def __init__(self, pipe, blank: int):
        super().__init__(pipe)
        self.blank = blank

    def __call__(self, **kwargs):
        out = super().__call__(**kwargs)
        if self.calls <= self.blank:
            out.images[:] = 0.0
        return out


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


def test_the_world_is_stored_after_each_call_and_then_the_manifest(tiny_pipe, hero_set, tmp_path):
    path = camera.pan((-60, -28), num_frames=24, fps=12)
    request = frames.FramesRequest("B", hero_set[2], path, _settings(lookahead=64))
    store = _RecordingStore(tmp_path / "a")
    (result,) = frames.generate_batch(tiny_pipe, store, [request], workers=3)
    writes = [key.rsplit("/", 1)[-1] for key, _ in store.writes]
    # the hero image's world, then each call's; each followed by the manifest listing what it completes
    assert writes == ["world.png", "manifest.json"] * (1 + result.calls_made)
    assert result.calls_made < 24

    # a re-run reads the world once and renders every frame from it; no frame is painted or written again
    store.reads.clear(), store.writes.clear()
    (again,) = frames.generate_batch(tiny_pipe, store, [request], workers=3)
    assert (again.frames_reused, again.calls_made) == (24, 0)
    assert sorted(key.rsplit("/", 1)[-1] for key, _ in store.reads) == ["manifest.json", "world.png"]
    assert [key.rsplit("/", 1)[-1] for key, _ in store.writes] == ["manifest.json"]


def test_kept_frames_are_encoded_and_stored_by_worker_threads(tiny_pipe, hero_set, tmp_path):
    path = camera.pan((-60, -28), num_frames=24, fps=12)
    request = frames.FramesRequest("B", hero_set[2], path, _settings(lookahead=64))
    store = _RecordingStore(tmp_path / "parallel")
    frames.generate_batch(tiny_pipe, store, [request], workers=3, keep_frames=True)
    frame_writes = [thread for key, thread in store.writes if key.rsplit("/", 1)[-1][:5].isdigit()]
    assert len(frame_writes) == 24 and all(thread.startswith("frames") for thread in frame_writes)
    serial = LocalStore(tmp_path / "serial")
    frames.generate_batch(tiny_pipe, serial, [request], workers=1, keep_frames=True)
    assert _stored(serial, "B") == _stored(store, "B")
