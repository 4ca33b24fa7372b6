"""The job the inbox sensor launches: the five assets and their checks, in one process.

The in-process executor runs every step in the run's own process, so each model is loaded once per run
(once for all SKUs of a single-run backfill). `hero_image` and `frames` sit in the `gpu` pool; the shipped
dagster.yaml lets one run that uses it go at a time. Run retries are turned on in dagster.yaml too; a retry
re-executes from failure, and `frames` resumes from its stored frames.
"""

import dagster as dg
from prodvid_dagster.assets import ASSETS

__all__ = ["prodvid_job"]

prodvid_job = dg.define_asset_job(
    "prodvid",
    selection=dg.AssetSelection.assets(*ASSETS),
    executor_def=dg.in_process_executor,
    description="Canvas, mask, hero image, frames and video of its SKUs, with their checks.",
)
