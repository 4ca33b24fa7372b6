"""The inbox sensor, tick by tick against a real instance: new, changed, unchanged and invalid entries, and
what each tick reads (a real local or S3 store that records its reads)."""

import json

import dagster as dg
import pytest
from dgtest import BRIEF, drop_sku

from prodvid_core import layout
from prodvid_core.brief import parse_brief
from prodvid_core.frames import read_manifest
from prodvid_core.storage import LocalStore, ObjectStore, S3Store
from prodvid_dagster.definitions import defs
from prodvid_dagster.partitions import sku_partitions
from prodvid_dagster.resources import StoreResource


class _RecordsReads:
    """Mixed into a real store: every `read_bytes` is recorded in `reads`, then done as usual."""

    reads: list[str]

    def read_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return super().read_bytes(key)  # type: ignore[misc]


class RecordingLocalStore(_RecordsReads, LocalStore):
    pass


class RecordingS3Store(_RecordsReads, S3Store):
    pass


def resource_for(store: ObjectStore) -> StoreResource:
    """The sensor's store resource, opening this test's own store object."""

    class ThisStore(StoreResource):
        def open(self) -> ObjectStore:
            return store

    return ThisStore()


def tick(instance, cursor: str | None, store: ObjectStore | None = None):
    """One evaluation, applied to the instance the way the daemon applies it (partitions added); with the
    store of $PRODVID_STORE, or `store`."""
    context = dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources={"store": resource_for(store) if store else StoreResource()},
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


@pytest.fixture(params=["local", "s3"])
def recording_store(request, tmp_path) -> LocalStore | S3Store:
    """An empty store whose reads are recorded: a local folder, or a bucket on the real S3 test server."""
    if request.param == "local":
        store = RecordingLocalStore(tmp_path / "recorded")
    else:
        s3 = request.getfixturevalue("s3_store")
        store = RecordingS3Store(s3.bucket, "catalog", endpoint_url=s3.endpoint_url)
    store.reads = []
    return store


def reads_of(store) -> list[str]:
    """The keys read since the last call, sorted (and forgotten: the next call starts afresh)."""
    reads, store.reads = sorted(store.reads), []
    return reads


def test_a_tick_reads_only_the_briefs_that_changed(instance, recording_store):
    store = recording_store
    for sku in ("MUG-1", "VASE-2", "JAR-3"):
        store.write_bytes(f"inbox/{sku}.png", b"a photo: a scan never opens it")
        store.write_bytes(f"inbox/{sku}.json", json.dumps({**BRIEF, "prompt": f"{sku} on a table"}).encode())
    store.write_bytes("inbox/TYPO-4.png", b"a photo")
    store.write_bytes("inbox/TYPO-4.json", json.dumps({"promt": "a typo"}).encode())
    store.write_bytes("inbox/LONELY-5.json", json.dumps(BRIEF).encode())  # no photo: not worth reading

    first = tick(instance, None, store)
    assert reads_of(store) == [f"inbox/{s}.json" for s in ("JAR-3", "MUG-1", "TYPO-4", "VASE-2")]
    assert sorted(r.partition_key for r in first.run_requests) == ["JAR-3", "MUG-1", "VASE-2"]

    # nothing changed: nothing read, nothing requested, the bad entries still reported with their reasons
    second = tick(instance, first.cursor, store)
    assert reads_of(store) == []
    assert second.run_requests == [] and added(second) == []
    assert "2 entries rejected" in second.skip_message
    assert "'promt'" in second.skip_message and "LONELY-5.json: SKU LONELY-5: no photo" in second.skip_message
    assert json.loads(second.cursor)["rejected"] == json.loads(first.cursor)["rejected"]

    # MUG-1's brief rewritten with a new seed, JAR-3's photo replaced: only MUG-1's brief is read, and runs
    store.write_bytes(
        "inbox/MUG-1.json", json.dumps({**BRIEF, "prompt": "MUG-1 on a table", "seed": 8}).encode()
    )
    store.write_bytes("inbox/JAR-3.png", b"another photo")
    third = tick(instance, second.cursor, store)
    assert reads_of(store) == ["inbox/MUG-1.json"]
    (mug,) = third.run_requests
    assert mug.partition_key == "MUG-1" and mug.run_config["ops"]["hero_image"]["config"]["seed"] == 8
    first_mug = next(r for r in first.run_requests if r.partition_key == "MUG-1")
    assert mug.run_key == f"MUG-1:{mug.tags['prodvid/brief']}" != first_mug.run_key

    # VASE-2's brief rewritten with the same fields, formatted otherwise: read, but no new run
    store.write_bytes(
        "inbox/VASE-2.json", json.dumps({**BRIEF, "prompt": "VASE-2 on a table"}, indent=2).encode()
    )
    fourth = tick(instance, third.cursor, store)
    assert reads_of(store) == ["inbox/VASE-2.json"] and fourth.run_requests == []

    # TYPO-4 fixed: read, added, run; the ticks after read nothing again
    store.write_bytes("inbox/TYPO-4.json", json.dumps({"prompt": "a jar on sand"}).encode())
    fifth = tick(instance, fourth.cursor, store)
    assert reads_of(store) == ["inbox/TYPO-4.json"]
    assert [r.partition_key for r in fifth.run_requests] == ["TYPO-4"] and added(fifth) == ["TYPO-4"]
    tick(instance, fifth.cursor, store)
    assert reads_of(store) == []

    # a SKU whose partition was deleted (from the UI) is read and requested again, as when first seen
    instance.delete_dynamic_partition(sku_partitions.name, "JAR-3")
    sixth = tick(instance, fifth.cursor, store)
    assert reads_of(store) == ["inbox/JAR-3.json"]
    assert [r.partition_key for r in sixth.run_requests] == ["JAR-3"] and added(sixth) == ["JAR-3"]


def test_a_cursor_from_before_etags_reads_each_brief_once_and_reruns_nothing(instance, store):
    recording = RecordingLocalStore(store.root)
    recording.reads = []
    drop_sku(recording, "MUG-1")
    drop_sku(recording, "VASE-2", {**BRIEF, "seed": 3})
    instance.add_dynamic_partitions(sku_partitions.name, ["MUG-1", "VASE-2"])
    old = {"briefs": {"MUG-1": parse_brief(BRIEF, sku="MUG-1").checksum(), "VASE-2": "0123456789abcdef"}}

    upgraded = tick(instance, json.dumps({**old, "rejected": {}}), recording)
    assert reads_of(recording) == ["inbox/MUG-1.json", "inbox/VASE-2.json"]
    assert [r.partition_key for r in upgraded.run_requests] == ["VASE-2"]  # only the changed brief
    tick(instance, upgraded.cursor, recording)
    assert reads_of(recording) == []


def test_the_cursor_stays_small_for_many_skus(instance, tmp_path):
    store = RecordingLocalStore(tmp_path / "many")
    store.reads = []
    count = 1000
    for k in range(count):
        store.write_bytes(f"inbox/SKU-{k:06d}.png", b"photo")
        store.write_bytes(f"inbox/SKU-{k:06d}.json", json.dumps({"prompt": f"product {k}"}).encode())
    first = tick(instance, None, store)
    assert len(first.run_requests) == count and len(reads_of(store)) == count
    second = tick(instance, first.cursor, store)
    assert reads_of(store) == [] and second.run_requests == []
    # 12-hex stamp + 16-hex checksum + a 10-character SKU: 45 bytes per SKU, 450 KB for 10,000
    assert len(second.cursor) <= 45 * count + 40, len(second.cursor)
