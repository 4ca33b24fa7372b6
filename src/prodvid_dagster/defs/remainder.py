"""The rest of a backfill whose first step found bad SKUs: run again, without them.

A single-run backfill makes all its SKUs in one step per asset, and Dagster 1.13 cannot fail one partition of
such a step (dagster-io/dagster#17836). So `expanded_canvas` checks every SKU before it stores anything, and
when some are bad it fails naming each, with the SKUs that passed in the failure's metadata. This sensor sees
that failure and requests the passed SKUs again with the failed run's config, assets and tags: one run per
stretch of consecutive SKUs in the partition order (a run covers a range of partitions, and the bad SKUs cut
it), a single SKU as its own partition. The run key (failed run + range) makes each request once.
"""

from collections.abc import Iterator, Sequence

import dagster as dg

from prodvid_dagster.defs.assets import GOOD_SKUS, REMAINDER_SENSOR
from prodvid_dagster.defs.jobs import prodvid_job
from prodvid_dagster.defs.sensors import INTERVAL_SECONDS
from prodvid_dagster.partitions import sku_partitions

__all__ = ["backfill_remainder_sensor", "stretches"]

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
REMAINDER_TAG = "prodvid/remainder_of"


def stretches(skus: Sequence[str], order: Sequence[str]) -> list[tuple[str, str]]:
    """`skus` as (first, last) runs of consecutive partitions of `order`, which they cut where a SKU of
    `order` is not among them (a bad SKU, or one the failed run did not cover)."""
    wanted, out, start, last = set(skus), [], None, None
    for sku in order:
        if sku in wanted:
            start, last = start or sku, sku
        elif start is not None:
            out.append((start, last))
            start = None
    if start is not None:
        out.append((start, last))
    return out


def _passed(context: dg.RunFailureSensorContext) -> list[str]:
    for event in context.get_step_failure_events():
        data = event.step_failure_data.user_failure_data
        if event.step_key == "expanded_canvas" and data is not None and GOOD_SKUS in data.metadata:
            return list(data.metadata[GOOD_SKUS].data)
    return []


@dg.run_failure_sensor(
    name=REMAINDER_SENSOR,
    request_job=prodvid_job,
    minimum_interval_seconds=INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs again the SKUs of a failed backfill run that passed their checks, not the bad ones.",
)
def backfill_remainder_sensor(context: dg.RunFailureSensorContext) -> Iterator[dg.RunRequest]:
    failed = context.dagster_run
    passed = _passed(context)
    if not passed:
        return
    keep = {k: v for k, v in failed.tags.items() if not k.startswith("dagster/")}
    order = context.instance.get_dynamic_partitions(sku_partitions.name)
    for first, last in stretches(passed, order):
        context.log.info(f"run {failed.run_id}: SKUs {first} to {last} passed their checks, run again")
        tags = {**keep, REMAINDER_TAG: failed.run_id}
        if first != last:
            tags |= {RANGE_START: first, RANGE_END: last}
        yield dg.RunRequest(
            run_key=f"{failed.run_id}:{first}:{last}",
            run_config=failed.run_config,
            tags=tags,
            asset_selection=list(failed.asset_selection) if failed.asset_selection else None,
            asset_check_keys=list(failed.asset_check_selection) if failed.asset_check_selection else None,
            partition_key=first if first == last else None,
        )
