"""The inbox sensor: a photo and its brief land in `inbox/`, a run starts by itself.

Each tick lists `inbox/`, adds every ready SKU that is new as a partition, and requests one run per new or
changed brief (run key `<SKU>:<brief checksum>`, so a brief is made once however often the sensor looks).
The brief's fields reach the run as run config, where the launchpad shows them. Bad entries (a bad SKU id,
a brief that does not validate, a brief with no photo or two) are left untouched and reported: as warnings
in the tick's log, in the tick's skip reason when nothing else happens, and in the cursor. The sensor keeps
going with the good entries.
"""

import json

import dagster as dg

from prodvid_core import inbox
from prodvid_core.brief import Brief
from prodvid_dagster.assets import CameraConfig, SceneConfig
from prodvid_dagster.jobs import prodvid_job
from prodvid_dagster.partitions import sku_partitions
from prodvid_dagster.resources import StoreResource

__all__ = ["inbox_sensor", "run_config_for"]

INTERVAL_SECONDS = 15


def run_config_for(brief: Brief) -> dg.RunConfig:
    """The run config that carries a brief to the assets (the same fields a person sets in the launchpad)."""
    return dg.RunConfig(
        ops={
            "hero_image": SceneConfig(
                prompt=brief.prompt, negative_prompt=brief.negative_prompt, seed=brief.seed
            ),
            "frames": CameraConfig(
                camera=json.dumps(brief.camera, sort_keys=True), num_frames=brief.num_frames, fps=brief.fps
            ),
        }
    )


@dg.sensor(
    job=prodvid_job,
    minimum_interval_seconds=INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches inbox/ for <SKU>.{png,jpg,jpeg,webp} + <SKU>.json; runs each new or changed brief.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, store: StoreResource) -> dg.SensorResult:
    # 1. What the inbox holds now, and what earlier ticks requested
    cursor = json.loads(context.cursor) if context.cursor else {}
    requested: dict[str, str] = cursor.get("briefs", {})
    scan = inbox.scan(store.open())

    # 2. Report bad entries, touch nothing
    for key, why in scan.rejected.items():
        context.log.warning(f"inbox entry {key} skipped: {why}")
    if scan.waiting:
        context.log.info(
            f"waiting for the brief of {len(scan.waiting)} SKU(s): {', '.join(scan.waiting[:20])}"
        )

    # 3. New SKUs become partitions; new or changed briefs become runs
    known = set(context.instance.get_dynamic_partitions(sku_partitions.name))
    new_skus = [sku for sku in scan.ready if sku not in known]
    run_requests = []
    for sku, entry in scan.ready.items():
        checksum = entry.brief.checksum()
        if requested.get(sku) == checksum and sku in known:
            continue
        run_requests.append(
            dg.RunRequest(
                run_key=f"{sku}:{checksum}",
                partition_key=sku,
                run_config=run_config_for(entry.brief),
                tags={"prodvid/sku": sku, "prodvid/brief": checksum},
            )
        )
        context.log.info(
            f"SKU {sku}: {'new' if sku not in requested else 'changed'} brief {checksum}, run requested"
        )

    # 4. Remember what was requested and what was rejected
    new_cursor = {
        "briefs": {sku: entry.brief.checksum() for sku, entry in scan.ready.items()},
        "rejected": scan.rejected,
    }
    skip_reason = None
    if not run_requests:
        skip_reason = "No new or changed briefs in inbox/."
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
        cursor=json.dumps(new_cursor, sort_keys=True),
        skip_reason=skip_reason,
    )
