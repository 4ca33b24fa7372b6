"""The resources every asset, check and sensor gets, and the executor of runs launched from the asset graph.

`load_from_defs_folder` takes resources from a `Definitions` in a defs module (it binds nothing by itself),
so they are given here, once for the whole code location.
"""

import dagster as dg

from prodvid_dagster.io_manager import ObjectStoreIOManager
from prodvid_dagster.resources import ModelsResource, StoreResource


@dg.definitions
def resources() -> dg.Definitions:
    # Bound at launch, so the IO manager gets the run's `store` config too: a plain `StoreResource()` nested
    # in the IO manager keeps its own (empty) config, and a run configured with another location would store
    # its canvas and mask in $PRODVID_STORE and look for its hero image there (the crash harness found it).
    store = StoreResource.configure_at_launch()
    return dg.Definitions(
        resources={
            "models": ModelsResource(),
            "store": store,
            "io_manager": ObjectStoreIOManager(store=store),
        },
        executor=dg.in_process_executor,
    )
