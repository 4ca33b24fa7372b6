"""The whole chain for one SKU through the shipped definitions: the files, green checks, metadata."""

import io
import json
import re

import dagster as dg
import numpy as np
import pytest
from dgtest import BRIEF, defs, drop_sku, inbox_tick
from PIL import Image

from prodvid_core import artifacts, layout
from prodvid_core.frames import load_frames, read_manifest
from prodvid_core.storage import LocalStore
from prodvid_core.verify import product_diff
from prodvid_core.video import probe
from prodvid_dagster.partitions import sku_partitions

SKU = "BOTTLE-1"
EXPECTED_KEYS = {
    "expanded_canvas/BOTTLE-1.png",
    "expanded_canvas/BOTTLE-1.json",
    "mask/BOTTLE-1.png",
    "hero_image/BOTTLE-1.png",
    "hero_image/BOTTLE-1.json",
    "frames/BOTTLE-1/manifest.json",
    "frames/BOTTLE-1/world.png",  # the frames are rendered from it: no frame PNGs unless kept
    "frames/BOTTLE-1/contact_sheet.png",  # what the frames' link opens in a browser
    "video/BOTTLE-1.mp4",
    "video/BOTTLE-1.json",
}


def run_sku(instance, sku, **kwargs) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(sku_partitions.name, [sku])
    return defs.resolve_job_def("prodvid").execute_in_process(partition_key=sku, instance=instance, **kwargs)


def check_results(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def metadata(instance, asset: str, sku: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[sku]), limit=1
    ).records
    assert records, f"no materialization of {asset} for {sku}"
    assert event is not None
    return records[0].asset_materialization.metadata


def test_one_sku_end_to_end_local(instance, store):
    drop_sku(store, SKU)
    result = run_sku(instance, SKU)
    assert result.success

    # every file of the layout, no pickles, nothing else written for the SKU
    written = {k for k in store.list() if not k.startswith("inbox/") and SKU in k}
    assert written == EXPECTED_KEYS

    # the files are what they say: hero exact under the mask, video decodes to the manifest
    canvas = np.asarray(artifacts.load_canvas(store, SKU).image.convert("RGB"))
    product = np.asarray(artifacts.load_mask(store, SKU)) == 255
    hero = np.asarray(artifacts.load_hero(store, SKU).image)
    assert canvas.shape == (256, 256, 3)
    assert np.array_equal(hero[product], canvas[product])
    manifest = read_manifest(store, SKU)
    assert len(manifest["frames"]) == BRIEF["num_frames"] and manifest["fps"] == BRIEF["fps"]
    assert manifest["prompt"] == BRIEF["prompt"] and manifest["seed"] == BRIEF["seed"]
    assert probe(store.read_bytes(layout.video_mp4(SKU))) == (BRIEF["num_frames"], BRIEF["fps"], (256, 256))
    # the contact sheet shows every frame of this short video, 4 a row, at its own size (never enlarged)
    sheet = np.asarray(Image.open(io.BytesIO(store.read_bytes(layout.contact_sheet_png(SKU)))))
    rendered = list(load_frames(store, SKU))
    assert sheet.shape == (512, 1024, 3) and len(rendered) == 6
    for k, frame in enumerate(rendered):
        row, column = divmod(k, 4)
        assert np.array_equal(sheet[row * 256 : (row + 1) * 256, column * 256 : (column + 1) * 256], frame)

    # all four checks ran against the SKU's partition and passed
    checks = check_results(result)
    assert set(checks) == {"hero_product_exact", "frames_product_exact", "frames_not_blank", "video_decodes"}
    for name, evaluation in checks.items():
        assert evaluation.passed, f"{name}: {evaluation.description}"
        assert evaluation.partition == SKU
        assert SKU in evaluation.description

    # metadata a person wants in the UI, per partition
    hero_meta = metadata(instance, "hero_image", SKU)
    preview = hero_meta["preview"].value
    assert preview.startswith("![preview](data:image/webp;base64,") and len(preview) < 1000
    assert hero_meta["seed"].value == BRIEF["seed"] and hero_meta["steps"].value == 2
    assert hero_meta["model"].value == "tiny (scheduler: the checkpoint's, device: cpu, dtype: automatic)"
    assert hero_meta["storage"].value == store.url(layout.hero_png(SKU))
    frames_meta = metadata(instance, "frames", SKU)
    assert frames_meta["frames"].value == BRIEF["num_frames"]
    assert frames_meta["diffusion calls"].value >= 1 and frames_meta["frames reused"].value == 0
    for name in ("first frame", "last frame"):
        assert len(frames_meta[name].value) < 1000
    video_meta = metadata(instance, "video", SKU)
    assert video_meta["frames"].value == BRIEF["num_frames"] and video_meta["fps"].value == BRIEF["fps"]
    assert video_meta["reused"].value is False


def test_rerun_reuses_hero_frames_and_video(instance, store):
    drop_sku(store, SKU)
    assert run_sku(instance, SKU).success
    before = {k: store.read_bytes(k) for k in store.list() if not k.startswith("inbox/")}
    assert run_sku(instance, SKU).success
    after = {k: store.read_bytes(k) for k in store.list() if not k.startswith("inbox/")}
    assert after == before
    assert metadata(instance, "hero_image", SKU)["reused"].value is True
    frames_meta = metadata(instance, "frames", SKU)
    assert frames_meta["diffusion calls"].value == 0
    assert frames_meta["frames reused"].value == BRIEF["num_frames"]
    assert metadata(instance, "video", SKU)["reused"].value is True


def test_keep_frames_stores_the_rendered_frames_as_pngs(instance, store):
    drop_sku(store, SKU)
    config = {"resources": {"models": {"config": {"keep_frames": True}}}}
    assert run_sku(instance, SKU, run_config=config).success
    pngs = [f"frames/{SKU}/{k:05d}.png" for k in range(BRIEF["num_frames"])]
    assert set(store.list(f"frames/{SKU}/")) == {
        *pngs,
        layout.frames_manifest(SKU),
        layout.world_checkpoint(SKU),
        layout.contact_sheet_png(SKU),
    }
    for key, frame in zip(pngs, load_frames(store, SKU), strict=True):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(store.read_bytes(key)))), frame)
    assert all(e.passed for e in check_results(run_sku(instance, SKU, run_config=config)).values())


def test_launchpad_config_overrides_the_brief(instance, store):
    drop_sku(store, SKU)
    config = {
        "ops": {
            "expanded_canvas": {
                "config": {
                    "prompt": "a bottle in a forest",
                    "seed": 3,
                    "camera": "drift",
                    "num_frames": 4,
                    "fps": 8,
                }
            }
        }
    }
    assert run_sku(instance, SKU, run_config=config).success
    hero_meta = json.loads(store.read_bytes(layout.hero_json(SKU)))
    assert (hero_meta["prompt"], hero_meta["seed"]) == ("a bottle in a forest", 3)
    manifest = read_manifest(store, SKU)
    assert (len(manifest["frames"]), manifest["fps"], manifest["seed"]) == (4, 8, 3)


def test_format_and_placement_in_the_run_config_win_over_the_brief(instance, store):
    drop_sku(store, SKU, {**BRIEF, "format": "256x320", "anchor": "center"})
    config = {
        "ops": {
            "expanded_canvas": {
                "config": {
                    "format": "256x448",
                    "anchor": "left-third",
                    "margin": 0.1,
                    "seconds": 0.5,
                    "fps": 8,
                }
            },
        }
    }
    result = run_sku(instance, SKU, run_config=config)
    assert result.success
    assert all(e.passed for e in check_results(result).values())
    canvas = artifacts.load_canvas(store, SKU)
    assert canvas.image.size == (256, 448)
    product = np.asarray(artifacts.load_mask(store, SKU)) == 255
    cols = np.flatnonzero(product.any(axis=0))
    # left third: too wide to centre on x = 85 inside the 26 px margin, so it rests against the margin
    assert 26 <= cols[0] <= 30 and (cols[0] + cols[-1] + 1) / 2 < 128
    hero = np.asarray(artifacts.load_hero(store, SKU).image)
    assert np.array_equal(hero[product], np.asarray(canvas.image.convert("RGB"))[product])
    assert probe(store.read_bytes(layout.video_mp4(SKU))) == (
        5,
        8,
        (256, 448),
    )  # 0.5 s at 8 fps, plus frame 0
    canvas_meta = metadata(instance, "expanded_canvas", SKU)
    assert (canvas_meta["format"].value, canvas_meta["anchor"].value) == ("256x448", "left-third")


def test_a_story_brief_in_the_inbox_makes_a_1080x1920_video(instance, store):
    # a photo and a story brief land in the inbox; the sensor asks for the run, with the brief as run config
    brief = {"prompt": "a bottle on a wooden table", "seed": 7, "format": "story", "num_frames": 3, "fps": 12}
    drop_sku(store, SKU, brief)
    tick = inbox_tick(instance)
    (request,) = tick.run_requests
    assert request.partition_key == SKU
    assert request.run_config["ops"]["expanded_canvas"]["config"]["format"] == "story"

    # the run materializes the five assets with that config; all four checks pass at the output size
    result = defs.resolve_job_def("prodvid").execute_in_process(
        run_config=request.run_config, partition_key=SKU, instance=instance, tags=request.tags
    )
    assert result.success
    assert {e.asset_key.path[0] for e in result.get_asset_materialization_events()} == {
        "expanded_canvas", "mask", "hero_image", "frames", "video",
    }  # fmt: skip
    checks = check_results(result)
    assert set(checks) == {"hero_product_exact", "frames_product_exact", "frames_not_blank", "video_decodes"}
    for name, evaluation in checks.items():
        assert evaluation.passed, f"{name}: {evaluation.description}"
    assert "all 3 frames" in checks["frames_product_exact"].description
    assert "1080x1920, as expected" in checks["video_decodes"].description

    # canvas and hero image at the output size, the product exact in the hero image and every frame
    canvas = artifacts.load_canvas(store, SKU).image
    hero = artifacts.load_hero(store, SKU).image
    assert canvas.size == hero.size == (1080, 1920)
    product = np.asarray(artifacts.load_mask(store, SKU)) == 255
    assert product.any()
    canvas_rgb = np.asarray(canvas.convert("RGB"))
    assert np.array_equal(np.asarray(hero)[product], canvas_rgb[product])
    manifest = read_manifest(store, SKU)
    visible = 0
    for record, frame in zip(manifest["frames"], load_frames(store, SKU), strict=True):
        assert frame.shape == (1920, 1080, 3)
        diff = product_diff(canvas, Image.fromarray(product), frame, offset=tuple(record["offset"]))
        assert diff.exact and diff.visible > 0, f"frame {record['index']}"
        visible += diff.visible
    # the checks compared the same pixels, at the output size
    assert checks["hero_product_exact"].metadata["product pixels"].value == product.sum()
    assert checks["frames_product_exact"].metadata["pixels checked"].value == visible

    # the MP4 at the output size and the brief's fps; frames/ holds the world and manifest, no frame PNGs
    assert probe(store.read_bytes(layout.video_mp4(SKU))) == (3, 12, (1080, 1920))
    assert set(store.list(f"frames/{SKU}/")) == {
        layout.frames_manifest(SKU),
        layout.world_checkpoint(SKU),
        layout.contact_sheet_png(SKU),
    }

    # what a person sees in the UI: the format and sizes, previews small enough to render in place
    canvas_meta = metadata(instance, "expanded_canvas", SKU)
    assert (canvas_meta["format"].value, canvas_meta["size"].value) == ("story", [1080, 1920])
    assert canvas_meta["anchor"].value == "bottom"  # the default: the brief sets none
    assert canvas_meta["placement"].value == artifacts.load_canvas(store, SKU).metadata()
    hero_meta = metadata(instance, "hero_image", SKU)
    frames_meta = metadata(instance, "frames", SKU)
    for preview in (hero_meta["preview"], frames_meta["first frame"], frames_meta["last frame"]):
        assert preview.value.startswith("![preview](data:image/webp;base64,") and len(preview.value) < 1000
    assert hero_meta["size"].value == frames_meta["size"].value == [1080, 1920]
    assert frames_meta["model size"].value == 256  # the tiny preset's native side, not the output's
    assert frames_meta["diffusion calls"].value == len(manifest["calls"]) >= 1
    for left, top, right, bottom in (call["window"] for call in manifest["calls"]):
        assert f"{right - left}x{bottom - top} at " in frames_meta["windows"].value
    painted_at = re.findall(r" at (\d+)x(\d+) ", frames_meta["windows"].value)
    assert painted_at and all(int(w) * int(h) <= 256 * 256 for w, h in painted_at)
    assert metadata(instance, "video", SKU)["size"].value == [1080, 1920]


def test_bad_photo_fails_naming_the_sku_without_retries(instance, store):
    store.write_bytes(layout.inbox_photo(SKU, ".png"), b"not an image")
    store.write_bytes(layout.inbox_brief(SKU), json.dumps(BRIEF).encode())
    result = run_sku(instance, SKU, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "expanded_canvas"
    assert SKU in failure.step_failure_data.error.message
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


def test_a_setting_that_cannot_work_fails_the_first_step_once_naming_it(instance, store, monkeypatch):
    drop_sku(store, SKU)
    monkeypatch.setenv("PRODVID_STEPS", "0")
    result = run_sku(instance, SKU, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "expanded_canvas"
    assert "`steps` has to be 1 or more but is 0" in failure.step_failure_data.error.message
    assert "PRODVID_STEPS" in failure.step_failure_data.error.message
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert not store.list("hero_image/")


@pytest.mark.parametrize("preview_source", ["noise"])
def test_preview_stays_under_the_inline_limit(preview_source):
    from prodvid_dagster.defs.assets import _preview

    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    assert len(_preview(Image.fromarray(noise)).value) < 1000


def test_a_store_location_in_the_run_config_is_the_io_managers_too(instance, store, tmp_path):
    """A run configured with another store (the launchpad's `resources.store.config.location`) keeps every
    file there: the IO manager, which stores the canvas and mask and confirms the rest, uses that store too,
    not $PRODVID_STORE (it did not, and the run looked for its hero image in the wrong store)."""
    other = LocalStore(tmp_path / "other")
    drop_sku(other, SKU)
    config = {"resources": {"store": {"config": {"location": str(other.root)}}}}
    selection = [dg.AssetKey("expanded_canvas"), dg.AssetKey("mask")]  # no model needed
    assert run_sku(instance, SKU, run_config=config, asset_selection=selection).success
    assert {layout.canvas_png(SKU), layout.canvas_json(SKU), layout.mask_png(SKU)} <= set(other.list())
    assert store.list() == []
