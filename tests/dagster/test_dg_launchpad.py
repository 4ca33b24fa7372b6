"""A SKU made from the launchpad alone: its brief and photo in the run config (`SkuConfig` on the first step);
the photo checked, then copied into the inbox; the run tagged like a sensor run; and a user mistake failing
its step with its one line, no stack of prodvid's own frames, no chained exception.

Only the first step runs (the rest of the chain is what test_dg_materialize covers), so these are quick."""

import dagster as dg
import pytest
from dgtest import defs

from prodvid_core import layout
from prodvid_core.brief import parse_brief
from prodvid_core.sample import sample_photo_bytes
from prodvid_dagster.partitions import sku_partitions

FIRST_STEP = [dg.AssetKey("expanded_canvas")]


def launch(instance, sku: str, config: dict, selection=FIRST_STEP) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(sku_partitions.name, [sku])
    return defs.resolve_job_def("prodvid").execute_in_process(
        partition_key=sku,
        instance=instance,
        run_config={"ops": {"expanded_canvas": {"config": config}}},
        asset_selection=selection,
        raise_on_error=False,
    )


def failure(result: dg.ExecuteInProcessResult) -> dg.DagsterEvent:
    (failed,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return failed


def test_the_launchpad_scaffolds_the_fields_a_new_sku_needs():
    """ "Scaffold all default config" writes the job's default config (what the webserver serves as
    `rootDefaultYaml`): the four fields of a new SKU, on the first step, and nothing else."""
    from dagster._core.snap.snap_to_yaml import default_values_yaml_from_type_snap

    snap = defs.resolve_job_def("prodvid").get_job_snapshot()
    root = snap.config_schema_snapshot.get_config_snap(snap.mode_def_snaps[0].root_config_key)
    scaffold = default_values_yaml_from_type_snap(snap.config_schema_snapshot, root)
    fields = ["camera:", "''", "format:", "''", "photo:", "''", "prompt:", "''"]
    assert scaffold.split() == ["ops:", "expanded_canvas:", "config:", *fields]


def test_a_photo_by_path_is_checked_copied_into_the_inbox_and_the_run_tagged(instance, store, tmp_path):
    photo = sample_photo_bytes(fmt="PNG", size=(300, 400))
    (tmp_path / "upload.png").write_bytes(photo)
    config = {
        "prompt": "a bottle on a beach",
        "format": "256x320",
        "camera": "pan",
        "photo": str(tmp_path / "upload.png"),
    }
    result = launch(instance, "NEW-1", config)
    assert result.success
    assert store.read_bytes(layout.inbox_photo("NEW-1", ".png")) == photo
    assert store.exists(layout.canvas_png("NEW-1"))
    brief = parse_brief(
        {"prompt": "a bottle on a beach", "format": "256x320", "camera": {"path": "pan"}}, sku="NEW-1"
    )
    tags = instance.get_run_by_id(result.run_id).tags
    assert (tags["prodvid/sku"], tags["prodvid/brief"], tags["prodvid/gpu"]) == (
        "NEW-1",
        brief.checksum(),
        "1",
    )

    # the same photo again: kept; another one: refused, and the inbox's photo is left as it was
    assert launch(instance, "NEW-1", config).success
    (tmp_path / "other.png").write_bytes(sample_photo_bytes(fmt="PNG", size=(320, 400)))
    result = launch(instance, "NEW-1", {**config, "photo": str(tmp_path / "other.png")})
    message = failure(result).step_failure_data.error.message
    assert f"already holds another photo, {store.url(layout.inbox_photo('NEW-1', '.png'))}" in message
    assert store.read_bytes(layout.inbox_photo("NEW-1", ".png")) == photo


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("junk.png", b"not an image", "SKU BAD-1: "),
        ("photo.gif", b"GIF89a", "must end in .png, .jpg, .jpeg, .webp, got '.gif'"),
        ("missing.png", None, "cannot read config `photo`"),
    ],
)
def test_a_bad_photo_fails_the_first_step_and_never_reaches_the_inbox(
    instance, store, tmp_path, name, data, expected
):
    if data is not None:
        (tmp_path / name).write_bytes(data)
    result = launch(instance, "BAD-1", {"prompt": "a cup", "photo": str(tmp_path / name)})
    assert not result.success and expected in failure(result).step_failure_data.error.message
    assert store.list() == []


def test_a_user_mistake_fails_with_its_line_and_no_stack_of_prodvids_frames(instance, store):
    """The step failure the UI shows: the one line, no chained exception (`from None`), and no frame of
    prodvid_core in its stack: only Dagster's and the asset's own."""
    result = launch(instance, "NONE-1", {"prompt": "a cup"})
    error = failure(result).step_failure_data.error
    expected = f"SKU NONE-1: the inbox holds no photo; put exactly one of {store.url('inbox/NONE-1.png')}"
    assert expected in error.message and error.message.strip().count("\n") == 0
    assert error.cause is None and error.context is None
    assert not [frame for frame in error.stack if "prodvid_core" in frame]
    assert failure(result).step_failure_data.user_failure_data.description.startswith("SKU NONE-1: ")


def test_an_s3_photo_is_copied_into_the_s3_inbox_and_errors_name_the_s3_location(
    instance, fast_env, monkeypatch, s3_store
):
    monkeypatch.setenv("PRODVID_STORE", f"s3://{s3_store.bucket}/runs/x")
    monkeypatch.setenv("PRODVID_S3_ENDPOINT_URL", s3_store.endpoint_url)
    photo = sample_photo_bytes(fmt="JPEG", size=(300, 400))
    s3_store.client.put_object(Bucket=s3_store.bucket, Key="uploads/jar.jpg", Body=photo)
    source = f"s3://{s3_store.bucket}/uploads/jar.jpg"
    assert launch(instance, "JAR-9", {"prompt": "a jar", "photo": source}).success
    assert s3_store.read_bytes("inbox/JAR-9.jpg") == photo

    message = failure(launch(instance, "JAR-10", {"prompt": "a jar"})).step_failure_data.error.message
    assert f"s3://{s3_store.bucket}/runs/x/inbox/JAR-10.png" in message
    message = failure(launch(instance, "JAR-11", {"photo": source + ".png"})).step_failure_data.error.message
    assert f"config `photo` {source}.png does not exist" in message


def test_a_full_run_without_a_prompt_fails_before_the_photo_is_copied(instance, store, tmp_path):
    """The whole job (an empty asset selection means every asset) needs a prompt: checked in the first step,
    before the photo goes into the inbox, not in hero_image after the canvas is stored."""
    (tmp_path / "cup.png").write_bytes(sample_photo_bytes(fmt="PNG", size=(300, 400)))
    result = launch(instance, "CUP-2", {"photo": str(tmp_path / "cup.png")}, selection=None)
    event = failure(result)
    assert (
        event.step_key == "expanded_canvas"
        and "SKU CUP-2: no prompt" in event.step_failure_data.error.message
    )
    assert store.list() == []
