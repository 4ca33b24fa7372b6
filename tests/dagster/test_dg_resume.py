"""Resume: a run whose pipeline fails after frame k, retried by the RetryPolicy and then re-executed from
failure, paints only the missing frames, and its world, manifest and video are byte for byte the ones an
uninterrupted run makes."""

import dagster as dg
import pytest
from dgtest import BRIEF, defs, drop_sku

from prodvid_core import layout
from prodvid_core.frames import read_manifest
from prodvid_core.storage import LocalStore
from prodvid_core.world import Checkpoint
from prodvid_dagster.partitions import sku_partitions
from prodvid_dagster.resources import ModelsResource

SKU = "MUG-9"
NUM_FRAMES = 8
FAIL_AT = 4  # frames 0..FAIL_AT-1 are made (one call per frame after the hero image), then calls fail


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


class FailingPipeline:
    """The real pipeline, failing every call after the first `calls` (over all attempts), as a GPU that
    keeps failing would; attributes are the real pipeline's."""

    def __init__(self, pipe, budget: list[int]):
        self.pipe, self.budget = pipe, budget

    def __call__(self, **kwargs):
        if self.budget[0] <= 0:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        self.budget[0] -= 1
        return self.pipe(**kwargs)

    def __getattr__(self, name):
        return getattr(self.pipe, name)


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

    # the same SKU in another store, with a pipeline that fails after painting frames 1..FAIL_AT-1
    store = LocalStore(tmp_path / "store")
    monkeypatch.setenv("PRODVID_STORE", str(store.root))
    drop_sku(store, SKU, brief)
    real, budget = ModelsResource.pipeline, [FAIL_AT - 1]
    with monkeypatch.context() as patch:
        patch.setattr(
            ModelsResource, "pipeline", lambda self, model: FailingPipeline(real(self, model), budget)
        )
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
    world = store.read_bytes(layout.world_checkpoint(SKU))
    assert Checkpoint.from_png(world).last_call == FAIL_AT - 2  # call c completes frame c + 1
    assert not store.exists(layout.video_mp4(SKU))
    assert store.list(layout.frames_prefix(SKU)) == [
        layout.frames_manifest(SKU),
        layout.world_checkpoint(SKU),
    ]

    # the fault is gone; "Re-execute from failure" on the same instance
    options = dg.ReexecutionOptions.from_failure(failed_run_id, instance)
    # (the UI copies the parent run's tags, partition included; execute_job takes them explicitly)
    with dg.execute_job(job, instance, tags=tags, reexecution_options=options) as resumed:
        assert resumed.success
        steps = {e.step_key for e in resumed.all_events if e.event_type_value == "STEP_SUCCESS"}
        resumed_meta = frames_metadata(instance, resumed.run_id)
        checks = {e.check_name: e.passed for e in resumed.get_asset_check_evaluations()}
    assert "hero_image" not in steps and "frames" in steps and "video" in steps
    # only the calls of the missing frames were made
    assert resumed_meta["frames reused"] == FAIL_AT
    assert resumed_meta["diffusion calls"] == NUM_FRAMES - FAIL_AT

    # byte for byte what the uninterrupted run made: world, manifest and video
    for key in (layout.world_checkpoint(SKU), layout.frames_manifest(SKU), layout.video_mp4(SKU)):
        assert store.read_bytes(key) == reference.read_bytes(key), key
    assert checks == {
        "frames_product_exact": True,
        "frames_not_blank": True,
        "video_decodes": True,
    }
