"""The one `Definitions` of prodvid: `dagster dev` loads it through workspace.yaml at the repo root."""

import dagster as dg

from prodvid_dagster.assets import ASSETS
from prodvid_dagster.checks import CHECKS
from prodvid_dagster.io_manager import ObjectStoreIOManager
from prodvid_dagster.jobs import prodvid_job
from prodvid_dagster.resources import ModelsResource, StoreResource
from prodvid_dagster.sensors import inbox_sensor

store = StoreResource()

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[prodvid_job],
    sensors=[inbox_sensor],
    resources={"models": ModelsResource(), "store": store, "io_manager": ObjectStoreIOManager(store=store)},
    executor=dg.in_process_executor,
)
