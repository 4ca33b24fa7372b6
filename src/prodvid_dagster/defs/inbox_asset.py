"""The inbox as an asset of its own: each SKU's inbox state on its partition, where the UI shows it.

`inbox` is an external asset (prodvid never makes it: the catalog team fills it), partitioned by SKU like the
others and upstream of `expanded_canvas`. The inbox sensor observes it: on each SKU's partition an
`AssetObservation` says what the inbox holds for that SKU,

| state | when | data version |
|---|---|---|
| `ready` | a photo and a valid brief | the brief's checksum (a new brief, a new version) |
| `waiting` | a photo without its brief | `waiting` |
| `rejected` | an entry prodvid cannot use, with the reason | `rejected:<digest of the reason>` |

so the asset's Partitions tab lists every SKU of the inbox, a rejected one with its reason in the
observation's description and metadata, without opening a sensor tick. A SKU whose entries are waiting or
rejected becomes a partition too (an entry whose name is no valid SKU id cannot: it stays in the tick's log
and skip reason).

A SKU is observed when its state changes, not on every tick: a ready SKU when its brief is new or changed
(when the sensor requests its run), a waiting or rejected one when its state differs from its partition's
latest observation (two queries of Dagster's event log per tick, for those SKUs only). So a tick where
nothing changed records nothing, however large the catalog.
"""

from __future__ import annotations

import hashlib

import dagster as dg

from prodvid_core import inbox, media
from prodvid_core.errors import ProdvidError, validate_sku
from prodvid_core.storage import INBOX_PREFIX, ObjectStore, open_store
from prodvid_dagster.partitions import sku_partitions

__all__ = ["INBOX", "inbox_asset", "inbox_events", "where_to_drop"]

INBOX = dg.AssetKey("inbox")
_VERSION_TAG = "dagster/data_version"


def where_to_drop(store: ObjectStore) -> str:
    """One sentence naming the store's inbox, for a blank instance: where a person puts the files."""
    return (
        f"Drop each product photo as <SKU>.png (or .jpg, .jpeg, .webp) in {media.inbox_location(store)}, "
        "then its brief <SKU>.json (at least a prompt) last."
    )


def _default_location() -> str:
    """The inbox of $PRODVID_STORE, as the definitions see it when they load; a store that cannot be opened
    (a typo in PRODVID_STORE) must not keep the definitions from loading: the sensor will name the error."""
    try:
        return where_to_drop(open_store())
    except ProdvidError:
        return "Drop photos and briefs in the inbox/ folder of the store ($PRODVID_STORE)."


inbox_asset = dg.AssetSpec(
    INBOX,
    partitions_def=sku_partitions,
    group_name="prodvid",
    kinds={"file"},
    description=(
        "The catalog team's inbox: per SKU a photo, then its brief. The inbox_sensor observes each SKU's "
        "state here (ready, waiting for its brief, or rejected with the reason) and runs each new brief. "
        + _default_location()
    ),
)


def _state(state: str, reason: str | None = None, checksum: str | None = None) -> tuple[str, str, str]:
    """(state, description, data version) of a SKU's inbox entry."""
    if state == "ready":
        return state, f"ready: brief {checksum}", checksum or ""
    if state == "waiting":
        return state, "waiting for its brief <SKU>.json", "waiting"
    return (
        state,
        f"rejected: {reason}",
        f"rejected:{hashlib.sha256((reason or '').encode()).hexdigest()[:16]}",
    )


def _sku_of(key: str) -> str | None:
    stem = key[len(INBOX_PREFIX) :].rpartition(".")[0]
    try:
        return validate_sku(stem)
    except ProdvidError:
        return None


def _latest_versions(instance: dg.DagsterInstance, skus: set[str]) -> dict[str, str]:
    """The data version of each SKU's latest `inbox` observation: two queries whatever the count."""
    if not skus:
        return {}
    ids = instance.get_latest_storage_id_by_partition(INBOX, dg.DagsterEventType.ASSET_OBSERVATION, skus)
    if not ids:
        return {}
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=INBOX, storage_ids=list(ids.values())), limit=len(ids)
    ).records
    return {
        r.partition_key: r.asset_observation.tags.get(_VERSION_TAG, "")
        for r in records
        if r.partition_key and r.asset_observation
    }


def inbox_events(
    instance: dg.DagsterInstance, store: ObjectStore, scan: inbox.Scan
) -> tuple[list[dg.AssetObservation], list[str]]:
    """The observations of the SKUs whose inbox state changed, and the waiting or rejected SKUs (valid ids)
    that need a partition to show it on."""
    states: dict[str, tuple[str, str, str]] = {
        sku: _state("ready", checksum=entry.brief.checksum()) for sku, entry in scan.ready.items()
    }
    settled: dict[str, tuple[str, str, str]] = {sku: _state("waiting") for sku in scan.waiting}
    reasons: dict[str, list[str]] = {}
    for key, why in sorted(scan.rejected.items()):
        sku = _sku_of(key)
        if sku is not None:
            reasons.setdefault(sku, []).append(f"{store.url(key)}: {why}" if sku not in why else why)
    settled.update({sku: _state("rejected", " ".join(why)) for sku, why in reasons.items()})
    latest = _latest_versions(instance, set(settled))
    states.update({sku: s for sku, s in settled.items() if latest.get(sku) != s[2]})
    events = [
        dg.AssetObservation(
            asset_key=INBOX,
            partition=sku,
            description=description,
            metadata={"state": state, "inbox": media.inbox_location(store), "details": description},
            tags={_VERSION_TAG: version},
        )
        for sku, (state, description, version) in sorted(states.items())
    ]
    return events, sorted(settled)
