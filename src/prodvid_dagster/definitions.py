"""The one `Definitions` of prodvid: `dagster dev` loads it through workspace.yaml at the repo root."""

import dagster as dg

from prodvid_dagster.assets import ASSETS
from prodvid_dagster.checks import CHECKS
from prodvid_dagster.inbox_asset import inbox_asset
from prodvid_dagster.io_manager import ObjectStoreIOManager
from prodvid_dagster.jobs import prodvid_job
from prodvid_dagster.resources import ModelsResource, StoreResource
from prodvid_dagster.sensors import inbox_sensor

# Bound at launch, so the IO manager gets the run's `store` config too: a plain `StoreResource()` nested in
# the IO manager keeps its own (empty) config, and a run configured with another location would store its
# canvas and mask in $PRODVID_STORE and look for its hero image there (the crash harness found it).
store = StoreResource.configure_at_launch()

defs = dg.Definitions(
    assets=[inbox_asset, *ASSETS],
    asset_checks=CHECKS,
    jobs=[prodvid_job],
    sensors=[inbox_sensor],
    resources={"models": ModelsResource(), "store": store, "io_manager": ObjectStoreIOManager(store=store)},
    executor=dg.in_process_executor,
)
