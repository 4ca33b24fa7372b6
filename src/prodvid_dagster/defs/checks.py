"""Per-SKU blocking checks: the product is exact in the hero image and in every frame, no frame is blank,
and the video decodes to the frames it was made from. Frames are rendered from the stored world canvas.

Each check is partitioned like its asset, so its result is recorded against the SKU. In a single-run
backfill one check step covers many SKUs: it records one evaluation per SKU and returns their summary
(which Dagster stores without a partition), failing if any SKU fails.
"""

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from PIL import Image

from prodvid_core.canvas import Canvas
from prodvid_core.frames import FrameSet
from prodvid_core.hero import HeroResult
from prodvid_core.inpaint import is_unusable
from prodvid_core.render import load_frames
from prodvid_core.verify import product_diff
from prodvid_core.video import VideoResult, probe
from prodvid_dagster.defs import assets
from prodvid_dagster.partitions import sku_partitions
from prodvid_dagster.resources import StoreResource

__all__ = ["hero_product_exact", "frames_product_exact", "frames_not_blank", "video_decodes", "CHECKS"]

# Per-SKU check results need `partitions_def` on the check, which Dagster 1.13 calls a preview.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)

_PRODUCT_INS = {"expanded_canvas": dg.AssetIn("expanded_canvas"), "mask": dg.AssetIn("mask")}


@dataclass
class _Outcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def _report(context: dg.AssetCheckExecutionContext, outcomes: dict[str, _Outcome]) -> dg.AssetCheckResult:
    """One SKU: its result, recorded against its partition by Dagster. Many: one evaluation per SKU
    logged here against its partition and its materialization, and a summary returned."""
    if len(outcomes) == 1:
        (outcome,) = outcomes.values()
        return dg.AssetCheckResult(
            passed=outcome.passed, description=outcome.description, metadata=outcome.metadata
        )
    spec = context.check_specs[0]
    for sku, outcome in outcomes.items():
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=spec.asset_key, asset_partitions=[sku]), limit=1
        ).records
        target = (  # links the evaluation to the SKU's materialization, as Dagster does for one SKU
            AssetCheckEvaluationTargetMaterializationData(
                storage_id=records[0].storage_id, run_id=records[0].run_id, timestamp=records[0].timestamp
            )
            if records
            else None
        )
        context.op_execution_context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=spec.asset_key,
                check_name=spec.name,
                passed=outcome.passed,
                description=outcome.description,
                metadata=outcome.metadata,
                target_materialization_data=target,
                blocking=True,
                partition=sku,
            )
        )
    failed = [f"{outcome.description}" for outcome in outcomes.values() if not outcome.passed]
    return dg.AssetCheckResult(
        passed=not failed,
        description="; ".join(failed) if failed else f"{len(outcomes)} SKUs passed: {', '.join(outcomes)}.",
        metadata={"SKUs": len(outcomes), "failed": len(failed)},
    )


def _skus(context: dg.AssetCheckExecutionContext) -> Iterable[str]:
    return context.partition_keys


@dg.asset_check(
    asset=assets.hero_image, blocking=True, partitions_def=sku_partitions, additional_ins=_PRODUCT_INS
)
def hero_product_exact(
    context: dg.AssetCheckExecutionContext,
    hero_image: dict[str, HeroResult],
    expanded_canvas: dict[str, Canvas],
    mask: dict[str, Image.Image],
) -> dg.AssetCheckResult:
    """Every product pixel of the hero image equals the expanded canvas exactly (difference 0)."""
    outcomes = {}
    for sku in _skus(context):
        diff = product_diff(expanded_canvas[sku].image, mask[sku], hero_image[sku].image)
        outcomes[sku] = _Outcome(
            passed=diff.exact,
            description=(
                f"SKU {sku}: all {diff.visible} product pixels of the hero image are exact."
                if diff.exact
                else f"SKU {sku}: {diff.differing} of {diff.visible} product pixels of the hero image differ "
                f"from the canvas (first at x={diff.first[0]}, y={diff.first[1]})."
            ),
            metadata={"product pixels": diff.visible, "differing pixels": diff.differing},
        )
    return _report(context, outcomes)


@dg.asset_check(
    asset=assets.frames, blocking=True, partitions_def=sku_partitions, additional_ins=_PRODUCT_INS
)
def frames_product_exact(
    context: dg.AssetCheckExecutionContext,
    frames: dict[str, FrameSet],
    expanded_canvas: dict[str, Canvas],
    mask: dict[str, Image.Image],
    store: StoreResource,
) -> dg.AssetCheckResult:
    """In every frame, every visible product pixel equals the canvas at its shifted position exactly."""
    st = store.open()
    outcomes = {}
    for sku in _skus(context):
        records = frames[sku].manifest["frames"]
        bad_frames, checked = [], 0
        rendered = load_frames(st, sku, frames[sku].manifest, verify=False)  # the pixels are what is checked
        for record, image in zip(records, rendered, strict=True):
            diff = product_diff(expanded_canvas[sku].image, mask[sku], image, offset=tuple(record["offset"]))
            checked += diff.visible
            if not diff.exact:
                bad_frames.append(
                    f"frame {record['index']}: {diff.differing} pixels "
                    f"(first at x={diff.first[0]}, y={diff.first[1]})"
                )
        outcomes[sku] = _Outcome(
            passed=not bad_frames,
            description=(
                f"SKU {sku}: the product is exact in all {len(records)} frames ({checked} pixels checked)."
                if not bad_frames
                else f"SKU {sku}: product pixels differ in {len(bad_frames)} of {len(records)} frames: "
                + "; ".join(bad_frames[:5])
            ),
            metadata={"frames": len(records), "pixels checked": checked, "frames differing": len(bad_frames)},
        )
    return _report(context, outcomes)


@dg.asset_check(asset=assets.frames, blocking=True, partitions_def=sku_partitions)
def frames_not_blank(
    context: dg.AssetCheckExecutionContext, frames: dict[str, FrameSet], store: StoreResource
) -> dg.AssetCheckResult:
    """No frame is blank, constant or NaN (the core's own test for unusable model output)."""
    st = store.open()
    outcomes = {}
    for sku in _skus(context):
        blank = []
        rendered = load_frames(st, sku, frames[sku].manifest, verify=False)
        for record, image in zip(frames[sku].manifest["frames"], rendered, strict=True):
            reason = is_unusable(image.astype(np.float32) / 255.0)
            if reason:
                blank.append(f"frame {record['index']} is {reason}")
        count = frames[sku].count
        outcomes[sku] = _Outcome(
            passed=not blank,
            description=f"SKU {sku}: "
            + ("; ".join(blank[:5]) if blank else f"none of the {count} frames is blank."),
            metadata={"frames": count, "blank frames": len(blank)},
        )
    return _report(context, outcomes)


@dg.asset_check(
    asset=assets.video,
    blocking=True,
    partitions_def=sku_partitions,
    additional_ins={"frames": dg.AssetIn("frames")},
)
def video_decodes(
    context: dg.AssetCheckExecutionContext, video: dict[str, VideoResult], frames: dict[str, FrameSet]
) -> dg.AssetCheckResult:
    """The MP4 decodes to the expected frame count, fps and size (those of the frames' manifest)."""
    outcomes = {}
    for sku in _skus(context):
        manifest = frames[sku].manifest
        expected = (len(manifest["frames"]), manifest["fps"], tuple(manifest["size"]))
        count, fps, size = probe(video[sku].data)
        got = (count, round(fps), tuple(size))
        outcomes[sku] = _Outcome(
            passed=got == expected,
            description=(
                f"SKU {sku}: the video decodes to {count} frames at {fps:g} fps, {size[0]}x{size[1]}"
                + (
                    ", as expected."
                    if got == expected
                    else f", expected {expected[0]} frames at "
                    f"{expected[1]:g} fps, {expected[2][0]}x{expected[2][1]}."
                )
            ),
            metadata={"frames": count, "fps": fps, "size": list(size)},
        )
    return _report(context, outcomes)


CHECKS = [hero_product_exact, frames_product_exact, frames_not_blank, video_decodes]
