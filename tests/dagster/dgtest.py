"""Helpers and constants shared by the Dagster layer's tests (import as `from dgtest import ...`)."""

import json
from dataclasses import fields

import dagster as dg

from prodvid_core import layout
from prodvid_core.run import Settings
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import ObjectStore
from prodvid_dagster.definitions import defs as load_defs

# The code location's Definitions, as `dg dev` loads them (`defs` is a `@dg.definitions` function).
defs = load_defs()

# Small and fast on a 2-core CPU: 256 px canvas, 2 denoising steps, the tiny preset.
FAST_ENV = {
    "PRODVID_PRESET": "tiny",
    "PRODVID_DEVICE": "cpu",
    "PRODVID_SIZE": "256",
    "PRODVID_STEPS": "2",
}
# The env vars of every other setting are unset for the tests: a developer's PRODVID_FORMAT or
# PRODVID_KEEP_FRAMES would change what they make. PRODVID_CACHE and the PRODVID_REQUIRE_* switches stay.
UNSET_ENV = sorted({f"PRODVID_{f.name.upper()}" for f in fields(Settings)} - set(FAST_ENV))
BRIEF = {
    "prompt": "a bottle on a wooden table",
    "seed": 7,
    "num_frames": 6,
    "fps": 6,
    "camera": {"path": "pan", "distance": [-40, -16]},
}
DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def drop_sku(store: ObjectStore, sku: str, brief: dict | None = None, *, suffix: str = ".png") -> None:
    """Put a photo, then its brief (written last, as the inbox contract asks), into the inbox."""
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}[suffix]
    store.write_bytes(layout.inbox_photo(sku, suffix), sample_photo_bytes(fmt=fmt, size=(300, 400)))
    store.write_bytes(layout.inbox_brief(sku), json.dumps(BRIEF if brief is None else brief).encode())


def layout_keys(store: ObjectStore, sku: str) -> list[str]:
    """Every key the pipeline writes for `sku` (the inbox excluded)."""
    return [k for k in store.list() if f"/{sku}." in k or f"/{sku}/" in k if not k.startswith("inbox/")]


def inbox_tick(instance: dg.DagsterInstance, cursor: str | None = None, store=None):
    """One tick of the inbox sensor against `instance` from `cursor` (None: blank), applied as the daemon
    applies it: its observations recorded and the partitions it asks for added; the tick's result (its run
    requests). `store`: a `StoreResource` (default: one for $PRODVID_STORE)."""
    from prodvid_dagster.resources import StoreResource

    context = dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources={"store": store or StoreResource()},
        definitions=defs,
    )
    tick = defs.resolve_sensor_def("inbox_sensor").evaluate_tick(context)
    for event in tick.asset_events:
        instance.report_runless_asset_event(event)
    for request in tick.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return tick
