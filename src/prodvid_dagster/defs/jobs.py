"""The job the inbox sensor launches: the five assets and their checks, in one process.

The in-process executor runs every step in the run's own process, so each model is loaded once per run
(once for all SKUs of a single-run backfill). `hero_image` and `frames` sit in the `gpu` pool and the job's
runs carry the `prodvid/gpu` tag; the shipped dagster.yaml limits both to one run at a time. It also turns
run retries on: a retry re-executes from failure, and `frames` resumes from its world checkpoint.
"""

import dagster as dg

from prodvid_dagster.defs import assets

__all__ = ["prodvid_job", "GPU_RUN_TAG"]

GPU_RUN_TAG = "prodvid/gpu"

prodvid_job = dg.define_asset_job(
    "prodvid",
    selection=dg.AssetSelection.assets(*assets.ASSETS),
    executor_def=dg.in_process_executor,
    # `tags`, not `run_tags`: a run launched over GraphQL (the launchpad, "Materialize") gets the job's
    # `tags` only (dagster_graphql's create_valid_pipeline_run), and `run_tags` left unset default to them,
    # so every run of the job carries the tag, however it was launched.
    tags={GPU_RUN_TAG: "1"},
    description="Canvas, mask, hero image, frames and video of its SKUs, with their checks.",
)
