"""The inbox sensor: a photo and its brief land in `inbox/`, a run starts by itself.

Each tick lists `inbox/`, adds every ready SKU that is new as a partition, and requests one run per new or
changed brief (run key `<SKU>:<brief checksum>`, so a brief is made once however often the sensor looks).
The brief's fields reach the run as run config, where the launchpad shows them. Bad entries (a bad SKU id,
a brief that does not validate, a brief with no photo or two) are left untouched and reported: as warnings
in the tick's log, in the tick's skip reason when nothing else happens, and in the state object. The sensor
keeps going with the good entries.

What a tick reads: one listing of `inbox/` with each key's ETag (on S3 one LIST request per 1,000 keys), the
state object its cursor names, and only the briefs whose ETag changed since the last tick. Photos are never
read. The state object (`sensors/inbox_sensor/<time>-<sha256>.json`, about 45 bytes per SKU) remembers, per
SKU, a stamp of the brief's ETag and its checksum, and the rejected entries; a tick writes a new one only when
something changed. The cursor, which Dagster stores with every tick, only names it (`prodvid_core.inbox_state`
has the details):

    {"state": "20250612T101530.123456Z-<sha256>", "seen": 10000, "rejected": 3}

An empty cursor (a new sensor, or reset in the UI) means start over: every brief is read again and requested
again, and Dagster skips each run key it has already run, so nothing is made twice. So does a cursor whose
state object is missing or corrupt, with a warning in the tick's log.
"""

import json

import dagster as dg

from prodvid_core import inbox, inbox_state, media
from prodvid_core.brief import Brief
from prodvid_dagster.defs import jobs
from prodvid_dagster.defs.assets import SkuConfig
from prodvid_dagster.defs.inbox_asset import inbox_events, where_to_drop
from prodvid_dagster.partitions import sku_partitions
from prodvid_dagster.resources import StoreResource

__all__ = ["inbox_sensor", "run_config_for"]

INTERVAL_SECONDS = 15


def run_config_for(brief: Brief) -> dg.RunConfig:
    """The run config that carries a brief to the assets (the same fields a person sets in the launchpad)."""
    config = SkuConfig(
        prompt=brief.prompt,
        format=brief.format or "",
        camera=json.dumps(brief.camera, sort_keys=True),
        negative_prompt=brief.negative_prompt,
        seed=brief.seed,
        anchor=brief.anchor,
        fill=brief.fill,
        margin=brief.margin,
        num_frames=brief.num_frames,
        seconds=brief.seconds,
        fps=brief.fps,
    )
    return dg.RunConfig(ops={"expanded_canvas": config})


@dg.sensor(
    job=jobs.prodvid_job,
    minimum_interval_seconds=INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches inbox/ for <SKU>.{png,jpg,jpeg,webp} + <SKU>.json; runs each new or changed brief "
    "and shows each SKU's inbox state on the `inbox` asset.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, store: StoreResource) -> dg.SensorResult:
    # 1. What the inbox holds now; only briefs changed since the state the cursor names are read. A SKU whose
    #    partition is gone (deleted in the UI) counts as new, as when the sensor first saw it.
    st = store.open()
    loaded = inbox_state.load(st, context.cursor)
    if loaded.note:
        (context.log.warning if loaded.origin == "lost" else context.log.info)(loaded.note)
    previous = loaded.seen
    known = set(context.instance.get_dynamic_partitions(sku_partitions.name))
    scan = inbox.scan(st, {sku: s for sku, s in previous.items() if s.error is not None or sku in known})
    context.log.info(
        f"{len(scan.ready) + len(scan.unchanged)} SKU(s) ready, {len(scan.reads)} brief(s) read "
        f"(the others are unchanged since the last tick)"
    )

    # 2. Report bad entries, touch nothing
    for key, why in scan.rejected.items():
        context.log.warning(f"inbox entry {key} skipped: {why}")
    if scan.waiting:
        context.log.info(
            f"waiting for the brief of {len(scan.waiting)} SKU(s): {', '.join(scan.waiting[:20])}"
        )

    # 3. New SKUs become partitions; new or changed briefs become runs
    new_skus = [sku for sku in scan.ready if sku not in known]
    run_requests = []
    for sku, entry in scan.ready.items():
        checksum = entry.brief.checksum()
        run_requests.append(
            dg.RunRequest(
                run_key=f"{sku}:{checksum}",
                partition_key=sku,
                run_config=run_config_for(entry.brief),
                tags={"prodvid/sku": sku, "prodvid/brief": checksum},
            )
        )
        changed = sku in previous and previous[sku].checksum is not None
        if changed or sku not in known:
            context.log.info(f"SKU {sku}: {'changed' if changed else 'new'} brief {checksum}, run requested")
        else:  # a partition the state does not remember: after a reset, say, when its run key may have run
            context.log.info(f"SKU {sku}: brief {checksum}, run requested (skipped if its run key ran)")

    # 4. Each SKU's inbox state on its partition of the `inbox` asset, when it changed (inbox_asset)
    observations, settled = inbox_events(context.instance, st, scan)
    new_skus += [sku for sku in settled if sku not in known and sku not in new_skus]

    # 5. Remember what was read and what was rejected: in the store, the cursor only names it
    saved = inbox_state.save(st, scan, loaded)
    if saved.written:
        context.log.info(f"scan state written to {st.url(saved.key)} ({saved.size} bytes)")
    skip_reason = None
    if not run_requests:
        skip_reason = f"No new or changed briefs in {media.inbox_location(st)}."
        if not (scan.seen or scan.rejected or scan.waiting):  # a blank instance: say where files go
            skip_reason = f"Nothing in the inbox yet. {where_to_drop(st)}"
        if scan.rejected:
            shown = sorted(scan.rejected.items())[:20]
            skip_reason += f" {len(scan.rejected)} entries rejected: " + "; ".join(
                f"{k}: {why}" for k, why in shown
            )
            if len(scan.rejected) > len(shown):
                skip_reason += f"; and {len(scan.rejected) - len(shown)} more (see the tick's log)"
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[sku_partitions.build_add_request(new_skus)] if new_skus else [],
        cursor=saved.cursor,
        skip_reason=skip_reason,
        asset_events=observations,
    )
