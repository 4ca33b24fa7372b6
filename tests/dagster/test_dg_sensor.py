"""The inbox sensor, tick by tick against a real instance: new, changed, unchanged and invalid entries, what
each tick reads and writes (a real local or S3 store that records them), its small cursor and the state
object it names, and what resetting the cursor or losing the state does (the real sensor daemon)."""

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import SensorInstigatorData, TickStatus
from dagster._core.test_utils import (
    InProcessTestWorkspaceLoadTarget,
    create_test_daemon_workspace_context,
    freeze_time,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.sensor import execute_sensor_iteration
from dgtest import BRIEF, defs, drop_sku, inbox_tick

from prodvid_core import inbox, inbox_state, layout
from prodvid_core.brief import parse_brief
from prodvid_core.frames import read_manifest
from prodvid_core.storage import LocalStore, ObjectStore, S3Store
from prodvid_dagster.partitions import sku_partitions
from prodvid_dagster.resources import StoreResource


class _Records:
    """Mixed into a real store: every read and write is recorded (`reads`, `writes`), then done as usual."""

    reads: list[str]
    writes: list[str]

    def read_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return super().read_bytes(key)  # type: ignore[misc]

    def write_bytes(self, key: str, data: bytes) -> None:
        self.writes.append(key)
        super().write_bytes(key, data)  # type: ignore[misc]


class RecordingLocalStore(_Records, LocalStore):
    pass


class RecordingS3Store(_Records, S3Store):
    pass


def start_recording(store: RecordingLocalStore | RecordingS3Store) -> RecordingLocalStore | RecordingS3Store:
    store.reads, store.writes = [], []
    return store


def state_of(store: ObjectStore, cursor: str) -> dict:
    """The state object the cursor names, as JSON."""
    return json.loads(store.read_bytes(layout.inbox_state(json.loads(cursor)["state"])))


def resource_for(store: ObjectStore) -> StoreResource:
    """The sensor's store resource, opening this test's own store object."""

    class ThisStore(StoreResource):
        def open(self) -> ObjectStore:
            return store

    return ThisStore()


def tick(instance, cursor: str | None, store: ObjectStore | None = None):
    """One evaluation, applied to the instance the way the daemon applies it; with the store of
    $PRODVID_STORE, or `store`."""
    return inbox_tick(instance, cursor, resource_for(store) if store else None)


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
    # (and the waiting or rejected SKUs become partitions too, to show their inbox state on)
    first = tick(instance, None)
    assert added(first) == ["CLIP-6", "LONELY-5", "MUG-1", "TYPO-4", "VASE-2", "WAIT-3"]
    assert sorted(r.partition_key for r in first.run_requests) == ["MUG-1", "VASE-2"]
    mug = next(r for r in first.run_requests if r.partition_key == "MUG-1")
    checksum = parse_brief(BRIEF, sku="MUG-1").checksum()
    assert mug.run_key == f"MUG-1:{checksum}"
    assert mug.tags["prodvid/brief"] == checksum
    rejected = state_of(store, first.cursor)["rejected"]
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
    assert "WAIT-3" not in json.dumps(state_of(store, first.cursor))  # waiting for its brief, not wrong
    assert set(instance.get_dynamic_partitions(sku_partitions.name)) == set(added(first))

    # the brief's fields reach the run as config the job accepts, and the run makes that video
    job = defs.resolve_job_def("prodvid")
    config = mug.run_config
    assert list(config["ops"]) == ["expanded_canvas"]  # one SkuConfig, on the first step
    sku_config = config["ops"]["expanded_canvas"]["config"]
    assert (sku_config["prompt"], sku_config["negative_prompt"], sku_config["seed"]) == (
        BRIEF["prompt"],
        "",
        7,
    )
    assert json.loads(sku_config["camera"]) == BRIEF["camera"] and sku_config["photo"] == ""
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
    assert (
        new_mug.run_key != mug.run_key and new_mug.run_config["ops"]["expanded_canvas"]["config"]["seed"] == 8
    )
    assert added(third) == []  # a rejected SKU became a partition at its first tick (its inbox state)
    assert "inbox/TYPO-4.json" not in state_of(store, third.cursor)["rejected"]

    # prodvid never touched the inbox (apart from this test's own edits); its state lies beside it
    assert set(store.list("inbox/")) == set(inbox_before)
    assert store.list(layout.INBOX_STATE_PREFIX)[-1] == layout.inbox_state(json.loads(third.cursor)["state"])
    assert store.read_bytes("inbox/bad name.png") == b"x"
    assert store.exists(layout.inbox_photo("WAIT-3", ".png"))


def test_sensor_on_an_empty_or_missing_inbox(instance, store):
    data = tick(instance, None)
    assert data.run_requests == [] and added(data) == []
    assert data.skip_message == (
        f"Nothing in the inbox yet. Drop each product photo as <SKU>.png (or .jpg, .jpeg, .webp) in "
        f"{store.root}/inbox/, then its brief <SKU>.json (at least a prompt) last."
    )


@pytest.fixture(params=["local", "s3"])
def recording_store(request, tmp_path) -> LocalStore | S3Store:
    """An empty store whose reads are recorded: a local folder, or a bucket on the real S3 test server."""
    if request.param == "local":
        store = RecordingLocalStore(tmp_path / "recorded")
    else:
        s3 = request.getfixturevalue("s3_store")
        store = RecordingS3Store(s3.bucket, "catalog", endpoint_url=s3.endpoint_url)
    return start_recording(store)


def reads_of(store) -> list[str]:
    """The inbox keys read since the last call, sorted (and forgotten, with the other reads and the writes:
    the next call starts afresh)."""
    reads, store.reads, store.writes = sorted(k for k in store.reads if k.startswith("inbox/")), [], []
    return reads


def state_io(store) -> tuple[list[str], list[str]]:
    """The keys read and written outside the inbox since the last call (the state objects), not forgotten."""
    return [k for k in store.reads if not k.startswith("inbox/")], [
        k for k in store.writes if not k.startswith("inbox/")
    ]


def test_a_tick_reads_only_the_briefs_that_changed(instance, recording_store):
    store = recording_store
    for sku in ("MUG-1", "VASE-2", "JAR-3"):
        store.write_bytes(f"inbox/{sku}.png", b"a photo: a scan never opens it")
        store.write_bytes(f"inbox/{sku}.json", json.dumps({**BRIEF, "prompt": f"{sku} on a table"}).encode())
    store.write_bytes("inbox/TYPO-4.png", b"a photo")
    store.write_bytes("inbox/TYPO-4.json", json.dumps({"promt": "a typo"}).encode())
    store.write_bytes("inbox/LONELY-5.json", json.dumps(BRIEF).encode())  # no photo: not worth reading

    first = tick(instance, None, store)
    first_state = layout.inbox_state(json.loads(first.cursor)["state"])
    assert state_io(store) == ([], [first_state])  # no cursor: no state to read; one written
    assert reads_of(store) == [f"inbox/{s}.json" for s in ("JAR-3", "MUG-1", "TYPO-4", "VASE-2")]
    assert sorted(r.partition_key for r in first.run_requests) == ["JAR-3", "MUG-1", "VASE-2"]

    # nothing changed: no brief read (only the state object), nothing written, nothing requested, the bad
    # entries still reported with their reasons, the same cursor
    second = tick(instance, first.cursor, store)
    assert state_io(store) == ([first_state], [])
    assert reads_of(store) == []
    assert second.run_requests == [] and added(second) == []
    assert "2 entries rejected" in second.skip_message
    assert "'promt'" in second.skip_message and "LONELY-5.json: SKU LONELY-5: no photo" in second.skip_message
    assert second.cursor == first.cursor

    # MUG-1's brief rewritten with a new seed, JAR-3's photo replaced: only MUG-1's brief is read, and runs
    store.write_bytes(
        "inbox/MUG-1.json", json.dumps({**BRIEF, "prompt": "MUG-1 on a table", "seed": 8}).encode()
    )
    store.write_bytes("inbox/JAR-3.png", b"another photo")
    third = tick(instance, second.cursor, store)
    assert state_io(store) == ([first_state], [layout.inbox_state(json.loads(third.cursor)["state"])])
    assert reads_of(store) == ["inbox/MUG-1.json"]
    (mug,) = third.run_requests
    assert mug.partition_key == "MUG-1" and mug.run_config["ops"]["expanded_canvas"]["config"]["seed"] == 8
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
    # (a partition since the first tick, where its rejection is shown)
    assert [r.partition_key for r in fifth.run_requests] == ["TYPO-4"] and added(fifth) == []
    tick(instance, fifth.cursor, store)
    assert reads_of(store) == []

    # a SKU whose partition was deleted (from the UI) is read and requested again, as when first seen
    instance.delete_dynamic_partition(sku_partitions.name, "JAR-3")
    sixth = tick(instance, fifth.cursor, store)
    assert reads_of(store) == ["inbox/JAR-3.json"]
    assert [r.partition_key for r in sixth.run_requests] == ["JAR-3"] and added(sixth) == ["JAR-3"]


def test_a_cursor_of_an_earlier_format_starts_over(instance, store):
    """A cursor that held the records itself (before the state object) is not read any more: the tick
    starts over, as after a reset, reading every brief and asking for every ready SKU under its run key
    (Dagster skips the keys it has run), and its cursor is the new kind."""
    recording = start_recording(RecordingLocalStore(store.root))
    drop_sku(recording, "MUG-1")
    drop_sku(recording, "VASE-2", {**BRIEF, "seed": 3})
    instance.add_dynamic_partitions(sku_partitions.name, ["MUG-1", "VASE-2"])
    scan = inbox.scan(store)
    briefs = {sku: f"{s.stamp}:{s.checksum or ''}" for sku, s in scan.seen.items()}
    old = json.dumps({"briefs": briefs, "rejected": scan.rejected}, sort_keys=True, separators=(",", ":"))

    upgraded = tick(instance, old, recording)
    assert reads_of(recording) == ["inbox/MUG-1.json", "inbox/VASE-2.json"]
    assert [r.run_key for r in upgraded.run_requests] == [
        f"{sku}:{scan.seen[sku].checksum}" for sku in briefs
    ]
    assert state_of(store, upgraded.cursor)["briefs"] == briefs
    tick(instance, upgraded.cursor, recording)
    assert reads_of(recording) == []


def test_the_cursor_stays_small_for_many_skus(instance, tmp_path):
    store = start_recording(RecordingLocalStore(tmp_path / "many"))
    count = 1000
    for k in range(count):
        store.write_bytes(f"inbox/SKU-{k:06d}.png", b"photo")
        store.write_bytes(f"inbox/SKU-{k:06d}.json", json.dumps({"prompt": f"product {k}"}).encode())
    first = tick(instance, None, store)
    state = layout.inbox_state(json.loads(first.cursor)["state"])
    assert state_io(store) == ([], [state])
    assert len(first.run_requests) == count and len(reads_of(store)) == count
    second = tick(instance, first.cursor, store)
    assert state_io(store) == ([state], [])  # the state object is read, and no brief; nothing is written
    assert reads_of(store) == [] and second.run_requests == []
    # the cursor names the state; the state holds a 12-hex stamp and a 16-hex checksum per SKU
    assert second.cursor == first.cursor and len(second.cursor) <= 200, second.cursor
    assert len(store.read_bytes(state)) <= 45 * count + 100


def test_a_reset_cursor_reads_every_brief_and_asks_only_for_run_keys_already_asked(instance, store):
    recording = start_recording(RecordingLocalStore(store.root))
    for sku in ("MUG-1", "VASE-2", "JAR-3"):
        recording.write_bytes(f"inbox/{sku}.png", b"photo")
        recording.write_bytes(f"inbox/{sku}.json", json.dumps({"prompt": f"{sku} on a table"}).encode())
    first = tick(instance, None, recording)
    reads_of(recording)

    # reset (the UI's cursor editor, `dagster sensor cursor --delete`): start over. Every brief is read and
    # requested again under the run key it had; Dagster skips a run key it already has (the daemon test below)
    again = tick(instance, None, recording)
    assert reads_of(recording) == ["inbox/JAR-3.json", "inbox/MUG-1.json", "inbox/VASE-2.json"]
    assert sorted(r.run_key for r in again.run_requests) == sorted(r.run_key for r in first.run_requests)
    assert added(again) == []  # the partitions are there already
    assert state_of(store, again.cursor) == state_of(store, first.cursor)

    # the state object deleted, or damaged: the same, with no crash
    for damage in (b"", b"{not json"):
        key = layout.inbox_state(json.loads(again.cursor)["state"])
        if damage:
            recording.write_bytes(key, damage)
        else:
            recording.delete(key)
        again = tick(instance, again.cursor, recording)
        assert len(reads_of(recording)) == 3
        assert sorted(r.run_key for r in again.run_requests) == sorted(r.run_key for r in first.run_requests)
        assert recording.exists(layout.inbox_state(json.loads(again.cursor)["state"]))


def test_a_tick_whose_cursor_was_never_committed_is_done_again(instance, store):
    # the daemon died after a tick wrote its state object and before Dagster committed its cursor, or the tick
    # was the UI's "Test sensor": the committed cursor still names the object before, which is still there
    recording = start_recording(RecordingLocalStore(store.root))
    for sku in ("MUG-1", "VASE-2"):
        recording.write_bytes(f"inbox/{sku}.png", b"photo")
        recording.write_bytes(f"inbox/{sku}.json", json.dumps({"prompt": f"{sku} on a table"}).encode())
    committed = tick(instance, None, recording).cursor
    recording.write_bytes("inbox/MUG-1.json", b'{"prompt": "MUG-1 on a beach"}')
    reads_of(recording)

    lost = [tick(instance, committed, recording) for _ in range(inbox_state.KEEP + 2)]  # none committed
    for data in lost:
        assert [r.run_key for r in data.run_requests] == [lost[0].run_requests[0].run_key]
    assert reads_of(recording) == ["inbox/MUG-1.json"] * len(lost)
    assert recording.exists(layout.inbox_state(json.loads(committed)["state"]))  # spared: the cursor names it
    assert len(recording.list(layout.INBOX_STATE_PREFIX)) == inbox_state.KEEP + 1  # the newest, and that one


@contextmanager
def sensor_daemon(instance) -> Iterator[Callable[[], list]]:
    """The real sensor daemon over the definitions, in this process: each call runs one iteration, 20 s after
    the last (the sensor's interval is 15 s), and returns the inbox sensor's ticks, newest first."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="prodvid_dagster.definitions", attribute="defs"),
        location_name="prodvid",
    )
    clock = [time.time()]
    with create_test_daemon_workspace_context(
        InProcessTestWorkspaceLoadTarget(origin), instance
    ) as workspace:

        def iteration() -> list:
            clock[0] += 20
            with freeze_time(clock[0]):
                list(execute_sensor_iteration(workspace, logging.getLogger("test"), None, None))
            state = inbox_sensor_state(instance)
            return list(instance.get_ticks(state.instigator_origin_id, state.selector_id))

        yield iteration


def inbox_sensor_state(instance):
    """The inbox sensor's stored state (the daemon also keeps one for the backfill remainder sensor)."""
    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    (state,) = [s for s in states if s.instigator_name == "inbox_sensor"]
    return state


def set_cursor(instance, cursor: str | None) -> None:
    """What the UI's cursor editor and `dagster sensor cursor` do to the sensor's stored state."""
    state = inbox_sensor_state(instance)
    data = state.instigator_data
    instance.update_instigator_state(
        state.with_data(
            SensorInstigatorData(
                last_tick_timestamp=data.last_tick_timestamp,
                last_run_key=data.last_run_key,
                min_interval=data.min_interval,
                cursor=cursor,
                last_tick_start_timestamp=data.last_tick_start_timestamp,
                last_sensor_start_timestamp=data.last_sensor_start_timestamp,
                sensor_type=data.sensor_type,
            )
        )
    )


def test_the_daemon_runs_nothing_twice_after_a_reset_or_a_lost_state(instance, store):
    for sku in ("MUG-1", "VASE-2", "JAR-3"):
        store.write_bytes(f"inbox/{sku}.png", b"photo")
        store.write_bytes(f"inbox/{sku}.json", json.dumps({"prompt": f"{sku} on a table"}).encode())
    with sensor_daemon(instance) as iteration:
        ticks = iteration()
        assert ticks[0].status == TickStatus.SUCCESS and instance.get_runs_count() == 3  # queued
        state = inbox_sensor_state(instance)
        assert state.instigator_data.cursor == ticks[0].cursor
        assert store.exists(layout.inbox_state(json.loads(ticks[0].cursor)["state"]))
        run_keys = sorted(ticks[0].run_keys)

        # the cursor reset, then the state object deleted, then damaged: every brief is requested again under
        # its run key, and the daemon skips each one, as it already ran
        set_cursor(instance, None)
        ticks = iteration()
        assert ticks[0].status == TickStatus.SKIPPED and ticks[0].run_ids == []
        assert sorted(ticks[0].run_keys) == run_keys
        for damage in (None, b"[]"):
            key = layout.inbox_state(json.loads(ticks[0].cursor)["state"])
            if damage:
                store.write_bytes(key, damage)
            else:
                store.delete(key)
            ticks = iteration()
            assert ticks[0].status == TickStatus.SKIPPED and ticks[0].run_ids == []
            assert sorted(ticks[0].run_keys) == run_keys
        assert instance.get_runs_count() == 3

        # a changed brief: one more run, and the ticks after run nothing and write nothing
        store.write_bytes("inbox/MUG-1.json", b'{"prompt": "MUG-1 on a beach"}')
        ticks = iteration()
        assert ticks[0].status == TickStatus.SUCCESS and instance.get_runs_count() == 4
        states = store.list(layout.INBOX_STATE_PREFIX)
        ticks = iteration()
        assert ticks[0].status == TickStatus.SKIPPED and store.list(layout.INBOX_STATE_PREFIX) == states
        assert all(len(t.cursor) < 200 for t in ticks)  # every tick row holds the small cursor
