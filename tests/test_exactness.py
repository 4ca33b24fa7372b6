"""The core promise, end to end: for every kind of photo a catalog has, product pixels are never altered.

Each photo goes through the real chain (canvas → mask → hero → frames → video) with the tiny models; the
hero image and every frame must show the reference (canvas under mask) exactly, difference 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from photos import BAD, GOOD
from prodvid_core import artifacts, frames, layout, verify, video
from prodvid_core.brief import parse_brief
from prodvid_core.errors import ProdvidError
from prodvid_core.run import Settings, generate_sku
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
    for frame, record in zip(frames.load_frames(store, sku), result.frames.manifest["frames"], strict=True):
        assert frame.shape[:2] == product.shape
        diff = verify.product_diff(result.canvas.image, result.mask, frame, offset=record["offset"])
        assert diff.visible > 0 and diff.differing == 0, (record["index"], diff)


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
