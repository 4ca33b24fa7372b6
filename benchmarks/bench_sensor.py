"""Inbox sensor benchmark: cursor size, what Dagster stores per tick, and tick time, for a large inbox.

Run by hand: `python benchmarks/bench_sensor.py --skus 10000 2>/dev/null` (a local store and a Dagster
instance in a temp folder; the figures go to stdout, Dagster's log, a line per SKU, to stderr). The first
tick, which reads every brief, is timed as the sensor alone: the daemon would also create one run per SKU,
minutes of database writes that have nothing to do with the sensor. The ticks after it run through the real
sensor daemon (in this process, its clock moved on 20 s a tick) with that first cursor committed: nothing
changed, then one brief rewritten. Each prints its wall time, the cursor's size and the size of the tick row
Dagster stores (the serialized tick, cursor included).

The script uses only the inbox and the sensor's cursor, so it runs on any checkout: to compare with the
sensor from before the scan state moved into the store, run it with `PYTHONPATH=<that checkout>/src`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

TICKS_PER_DAY = 24 * 3600 // 15


def _fill(store, skus: int) -> None:
    for k in range(skus):
        store.write_bytes(f"inbox/SKU-{k:06d}.png", b"a photo: the sensor never opens it")
        store.write_bytes(
            f"inbox/SKU-{k:06d}.json", json.dumps({"prompt": f"product {k} on a table"}).encode()
        )


def _first_tick(instance, defs) -> tuple[str, int, float]:
    """(cursor, run requests, seconds) of the sensor's first evaluation, every brief read."""
    import dagster as dg

    from prodvid_dagster.resources import StoreResource

    context = dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        resources={"store": StoreResource()},
        definitions=defs,
    )
    start = time.perf_counter()
    data = defs.resolve_sensor_def("inbox_sensor").evaluate_tick(context)
    seconds = time.perf_counter() - start
    for request in data.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return data.cursor, len(data.run_requests), seconds


def _daemon_ticks(instance, cursor: str, store, ticks: int) -> None:
    """Commit `cursor` as the sensor's, then run the real sensor daemon: `ticks` ticks, one changed brief."""
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, SensorInstigatorData
    from dagster._core.test_utils import (
        InProcessTestWorkspaceLoadTarget,
        create_test_daemon_workspace_context,
        freeze_time,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._daemon.sensor import execute_sensor_iteration
    from dagster._serdes import serialize_value

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="prodvid_dagster.definitions", attribute="defs"),
        location_name="prodvid",
    )
    logger = logging.getLogger("bench_sensor")
    with create_test_daemon_workspace_context(
        InProcessTestWorkspaceLoadTarget(origin), instance
    ) as workspace:
        location = workspace.create_request_context().get_code_location("prodvid")
        sensor = next(iter(location.get_repositories().values())).get_sensor("inbox_sensor")
        instance.add_instigator_state(
            InstigatorState(
                sensor.get_remote_origin(),
                InstigatorType.SENSOR,
                InstigatorStatus.DECLARED_IN_CODE,
                SensorInstigatorData(min_interval=sensor.min_interval_seconds, cursor=cursor),
            )
        )
        clock = time.time()

        def one(label: str) -> float:
            nonlocal clock
            clock += 20
            with freeze_time(clock):
                start = time.perf_counter()
                list(execute_sensor_iteration(workspace, logger, None, None))
                seconds = time.perf_counter() - start
            tick = instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id, limit=1)[0]
            row = len(serialize_value(tick.tick_data))
            cursor_bytes = len(tick.cursor or "")
            print(
                f"  {label:<28} {seconds * 1000:8.0f} ms   {tick.status.value:<8}  cursor {cursor_bytes:>7} B"
                f"   tick row {row:>8} B"
            )
            return seconds

        timed: list[float] = [one("nothing changed") for _ in range(ticks)]
        print(f"  median of {ticks} unchanged ticks: {statistics.median(timed) * 1000:.0f} ms")
        store.write_bytes("inbox/SKU-000007.json", b'{"prompt": "product 7, on a beach"}')
        one("one brief rewritten")
        one("nothing changed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=10, help="unchanged ticks through the daemon")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-sensor-") as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"], os.environ["PRODVID_STORE"] = str(home), str(Path(tmp) / "store")

        import dagster as dg

        import prodvid_dagster
        from prodvid_core.storage import LocalStore
        from prodvid_dagster.definitions import defs

        store = LocalStore(Path(tmp) / "store")
        _fill(store, args.skus)
        print(f"inbox sensor from {Path(prodvid_dagster.__file__).parents[1]}, {args.skus} SKUs, local store")
        with dg.DagsterInstance.get() as instance:
            cursor, requests, seconds = _first_tick(instance, defs())
            state = [k for k in store.list() if not k.startswith("inbox/")]
            sizes = {k: len(store.read_bytes(k)) for k in state}
            print(f"  first tick (sensor alone)    {seconds * 1000:8.0f} ms   {requests} run requests")
            print(f"  cursor: {len(cursor)} B: {cursor[:100]}{'...' if len(cursor) > 100 else ''}")
            print(f"  state objects in the store: {sizes or 'none'}")
            _daemon_ticks(instance, cursor, store, args.ticks)
            daily = len(cursor) * TICKS_PER_DAY
            print(f"  a tick every 15 s stores the cursor {TICKS_PER_DAY} times a day: {daily / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
