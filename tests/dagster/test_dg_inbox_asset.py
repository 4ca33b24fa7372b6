"""The `inbox` asset: each SKU's inbox state (ready, waiting for its brief, rejected with the reason) on its
partition, observed by the inbox sensor on a real instance; a blank instance says where to drop files."""

import json

import dagster as dg
from dgtest import BRIEF, defs, drop_sku, inbox_tick

from prodvid_core import layout
from prodvid_core.brief import parse_brief
from prodvid_dagster.defs.inbox_asset import INBOX
from prodvid_dagster.partitions import sku_partitions


def tick(instance: dg.DagsterInstance, cursor: str | None):
    return inbox_tick(instance, cursor)


def shown(instance: dg.DagsterInstance, sku: str) -> tuple[str, str, str]:
    """What the partition's page shows: the latest observation's state, description and data version."""
    (record,) = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=INBOX, asset_partitions=[sku]), limit=1
    ).records
    observation = record.asset_observation
    return (
        observation.metadata["state"].value,
        observation.description,
        observation.tags["dagster/data_version"],
    )


def test_a_blank_instance_says_where_to_drop_files(instance, store):
    data = tick(instance, None)
    where = f"{store.root}/inbox/"
    assert where in data.skip_message and "<SKU>.json" in data.skip_message
    assert data.asset_events == []
    description = defs.resolve_asset_graph().get(INBOX).description
    assert "inbox/" in description and "<SKU>.png" in description


def test_each_skus_inbox_state_on_its_partition(instance, store):
    drop_sku(store, "MUG-1")
    store.write_bytes("inbox/WAIT-3.png", store.read_bytes("inbox/MUG-1.png"))
    store.write_bytes("inbox/TYPO-4.png", store.read_bytes("inbox/MUG-1.png"))
    store.write_bytes("inbox/TYPO-4.json", json.dumps({"promt": "a typo"}).encode())
    store.write_bytes("inbox/LONELY-5.json", json.dumps(BRIEF).encode())
    store.write_bytes("inbox/bad name.png", b"x")  # no valid SKU id: no partition, the tick's log says it

    first = tick(instance, None)
    assert set(instance.get_dynamic_partitions(sku_partitions.name)) == {
        "MUG-1",
        "WAIT-3",
        "TYPO-4",
        "LONELY-5",
    }
    checksum = parse_brief(BRIEF, sku="MUG-1").checksum()
    assert shown(instance, "MUG-1") == ("ready", f"ready: brief {checksum}", checksum)
    assert shown(instance, "WAIT-3")[:2] == ("waiting", "waiting for its brief <SKU>.json")
    state, description, version = shown(instance, "TYPO-4")
    assert state == "rejected" and version.startswith("rejected:")
    assert "SKU TYPO-4: unknown field 'promt'" in description
    assert shown(instance, "LONELY-5")[0] == "rejected" and "no photo" in shown(instance, "LONELY-5")[1]
    assert len(first.asset_events) == 4

    # nothing changed: nothing observed again
    second = tick(instance, first.cursor)
    assert second.asset_events == []

    # TYPO-4 fixed and WAIT-3's brief lands: both ready, each with its brief's checksum as data version;
    # MUG-1's photo goes: its brief is rejected for want of one
    store.write_bytes("inbox/TYPO-4.json", json.dumps({"prompt": "a jar on sand"}).encode())
    store.write_bytes(layout.inbox_brief("WAIT-3"), json.dumps(BRIEF).encode())
    (store.root / "inbox" / "MUG-1.png").unlink()
    third = tick(instance, second.cursor)
    assert sorted(e.partition for e in third.asset_events) == ["MUG-1", "TYPO-4", "WAIT-3"]
    typo = parse_brief({"prompt": "a jar on sand"}, sku="TYPO-4").checksum()
    assert shown(instance, "TYPO-4") == ("ready", f"ready: brief {typo}", typo)
    assert shown(instance, "WAIT-3")[0] == "ready"
    assert shown(instance, "MUG-1")[0] == "rejected" and "no photo" in shown(instance, "MUG-1")[1]
    assert tick(instance, third.cursor).asset_events == []
