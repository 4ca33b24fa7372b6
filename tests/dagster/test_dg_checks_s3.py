"""Checks that catch a tampered artifact and name the SKU; the whole chain on the real S3-protocol server."""

import io
import urllib.request
import uuid

import dagster as dg
import numpy as np
import pytest
from dgtest import BRIEF, defs, drop_sku
from PIL import Image

from prodvid_core import layout, video
from prodvid_core.encoding import png_bytes
from prodvid_core.frames import load_frames
from prodvid_core.storage import S3Store
from prodvid_core.world import Checkpoint
from prodvid_dagster.defs.checks import CHECKS
from prodvid_dagster.partitions import sku_partitions

SKU = "JAR-2"
check_job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks(*CHECKS))
defs_with_check_job = dg.Definitions.merge(defs, dg.Definitions(jobs=[check_job]))


def run(instance, job: str, sku: str) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(sku_partitions.name, [sku])
    # by tag: a checks-only job has no selected asset for execute_in_process to take partitions from
    return defs_with_check_job.resolve_job_def(job).execute_in_process(
        tags={"dagster/partition": sku}, instance=instance, raise_on_error=False
    )


def evaluations(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _first_product_pixel(store) -> tuple[int, int]:
    product = np.asarray(Image.open(io.BytesIO(store.read_bytes(layout.mask_png(SKU))))) == 255
    ys, xs = np.nonzero(product)
    return int(ys[0]), int(xs[0])


def tamper_hero(store):
    hero = np.array(Image.open(io.BytesIO(store.read_bytes(layout.hero_png(SKU)))).convert("RGB"))
    y, x = _first_product_pixel(store)
    hero[y, x] = 255 - hero[y, x]
    store.write_bytes(layout.hero_png(SKU), png_bytes(hero))


def _tamper_world(store, change) -> None:
    """Change the stored world canvas the frames are rendered from; it still reads back as a checkpoint."""
    checkpoint = Checkpoint.from_png(store.read_bytes(layout.world_checkpoint(SKU)))
    change(checkpoint.world)
    store.write_bytes(layout.world_checkpoint(SKU), checkpoint.to_png())


def tamper_world_product(store):
    """One product pixel of the world (frame 0's coordinates are the world's): every frame shows it."""
    y, x = _first_product_pixel(store)

    def flip(world):
        world.pixels[y - world.bounds[1], x - world.bounds[0]] ^= 1

    _tamper_world(store, flip)


def blank_world(store):
    _tamper_world(store, lambda world: world.pixels.fill(0))


def short_video(store):
    store.write_bytes(layout.video_mp4(SKU), video.encode(list(load_frames(store, SKU))[:3], fps=6).data)


@pytest.mark.parametrize(
    ("tamper", "check", "what", "also_failing"),
    [
        (tamper_hero, "hero_product_exact", "1 of", set()),
        (tamper_world_product, "frames_product_exact", "frame 3: 1 pixels", set()),
        (blank_world, "frames_not_blank", "frame 2 is", {"frames_product_exact"}),  # black frames hide it
        (short_video, "video_decodes", "decodes to 3 frames", set()),
    ],
)
def test_a_tampered_artifact_fails_its_check_naming_the_sku(
    instance, store, tamper, check, what, also_failing
):
    drop_sku(store, SKU)
    assert run(instance, "prodvid", SKU).success
    assert all(e.passed for e in evaluations(run(instance, "checks_only", SKU)).values())

    tamper(store)
    result = evaluations(run(instance, "checks_only", SKU))
    failed = {name for name, e in result.items() if not e.passed}
    assert failed == {check} | also_failing, {n: e.description for n, e in result.items()}
    assert result[check].partition == SKU
    assert f"SKU {SKU}" in result[check].description and what in result[check].description


def test_whole_chain_on_s3(instance, fast_env, monkeypatch, s3_endpoint):
    bucket = f"prodvid-dg-{uuid.uuid4().hex[:10]}"
    s3 = S3Store(bucket, "catalog", endpoint_url=s3_endpoint)
    s3.client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("PRODVID_STORE", f"s3://{bucket}/catalog")
    monkeypatch.setenv("PRODVID_S3_ENDPOINT_URL", s3_endpoint)
    drop_sku(s3, SKU)

    result = run(instance, "prodvid", SKU)
    assert result.success
    assert all(e.passed for e in evaluations(result).values())
    keys = set(s3.list())
    expected = {
        layout.canvas_png(SKU),
        layout.canvas_json(SKU),
        layout.mask_png(SKU),
        layout.hero_png(SKU),
        layout.hero_json(SKU),
        layout.frames_manifest(SKU),
        layout.video_mp4(SKU),
        layout.video_json(SKU),
        layout.world_checkpoint(SKU),
    }
    assert keys >= expected
    assert not [k for k in keys if k.startswith("frames/") and k[-9:-4].isdigit()]  # frames are rendered
    assert video.probe(s3.read_bytes(layout.video_mp4(SKU)))[0] == BRIEF["num_frames"]
    hero_meta = result.asset_materializations_for_node("hero_image")[0].metadata
    assert hero_meta["storage"].value == f"s3://{bucket}/catalog/{layout.hero_png(SKU)}"
    # the links are presigned URLs (7 days by default) that a plain HTTP client opens
    video_meta = result.asset_materializations_for_node("video")[0].metadata
    for url, key in (
        (hero_meta["full size"].value, layout.hero_png(SKU)),
        (video_meta["play"].value, layout.video_mp4(SKU)),
    ):
        assert "X-Amz-Expires=604800" in url and "X-Amz-Signature=" in url
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == s3.read_bytes(key)
