"""The core promise, end to end: for every kind of photo a catalog has, product pixels are never altered.

Each photo goes through the real chain (canvas → mask → hero → frames → video) with the tiny models; the
hero image and every frame must show the reference (canvas under mask) exactly, difference 0. The same at
every preset format and at an odd size (even sides, not multiples of 8), where every diffusion call paints
a window resampled to the model's native area and the product is never resampled.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from checks import assert_overlaps_agree
from photos import BAD, GOOD
from pipe_wrappers import Recording
from prodvid_core import (
    artifacts,
    canvas,
    formats,
    frames,
    hero,
    layout,
    mask,
    models,
    resample,
    verify,
    video,
)
from prodvid_core.brief import parse_brief
from prodvid_core.errors import ProdvidError
from prodvid_core.run import Settings, generate_sku, make_canvas
from prodvid_core.storage import LocalStore

SETTINGS = Settings(size=256, steps=2, max_window=384).with_preset("tiny")
BRIEF = {"prompt": "on a wooden table", "seed": 11, "camera": {"path": "pan", "distance": [-70, -30]}}


def assert_product_exact(result, store, sku):
    product = np.asarray(result.mask) == 255
    assert product.any() and not product.all()
    assert result.hero.image.size == result.canvas.image.size
    hero = verify.product_diff(result.canvas.image, result.mask, result.hero.image)
    assert hero.visible == product.sum() and hero.differing == 0, hero  # every product pixel, exact
    reference = np.asarray(result.canvas.image.convert("RGB"))
    assert not np.array_equal(np.asarray(result.hero.image)[~product], reference[~product])  # scene painted
    rendered = list(frames.load_frames(store, sku))
    for frame, record in zip(rendered, result.frames.manifest["frames"], strict=True):
        assert frame.shape[:2] == product.shape
        diff = verify.product_diff(result.canvas.image, result.mask, frame, offset=record["offset"])
        assert diff.visible > 0 and diff.differing == 0, (record["index"], diff)
    return rendered


@pytest.mark.parametrize("name", sorted(GOOD))
def test_every_photo_kind_keeps_the_product_exact(name, tiny_pipe, tmp_path):
    store = LocalStore(tmp_path)
    brief = parse_brief({**BRIEF, "num_frames": 6}, sku=f"P-{name}")
    result = generate_sku(store, f"P-{name}", GOOD[name](), brief, SETTINGS)
    assert_product_exact(result, store, f"P-{name}")
    assert result.video.frame_count == 6


def test_full_size_512_end_to_end(tiny_pipe, tmp_path):
    store = LocalStore(tmp_path)
    settings = Settings(size=512, steps=2).with_preset(
        "tiny"
    )  # 512 px canvas, 768 px windows: the real geometry
    brief = parse_brief(
        {"prompt": "on a marble counter", "seed": 1}, sku="FULL-1"
    )  # default drift, 48 frames
    result = generate_sku(store, "FULL-1", GOOD["labelled_large"](), brief, settings)
    assert result.canvas.image.size == (512, 512)
    assert result.frames.count == 48 and result.frames.calls_made < 5
    assert_product_exact(result, store, "FULL-1")
    count, fps, size = video.probe(store.read_bytes(layout.video_mp4("FULL-1")))
    assert (count, fps, size) == (48, 24.0, (512, 512))
    # sidecars a person (and the Dagster layer) reads back
    assert artifacts.load_canvas(store, "FULL-1").placement == result.canvas.placement
    assert artifacts.load_hero(store, "FULL-1").seed == 1


def test_through_s3_the_same_files_as_locally(tiny_pipe, tmp_path, s3_store):
    brief = parse_brief({**BRIEF, "num_frames": 5}, sku="S3-1")
    local = LocalStore(tmp_path)
    generate_sku(local, "S3-1", GOOD["labelled"](), brief, SETTINGS)
    result = generate_sku(s3_store, "S3-1", GOOD["labelled"](), brief, SETTINGS)
    assert_product_exact(result, s3_store, "S3-1")
    keys = local.list()
    assert s3_store.list() == keys
    for key in keys:
        if key != layout.hero_json("S3-1"):  # holds the hero's timing
            assert s3_store.read_bytes(key) == local.read_bytes(key), key


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_photo_names_the_sku_and_leaves_stored_files_alone(name, tiny_pipe, tmp_path):
    store = LocalStore(tmp_path)
    brief = parse_brief({**BRIEF, "num_frames": 3}, sku="KEEP-1")
    generate_sku(store, "KEEP-1", GOOD["labelled"](), brief, SETTINGS)
    before = {k: store.read_bytes(k) for k in store.list()}
    with pytest.raises(ProdvidError, match="KEEP-1"):
        generate_sku(store, "KEEP-1", BAD[name](), brief, SETTINGS)
    assert {k: store.read_bytes(k) for k in store.list()} == before


# --- formats: every preset format and an odd size ------------------------------------------------------

ODD = "1000x562"  # even sides (yuv420p), neither a multiple of 8: no model could paint it as it is
REPRESENTATIVE = ["labelled", "huge", "transparent", "noisy_jpeg"]  # fits at scale 1, scaled down, RGBA, JPEG
FORMAT_BRIEF = {"prompt": "on a wooden table", "seed": 11, "num_frames": 3,
                "camera": {"path": "pan", "distance": [-0.1, -0.05]}}  # fmt: skip


def _at_format(tmp_path, name: str, output: str, preset: str):
    """Photo `name` through the whole chain at format `output` (steps 2, 3 frames), checked exact."""
    store, sku = LocalStore(tmp_path), f"F-{name}"
    settings = Settings(format=output, steps=2).with_preset(preset)
    result = generate_sku(store, sku, GOOD[name](), parse_brief(FORMAT_BRIEF, sku=sku), settings)
    size = formats.parse_format(output).size
    assert result.canvas.image.size == result.hero.image.size == size
    rendered = assert_product_exact(result, store, sku)
    assert assert_overlaps_agree(rendered, result.frames.manifest["frames"]) == 3
    assert (result.video.frame_count, result.video.size) == (3, size)
    return result


@pytest.mark.parametrize("output", ["square", "portrait", "story", "landscape"])
@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_every_preset_format_keeps_the_product_exact(name, output, tiny_pipe, tmp_path):
    result = _at_format(tmp_path, name, output, "tiny")
    assert (result.canvas.placement.scale < 1) == (name == "huge")


@pytest.mark.parametrize("name", sorted(GOOD))
def test_an_odd_size_keeps_the_product_exact(name, tiny_pipe, tmp_path):
    _at_format(tmp_path, name, ODD, "tiny")


@pytest.mark.parametrize(("output", "name"), [("story", "labelled"), (ODD, "noisy_jpeg")])
def test_sdxl_keeps_the_product_exact_at_a_format(output, name, tmp_path):
    result = _at_format(tmp_path, name, output, "tiny-xl")
    assert result.hero.model.split("|")[0] == result.frames.manifest["model"].split("|")[0] == "tiny-xl"


def test_a_story_copies_a_product_that_fits_pixel_for_pixel():
    """At 1080x1920 the labelled bottle fits: placed at scale 1, its photo pixels are the canvas's, so the
    detail the catalog photographed is what every frame shows."""
    photo = GOOD["labelled"]()
    brief = parse_brief({"prompt": "on a table"}, sku="D-1")
    expanded, product = make_canvas(photo, sku="D-1", brief=brief, settings=Settings(format="story"))
    placement = expanded.placement
    assert placement.scale == 1.0 and expanded.image.size == (1080, 1920)
    left, top, right, bottom = placement.canvas_box
    assert (right - left, bottom - top) == (
        placement.source_box[2] - placement.source_box[0], placement.source_box[3] - placement.source_box[1]
    )  # fmt: skip
    source = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB").crop(placement.source_box))
    placed = np.asarray(expanded.image.convert("RGB").crop(placement.canvas_box))
    under = np.asarray(product.crop(placement.canvas_box)) == 255
    assert under.sum() > 0.3 * under.size
    assert np.array_equal(placed[under], source[under])  # every product pixel is the photo's own


@pytest.mark.parametrize("preset", ["tiny", "tiny-xl"])
def test_no_call_is_above_the_models_native_area_at_an_odd_size(preset, tmp_path):
    """1000x562 is no multiple of 8: every call, hero and frames, paints its window resampled to a working
    size of multiples of 8 within the model's native area, and the product stays exact."""
    pipe = Recording(models.load_inpaint_pipeline(preset, device="cpu"))
    native = models.native_size(pipe)
    expanded = canvas.expand(GOOD["labelled_large"](), sku="N-1", size=(1000, 562))
    product = mask.segment(expanded.image, sku="N-1")
    made = hero.generate(pipe, expanded.image, product, sku="N-1", prompt="on a table", steps=2, seed=1)
    assert verify.product_diff(expanded.image, product, made.image).differing == 0
    pan = {"path": "pan", "distance": [-0.3, -0.1]}
    brief = parse_brief({**FORMAT_BRIEF, "num_frames": 4, "camera": pan}, sku="N-1")
    path = brief.camera_path("N-1", (1000, 562))
    settings = frames.FrameSettings(prompt="on a table", steps=2, seed=1, lookahead=16)
    store = LocalStore(tmp_path)
    result = frames.generate(pipe, store, made.image, path, settings, sku="N-1")
    assert result.calls_made >= 2 and len(pipe.sizes) == 1 + result.calls_made
    assert pipe.sizes[0] == resample.working_size((1000, 562), native=native)
    assert all(w * h <= native * native and w % 8 == 0 and h % 8 == 0 for w, h in pipe.sizes), pipe.sizes
    assert all(size in resample.buckets(native) for size in pipe.sizes), pipe.sizes
    rendered = list(frames.load_frames(store, "N-1"))
    for frame, record in zip(rendered, result.manifest["frames"], strict=True):
        diff = verify.product_diff(expanded.image, product, frame, offset=record["offset"])
        assert diff.visible > 0 and diff.differing == 0, (record["index"], diff)
    assert assert_overlaps_agree(rendered, result.manifest["frames"]) == 4
