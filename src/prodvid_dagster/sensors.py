"""The inbox sensor: a photo and its brief land in `inbox/`, a run starts by itself.

Each tick lists `inbox/`, adds every ready SKU that is new as a partition, and requests one run per new or
changed brief (run key `<SKU>:<brief checksum>`, so a brief is made once however often the sensor looks).
The brief's fields reach the run as run config, where the launchpad shows them. Bad entries (a bad SKU id,
a brief that does not validate, a brief with no photo or two) are left untouched and reported: as warnings
in the tick's log, in the tick's skip reason when nothing else happens, and in the cursor. The sensor keeps
going with the good entries.

What a tick reads: one listing of `inbox/` with each key's ETag (on S3 one LIST request per 1,000 keys), and
only the briefs whose ETag changed since the last tick. Photos are never read. The cursor remembers, per SKU,
a 12-hex stamp of the brief's ETag and its checksum:

    {"briefs": {"MUG-1": "3f9a0c1d2e4b:0123456789abcdef", "TYPO-4": "77aa0c1d2e4b:"},
     "rejected": {"inbox/TYPO-4.json": "SKU TYPO-4: unknown field 'promt' ..."}}

A brief rejected for its content has no checksum; its reason is the one under `rejected`. About 45 bytes per
SKU (10,000 SKUs: about 450 KB), and Dagster stores the cursor with every tick.
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


def _seen_from(cursor: dict) -> dict[str, inbox.Seen]:
    """The last tick's scan state back from its cursor. A cursor from before stamps (`{sku: checksum}`)
    gives no stamps: every brief is read once more, and runs only if its checksum changed."""
    rejected: dict[str, str] = cursor.get("rejected", {})
    seen = {}
    for sku, value in cursor.get("briefs", {}).items():
        stamp, _, checksum = value.rpartition(":")
        if checksum:
            seen[sku] = inbox.Seen(stamp, checksum=checksum)
        elif f"inbox/{sku}.json" in rejected:
            seen[sku] = inbox.Seen(stamp, error=rejected[f"inbox/{sku}.json"])
    return seen


def _cursor(scan: inbox.Scan) -> str:
    """The scan state, compact: it is stored with every tick."""
    briefs = {sku: f"{seen.stamp}:{seen.checksum or ''}" for sku, seen in scan.seen.items()}
    return json.dumps({"briefs": briefs, "rejected": scan.rejected}, sort_keys=True, separators=(",", ":"))


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
    # 1. What the inbox holds now; only briefs changed since the last tick are read. A SKU whose partition
    #    is gone (deleted in the UI) counts as new, as when the sensor first saw it.
    previous = _seen_from(json.loads(context.cursor) if context.cursor else {})
    known = set(context.instance.get_dynamic_partitions(sku_partitions.name))
    scan = inbox.scan(
        store.open(), {sku: s for sku, s in previous.items() if s.error is not None or sku in known}
    )
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
        context.log.info(f"SKU {sku}: {'changed' if changed else 'new'} brief {checksum}, run requested")

    # 4. Remember what was read and what was rejected
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
        cursor=_cursor(scan),
        skip_reason=skip_reason,
    )
