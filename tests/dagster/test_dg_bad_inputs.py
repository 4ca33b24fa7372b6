"""Bad inputs through Dagster: the sensor reports a bad SKU and keeps ticking; a run with a bad request
fails its first step with the one-line message, before anything of it is stored."""

import json

import dagster as dg
from dgtest import BRIEF, defs, drop_sku
from test_dg_sensor import state_of, tick

from prodvid_core import layout
from prodvid_dagster.partitions import sku_partitions

FAR = {**BRIEF, "camera": {"path": "shifts", "shifts": [[1_000_000_000, 0]] * 5}}


def test_the_sensor_reports_a_bad_sku_and_keeps_ticking(instance, store):
    drop_sku(store, "GOOD-1")
    drop_sku(store, "FAR-2", FAR)
    drop_sku(store, "HUGE-3", {**BRIEF, "camera": {"path": "pan", "distance": [1e400, 0]}})
    store.write_bytes("inbox/LIST-4.png", store.read_bytes("inbox/GOOD-1.png"))
    store.write_bytes("inbox/LIST-4.json", b"[1, 2]")
    inbox_before = {k: store.read_bytes(k) for k in store.list("inbox/")}

    first = tick(instance, None)
    assert [r.partition_key for r in first.run_requests] == ["GOOD-1"]
    rejected = state_of(store, first.cursor)["rejected"]
    assert "SKU FAR-2: camera.shifts makes the frames span" in rejected["inbox/FAR-2.json"]
    assert "SKU HUGE-3: camera.distance[0] must be a finite number" in rejected["inbox/HUGE-3.json"]
    assert "SKU LIST-4: the brief must be a JSON object {...}, got an array" in rejected["inbox/LIST-4.json"]

    second = tick(instance, first.cursor)  # the next tick: nothing new, the rejections still reported
    assert second.run_requests == []
    assert "3 entries rejected" in second.skip_message and "FAR-2" in second.skip_message

    drop_sku(store, "FAR-2", BRIEF)  # fixed: the next tick asks for it
    third = tick(instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["FAR-2"]
    assert {k: store.read_bytes(k) for k in store.list("inbox/") if "FAR-2" not in k} == {
        k: v for k, v in inbox_before.items() if "FAR-2" not in k
    }


def _failure(result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failed) == 1
    return failed[0].step_key, failed[0].event_specific_data.error.message


def test_a_bad_camera_in_run_config_fails_the_first_step_and_stores_nothing(instance, store):
    drop_sku(store, "CUP-1")
    instance.add_dynamic_partitions(sku_partitions.name, ["CUP-1"])
    camera = json.dumps({"path": "pan", "distance": [1e9, 0]})
    result = defs.resolve_job_def("prodvid").execute_in_process(
        partition_key="CUP-1",
        instance=instance,
        run_config={"ops": {"expanded_canvas": {"config": {"camera": camera}}}},
        raise_on_error=False,
    )
    assert not result.success
    step, message = _failure(result)
    assert step == "expanded_canvas"
    assert "SKU CUP-1: camera.distance makes the frames span" in message and "\n" not in message.strip()
    assert [k for k in store.list() if not k.startswith("inbox/")] == []


def test_a_bad_setting_fails_the_first_step_and_stores_nothing(instance, store, monkeypatch):
    drop_sku(store, "CUP-1")
    instance.add_dynamic_partitions(sku_partitions.name, ["CUP-1"])
    monkeypatch.setenv("PRODVID_FRAMES_MODEL", str(store.root / "no-such-model"))
    result = defs.resolve_job_def("prodvid").execute_in_process(
        partition_key="CUP-1", instance=instance, raise_on_error=False
    )
    step, message = _failure(result)
    assert step == "expanded_canvas" and "no-such-model" in message and "cannot be loaded" in message
    assert [k for k in store.list() if not k.startswith("inbox/")] == []
    assert not store.exists(layout.canvas_png("CUP-1"))


def test_no_prompt_anywhere_fails_the_first_step_and_stores_nothing(instance, store):
    """The prompt may come from the brief or from the run config (`SkuConfig`, on the first step); with
    neither, the first step fails, not hero_image after the canvas and mask are stored."""
    drop_sku(store, "CUP-1", {k: v for k, v in BRIEF.items() if k != "prompt"})
    instance.add_dynamic_partitions(sku_partitions.name, ["CUP-1"])
    job = defs.resolve_job_def("prodvid")
    result = job.execute_in_process(partition_key="CUP-1", instance=instance, raise_on_error=False)
    step, message = _failure(result)
    assert step == "expanded_canvas" and "Failure: SKU CUP-1: no prompt" in message
    assert [k for k in store.list() if not k.startswith("inbox/")] == []
    # the same brief with the prompt in the launchpad's config is made
    scene = {"ops": {"expanded_canvas": {"config": {"prompt": "a cup on a table"}}}}
    assert job.execute_in_process(partition_key="CUP-1", instance=instance, run_config=scene).success
