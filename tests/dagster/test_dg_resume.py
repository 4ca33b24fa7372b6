"""Resume: a run that fails at frame k, retried by the RetryPolicy and then re-executed from failure, paints
only the missing frames, and its video is byte for byte the one an uninterrupted run makes."""

import dagster as dg
import pytest
from dgtest import BRIEF, drop_sku

from prodvid_core import layout
from prodvid_core.frames import FAIL_AT_FRAME_ENV, read_manifest
from prodvid_core.storage import LocalStore
from prodvid_dagster.definitions import defs
from prodvid_dagster.partitions import sku_partitions

SKU = "MUG-9"
NUM_FRAMES = 8
FAIL_AT = 4


def prodvid_job():
    return defs.resolve_job_def("prodvid")


def frames_metadata(instance, run_id: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("frames"), asset_partitions=[SKU]), limit=5
    ).records
    (record,) = [r for r in records if r.run_id == run_id]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def messages(instance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)]


@pytest.fixture
def one_call_per_frame(monkeypatch):
    """lookahead 0: the seed method's one diffusion call per frame, so calls count frames painted."""
    monkeypatch.setenv("PRODVID_LOOKAHEAD", "0")


def test_reexecution_from_failure_paints_only_missing_frames(
    instance, fast_env, one_call_per_frame, tmp_path, monkeypatch
):
    brief = {**BRIEF, "num_frames": NUM_FRAMES}
    job = dg.reconstructable(prodvid_job)
    instance.add_dynamic_partitions(sku_partitions.name, [SKU])
    tags = {"dagster/partition": SKU}

    # an uninterrupted run, in a store of its own
    reference = LocalStore(tmp_path / "reference")
    monkeypatch.setenv("PRODVID_STORE", str(reference.root))
    drop_sku(reference, SKU, brief)
    with dg.execute_job(job, instance, tags=tags) as result:
        assert result.success
        uninterrupted = frames_metadata(instance, result.run_id)
    assert uninterrupted["diffusion calls"] == NUM_FRAMES - 1

    # the same SKU in another store, with a fault injected before frame FAIL_AT is written
    store = LocalStore(tmp_path / "store")
    monkeypatch.setenv("PRODVID_STORE", str(store.root))
    drop_sku(store, SKU, brief)
    monkeypatch.setenv(FAIL_AT_FRAME_ENV, str(FAIL_AT))
    with dg.execute_job(job, instance, tags=tags) as failed:
        assert not failed.success
        failed_run_id = failed.run_id
    logs = messages(instance, failed_run_id)
    retries = [m for m in logs if "requested a retry" in m]
    assert len(retries) == 2, "the RetryPolicy retries `frames` twice"
    # each retry resumed: frames 0..FAIL_AT-1 were found and reused, never painted again
    assert sum(f"frame {FAIL_AT}/{NUM_FRAMES} reused" in m for m in logs) == 2
    assert sum(f"frame {FAIL_AT}/{NUM_FRAMES} made" in m for m in logs) == 1
    stored = read_manifest(store, SKU)
    assert [f["index"] for f in stored["frames"]] == list(range(FAIL_AT))
    mtimes = {k: (store.root / layout.frame_png(SKU, k)).stat().st_mtime_ns for k in range(FAIL_AT)}
    assert not store.exists(layout.video_mp4(SKU))

    # the fault is gone; "Re-execute from failure" on the same instance
    monkeypatch.delenv(FAIL_AT_FRAME_ENV)
    options = dg.ReexecutionOptions.from_failure(failed_run_id, instance)
    # (the UI copies the parent run's tags, partition included; execute_job takes them explicitly)
    with dg.execute_job(job, instance, tags=tags, reexecution_options=options) as resumed:
        assert resumed.success
        steps = {e.step_key for e in resumed.all_events if e.event_type_value == "STEP_SUCCESS"}
        resumed_meta = frames_metadata(instance, resumed.run_id)
        checks = {e.check_name: e.passed for e in resumed.get_asset_check_evaluations()}
    assert "hero_image" not in steps and "frames" in steps and "video" in steps
    assert resumed_meta["frames reused"] == FAIL_AT
    # frame FAIL_AT's call was made and checkpointed before the fault, so only the frames after it are painted
    assert resumed_meta["diffusion calls"] == NUM_FRAMES - 1 - FAIL_AT
    assert {k: (store.root / layout.frame_png(SKU, k)).stat().st_mtime_ns for k in range(FAIL_AT)} == mtimes

    # byte for byte what the uninterrupted run made
    for k in range(NUM_FRAMES):
        assert store.read_bytes(layout.frame_png(SKU, k)) == reference.read_bytes(layout.frame_png(SKU, k))
    assert store.read_bytes(layout.video_mp4(SKU)) == reference.read_bytes(layout.video_mp4(SKU))
    assert checks == {
        "frames_product_exact": True,
        "frames_not_blank": True,
        "video_decodes": True,
    }
