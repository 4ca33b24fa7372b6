"""A single-run backfill makes many SKUs in one process, models loaded once, the files of one run each."""

import json

import dagster as dg
from dgtest import BRIEF, defs, drop_sku

from prodvid_core import models
from prodvid_core.storage import LocalStore
from prodvid_dagster.partitions import sku_partitions

SKUS = ["CUP-1", "CUP-2", "CUP-3"]
BRIEFS = {
    "CUP-1": BRIEF,
    "CUP-2": {**BRIEF, "prompt": "a cup on a marble counter", "seed": 2},
    # another camera, whose calls' windows have another size (in the same working-size bucket)
    "CUP-3": {**BRIEF, "seed": 3, "num_frames": 4, "camera": {"path": "pan", "distance": [-40, 0]}},
}
# The tags Dagster's backfill daemon puts on the one run of a single-run backfill.
RANGE_TAGS = {"dagster/asset_partition_range_start": SKUS[0], "dagster/asset_partition_range_end": SKUS[-1]}


def contents(store: LocalStore) -> dict[str, object]:
    """Every stored file but the inbox (no stored file holds a wall-clock timing)."""
    out = {}
    for key in store.list():
        if key.startswith("inbox/"):
            continue
        data = store.read_bytes(key)
        if key.endswith(".json"):
            data = json.loads(data)
        out[key] = data
    return out


def count_model_loads(monkeypatch) -> list[str]:
    """Record every real model load (cache misses of the core's process-wide pipeline cache)."""
    loads: list[str] = []
    real = models._from_pretrained

    def counting(model, *args, **kwargs):
        loads.append(model)
        return real(model, *args, **kwargs)

    models.clear_cache()
    monkeypatch.setattr(models, "_from_pretrained", counting)
    return loads


def run_backfill(instance, store: LocalStore, monkeypatch) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    """Drop the three SKUs into `store`'s inbox and make them in one run, as a single-run backfill does;
    the result, and the models loaded meanwhile."""
    monkeypatch.setenv("PRODVID_STORE", str(store.root))
    for sku in SKUS:
        drop_sku(store, sku, BRIEFS[sku])
    loads = count_model_loads(monkeypatch)
    result = defs.resolve_job_def("prodvid").execute_in_process(instance=instance, tags=RANGE_TAGS)
    assert result.success
    return result, loads


def test_single_run_backfill_matches_separate_runs(instance, fast_env, tmp_path, monkeypatch):
    job = defs.resolve_job_def("prodvid")
    instance.add_dynamic_partitions(sku_partitions.name, SKUS)

    # one run per SKU, in its own store
    separate = LocalStore(tmp_path / "separate")
    monkeypatch.setenv("PRODVID_STORE", str(separate.root))
    for sku in SKUS:
        drop_sku(separate, sku, BRIEFS[sku])
        assert job.execute_in_process(partition_key=sku, instance=instance).success

    # all three SKUs in one run, as a single-run backfill launches it
    backfill = LocalStore(tmp_path / "backfill")
    result, loads = run_backfill(instance, backfill, monkeypatch)

    # one process, one step per asset for all SKUs, the model loaded once
    steps = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
    assert steps.count("frames") == 1 and steps.count("hero_image") == 1
    assert loads == [models.TINY_PRESET]
    events = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    materialized = {(m.asset_key.path[-1], m.partition) for m in events}
    assert materialized == {
        (a, s) for a in ("expanded_canvas", "mask", "hero_image", "frames", "video") for s in SKUS
    }

    # byte for byte the files of the separate runs
    assert contents(backfill) == contents(separate)

    # each SKU's own metadata, and its own passed check evaluation
    frames_meta = {m.partition: m.metadata for m in events if m.asset_key == dg.AssetKey("frames")}
    assert {s: m["frames"].value for s, m in frames_meta.items()} == {"CUP-1": 6, "CUP-2": 6, "CUP-3": 4}
    per_sku = [e for e in result.get_asset_check_evaluations() if e.partition is not None]
    assert {(e.check_name, e.partition) for e in per_sku} == {
        (c, s)
        for c in ("hero_product_exact", "frames_product_exact", "frames_not_blank", "video_decodes")
        for s in SKUS
    }
    assert all(e.passed for e in per_sku)
    # as the UI sees them: per SKU, the latest evaluation passed and targets the latest materialization
    check_keys = [dg.AssetCheckKey(e.asset_key, e.check_name) for e in per_sku]
    infos = instance.event_log_storage.get_asset_check_partition_info(list(set(check_keys)))
    latest = [i for i in infos if i.latest_planned_run_id == result.run_id and i.partition_key]
    assert len(latest) == 12
    for info in latest:
        assert info.latest_execution_status.value == "SUCCEEDED"
        assert info.latest_target_materialization_storage_id == info.latest_materialization_storage_id
    assert all(e.description.startswith(f"SKU {e.partition}:") for e in per_sku)


def test_batched_backfill_shares_diffusion_calls_and_keeps_products_exact(
    instance, fast_env, tmp_path, monkeypatch
):
    instance.add_dynamic_partitions(sku_partitions.name, SKUS)
    monkeypatch.setenv("PRODVID_BATCH_SIZE", "3")
    store = LocalStore(tmp_path / "batched")
    result, loads = run_backfill(instance, store, monkeypatch)
    assert loads == [models.TINY_PRESET]

    # one hero call for the three SKUs; their frames calls too: CUP-3's camera makes windows of another size
    # (328x256, not 336x344), which the model paints in the same working size (bucket), so they share it
    events = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    hero_meta = {m.partition: m.metadata for m in events if m.asset_key == dg.AssetKey("hero_image")}
    assert {s: m["batch"].value for s, m in hero_meta.items()} == {s: ", ".join(SKUS) for s in SKUS}
    for sku in SKUS:
        assert json.loads(store.read_bytes(f"hero_image/{sku}.json"))["batch"] == SKUS
    calls = {sku: json.loads(store.read_bytes(f"frames/{sku}/manifest.json"))["calls"] for sku in SKUS}
    assert len(calls["CUP-1"]) == len(calls["CUP-2"]) == len(calls["CUP-3"]) >= 1
    assert all(c["batch"] == SKUS for c in calls["CUP-1"] + calls["CUP-2"] + calls["CUP-3"])
    sizes = {sku: {(c["window"][2] - c["window"][0], c["window"][3] - c["window"][1]) for c in calls[sku]}
             for sku in SKUS}  # fmt: skip
    assert sizes["CUP-1"] == sizes["CUP-2"] != sizes["CUP-3"]
    frames_meta = {m.partition: m.metadata for m in events if m.asset_key == dg.AssetKey("frames")}
    assert {s: m["painted with"].value for s, m in frames_meta.items()} == {
        "CUP-1": "CUP-2, CUP-3", "CUP-2": "CUP-1, CUP-3", "CUP-3": "CUP-1, CUP-2"
    }  # fmt: skip

    # the blocking exactness checks ran per SKU and passed
    per_sku = [e for e in result.get_asset_check_evaluations() if e.partition is not None]
    assert len(per_sku) == 12 and all(e.passed for e in per_sku)


def test_bad_sku_in_a_backfill_fails_alone_and_the_others_are_run_again(instance, store, tmp_path):
    """A bad SKU fails the shared first step before anything is stored; the remainder sensor requests the
    SKUs that passed, cut into stretches of the partition order by the bad one, and those runs make them."""
    skus = ["MUG-1", "MUG-2", "MUG-3", "MUG-4"]
    short = {**BRIEF, "num_frames": 2}
    briefs = {sku: short for sku in skus} | {
        "MUG-2": {**short, "camera": {"path": "pan", "distance": [1e9, 0]}}
    }
    for sku in skus:
        drop_sku(store, sku, briefs[sku])
    instance.add_dynamic_partitions(sku_partitions.name, skus)
    job = defs.resolve_job_def("prodvid")
    tags = {"dagster/asset_partition_range_start": "MUG-1", "dagster/asset_partition_range_end": "MUG-4"}
    failed = job.execute_in_process(instance=instance, tags={**tags, "team": "catalog"}, raise_on_error=False)

    # 1. the first step failed naming the bad SKU and its field, and nothing of any SKU was stored
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "expanded_canvas"
    lines = failure.step_failure_data.user_failure_data.description.splitlines()
    assert lines[0].startswith("SKU MUG-2: ") and "distance" in lines[0]
    assert "MUG-1, MUG-3, MUG-4" in lines[1]
    assert [k for k in store.list() if not k.startswith("inbox/")] == []

    # 2. the sensor asks for MUG-1 alone and MUG-3..MUG-4 as one range, with the failed run's own tags
    run = instance.get_run_by_id(failed.run_id)
    [run_failure] = [e for e in failed.all_events if e.event_type_value == "PIPELINE_FAILURE"]
    context = dg.build_run_status_sensor_context(
        sensor_name="backfill_remainder_sensor",
        dagster_event=run_failure,
        dagster_instance=instance,
        dagster_run=run,
    ).for_run_failure()
    requests = list(defs.resolve_sensor_def("backfill_remainder_sensor")(context))
    ranges = [
        (
            r.partition_key,
            r.tags.get("dagster/asset_partition_range_start"),
            r.tags.get("dagster/asset_partition_range_end"),
        )
        for r in requests
    ]
    assert ranges == [("MUG-1", None, None), (None, "MUG-3", "MUG-4")]
    assert all(
        r.tags["team"] == "catalog" and r.tags["prodvid/remainder_of"] == failed.run_id for r in requests
    )
    assert len({r.run_key for r in requests}) == 2

    # 3. run as the daemon would: every SKU but the bad one is made
    for r in requests:
        run_tags = r.tags if r.partition_key is None else {**r.tags, "dagster/partition": r.partition_key}
        assert job.execute_in_process(instance=instance, tags=run_tags, run_config=r.run_config).success
    made = {k.split("/")[1].split(".")[0] for k in store.list() if k.startswith("video/")}
    assert made == {"MUG-1", "MUG-3", "MUG-4"}
