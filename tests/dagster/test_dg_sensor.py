"""The inbox sensor, tick by tick against a real instance: new, changed, unchanged and invalid entries."""

import json

import dagster as dg
from dgtest import BRIEF, drop_sku

from prodvid_core import layout
from prodvid_core.brief import parse_brief
from prodvid_core.frames import read_manifest
from prodvid_dagster.definitions import defs
from prodvid_dagster.partitions import sku_partitions
from prodvid_dagster.resources import StoreResource


def tick(instance, cursor: str | None):
    """One evaluation, applied to the instance the way the daemon applies it (partitions added)."""
    context = dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources={"store": StoreResource()},
        definitions=defs,
    )
    data = defs.resolve_sensor_def("inbox_sensor").evaluate_tick(context)
    for request in data.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return data


def added(data) -> list[str]:
    return sorted(k for r in data.dynamic_partitions_requests or [] for k in r.partition_keys)


def test_sensor_new_changed_unchanged_and_invalid_entries(instance, store):
    # a catalog team's inbox: two good SKUs, one waiting for its brief, and five bad entries
    drop_sku(store, "MUG-1")
    drop_sku(store, "VASE-2", {**BRIEF, "prompt": "a vase on a shelf"}, suffix=".jpg")
    store.write_bytes("inbox/WAIT-3.png", store.read_bytes("inbox/MUG-1.png"))
    store.write_bytes("inbox/bad name.png", b"x")
    store.write_bytes("inbox/TYPO-4.png", store.read_bytes("inbox/MUG-1.png"))
    store.write_bytes("inbox/TYPO-4.json", json.dumps({"promt": "a typo"}).encode())
    store.write_bytes("inbox/LONELY-5.json", json.dumps(BRIEF).encode())
    store.write_bytes("inbox/CLIP-6.gif", b"GIF89a")
    inbox_before = {k: store.read_bytes(k) for k in store.list("inbox/")}

    # tick 1: both good SKUs become partitions and runs; every bad entry is reported with its reason
    first = tick(instance, None)
    assert added(first) == ["MUG-1", "VASE-2"]
    assert sorted(r.partition_key for r in first.run_requests) == ["MUG-1", "VASE-2"]
    mug = next(r for r in first.run_requests if r.partition_key == "MUG-1")
    checksum = parse_brief(BRIEF, sku="MUG-1").checksum()
    assert mug.run_key == f"MUG-1:{checksum}"
    assert mug.tags["prodvid/brief"] == checksum
    rejected = json.loads(first.cursor)["rejected"]
    assert set(rejected) == {
        "inbox/bad name.png",
        "inbox/TYPO-4.json",
        "inbox/LONELY-5.json",
        "inbox/CLIP-6.gif",
    }
    assert "'promt'" in rejected["inbox/TYPO-4.json"] and "TYPO-4" in rejected["inbox/TYPO-4.json"]
    assert "no photo" in rejected["inbox/LONELY-5.json"]
    assert "not a valid id" in rejected["inbox/bad name.png"]
    assert "'.gif'" in rejected["inbox/CLIP-6.gif"]
    assert "WAIT-3" not in first.cursor  # a photo without its brief is waiting, not wrong
    assert set(instance.get_dynamic_partitions(sku_partitions.name)) == {"MUG-1", "VASE-2"}

    # the brief's fields reach the run as config the job accepts, and the run makes that video
    job = defs.resolve_job_def("prodvid")
    config = mug.run_config
    assert config["ops"]["hero_image"]["config"] == {
        "prompt": BRIEF["prompt"],
        "negative_prompt": "",
        "seed": 7,
    }
    assert json.loads(config["ops"]["frames"]["config"]["camera"]) == BRIEF["camera"]
    assert dg.validate_run_config(job, config)
    store.write_bytes("inbox/MUG-1.json", json.dumps({**BRIEF, "seed": 99, "fps": 12}).encode())  # not read
    result = job.execute_in_process(
        run_config=config, partition_key="MUG-1", instance=instance, tags=mug.tags
    )
    assert result.success
    manifest = read_manifest(store, "MUG-1")
    assert (manifest["seed"], manifest["fps"], len(manifest["frames"])) == (7, 6, 6)
    store.write_bytes("inbox/MUG-1.json", inbox_before["inbox/MUG-1.json"])

    # tick 2, nothing changed: no run, no partition, the rejections in the skip reason
    second = tick(instance, first.cursor)
    assert second.run_requests == [] and added(second) == []
    assert "4 entries rejected" in second.skip_message and "TYPO-4" in second.skip_message

    # tick 3: MUG-1's brief changed, TYPO-4 fixed, VASE-2 unchanged
    store.write_bytes("inbox/MUG-1.json", json.dumps({**BRIEF, "seed": 8}).encode())
    store.write_bytes("inbox/TYPO-4.json", json.dumps({"prompt": "a jar on sand"}).encode())
    third = tick(instance, second.cursor)
    assert sorted(r.partition_key for r in third.run_requests) == ["MUG-1", "TYPO-4"]
    new_mug = next(r for r in third.run_requests if r.partition_key == "MUG-1")
    assert new_mug.run_key != mug.run_key and new_mug.run_config["ops"]["hero_image"]["config"]["seed"] == 8
    assert added(third) == ["TYPO-4"]
    assert "inbox/TYPO-4.json" not in json.loads(third.cursor)["rejected"]

    # prodvid never touched the inbox (apart from this test's own edits)
    assert set(store.list("inbox/")) == set(inbox_before)
    assert store.read_bytes("inbox/bad name.png") == b"x"
    assert store.exists(layout.inbox_photo("WAIT-3", ".png"))


def test_sensor_on_an_empty_or_missing_inbox(instance, store):
    data = tick(instance, None)
    assert data.run_requests == [] and added(data) == []
    assert data.skip_message == "No new or changed briefs in inbox/."
