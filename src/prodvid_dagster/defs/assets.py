"""The five assets, one dynamic partition per SKU: expanded_canvas → mask → hero_image → frames → video.

Each asset is a call into `prodvid_core` plus the metadata a person wants in the UI. Each returns a dict
keyed by SKU covering every partition of its step (one in a normal run, many in a single-run backfill,
where the models stay loaded for all SKUs); `io_manager.ObjectStoreIOManager` stores the entries as files.

The scene comes from the SKU's brief, `inbox/<SKU>.json`; any field set in the run config wins, and
`ModelsResource` (with its `PRODVID_*` env vars) gives the defaults of what neither sets. The run config of
a SKU is one `SkuConfig`, on the first step, `expanded_canvas` (the sensor fills it from the brief; in the
launchpad its first fields are the prompt, format, camera and photo). `hero_image` and `frames` read it from
the run's config, so a re-execution from failure keeps it. A `photo` in it (a path or `s3://` URL) is
checked like any photo and copied into the inbox: a SKU made from the launchpad alone.
"""

import base64
import contextlib
import io
import time
import warnings
from collections.abc import Iterator

import dagster as dg
from PIL import Image
from pydantic import Field

from prodvid_core import camera, formats, inbox, layout, media, photo_drop, request, resample
from prodvid_core.canvas import Canvas
from prodvid_core.errors import InvalidInputError, ProdvidError
from prodvid_core.frames import FrameSet
from prodvid_core.hero import HeroResult
from prodvid_core.mask import segment
from prodvid_core.models import native_size
from prodvid_core.render import load_frames
from prodvid_core.run import Settings, make_frames_batch, make_heroes, make_video
from prodvid_core.storage import ObjectStore
from prodvid_core.video import VideoResult
from prodvid_dagster.defs.inbox_asset import INBOX
from prodvid_dagster.media_links import open_links
from prodvid_dagster.partitions import sku_partitions
from prodvid_dagster.resources import ModelsResource, StoreResource

__all__ = [
    "SkuConfig",
    "expanded_canvas",
    "mask",
    "hero_image",
    "frames",
    "video",
    "ASSETS",
]

# Single-run backfills load the models once for many SKUs; Dagster 1.13 still calls `backfill_policy` beta.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

GROUP = "prodvid"
GPU_POOL = "gpu"
FRAMES_RETRY = dg.RetryPolicy(max_retries=2, delay=2)
# The metadata key of a failed first step that lists the SKUs that passed their checks, and the sensor that
# runs them again (sensors.backfill_remainder_sensor).
GOOD_SKUS = "good skus"
REMAINDER_SENSOR = "backfill_remainder_sensor"
_PARTITIONED = {
    "partitions_def": sku_partitions,
    "group_name": GROUP,
    "backfill_policy": dg.BackfillPolicy.single_run(),
}


class SkuConfig(dg.Config):
    """A SKU's brief as run config, every field optional: unset fields come from `inbox/<SKU>.json`, then
    from `ModelsResource` (`PRODVID_FORMAT`, ...). The first four are what a new SKU needs: their default is
    "" (unset) rather than None, so that the launchpad's "Scaffold all default config" writes them out, and
    only them; `photo` is only for a SKU whose photo is not in the inbox yet."""

    prompt: str = Field("", description="The scene, e.g. 'on a marble kitchen counter' ('': the brief's).")
    format: str = Field(
        "",
        description=f"Output size: {', '.join(formats.PRESETS)} or WxH with even sides, e.g. 1080x1350 "
        "('': the brief's, else $PRODVID_FORMAT, else square).",
    )
    camera: str = Field(
        "",
        description=f"A path name ({', '.join(camera.PATHS)}) or a JSON object like a brief's camera, "
        """{"path": "pan", "distance": [-0.1, 0]} ('': the brief's, else drift).""",
    )
    photo: str = Field(
        "",
        description="The product photo, if the inbox has none: a path on the machine the run runs on or "
        "s3://bucket/key. It is checked, then copied into the inbox as <SKU>.png/.jpg/.webp ('': the "
        "inbox's).",
    )
    negative_prompt: str | None = Field(None, description="What the scene must not show.")
    seed: int | None = Field(None, description="Seed of every diffusion call (0 or more).")
    anchor: str | None = Field(None, description=f"Where the product sits: {', '.join(formats.ANCHORS)}.")
    fill: float | None = Field(
        None, description="Largest share of the canvas width and height the product takes."
    )
    margin: float | None = Field(
        None, description="Share of the canvas kept clear around the product on each side, 0 to 0.4."
    )
    num_frames: int | None = Field(None, description="Frames in the video, counting the hero image.")
    seconds: float | None = Field(
        None, description="The video's length instead of num_frames: round(seconds * fps) + 1 frames."
    )
    fps: int | None = Field(None, description="Frames per second of the video.")

    def overrides(self, sku: str) -> dict:
        """The brief fields this config sets, for `inbox.brief_with` (None: the brief's, or the default)."""
        values = self.model_dump(exclude={"photo", "camera"})
        values = {k: (None if v == "" else v) for k, v in values.items()}
        if self.camera.strip():
            values["camera"] = camera.parse_spec(self.camera, sku=sku, what="config `camera`")
        return values


def _sku_config(context: dg.AssetExecutionContext) -> SkuConfig:
    """The run's `SkuConfig` (on `expanded_canvas`), also in steps after it and in a re-execution of them;
    empty when the run sets none (a run of later steps only: the brief in the inbox alone)."""
    config = context.run.run_config.get("ops", {}).get("expanded_canvas", {}).get("config", {})
    return SkuConfig(**config)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A user mistake fails the step with its one-line message, and is not retried: retrying cannot fix it."""
    try:
        yield
    except ProdvidError as e:
        # `from None`: the message says all; the stack of prodvid's own frames and a chained exception
        # under it would only bury it in the UI.
        raise dg.Failure(description=str(e), allow_retries=False) from None


def _settings(models: ModelsResource) -> Settings:
    """The resource's settings; one that cannot work (no steps, say) fails the step once, with its name."""
    with _user_errors():
        return models.settings()


@contextlib.contextmanager
def _stop_when_terminated(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Terminate stops `frames`, not only its attempt: Dagster turns an interrupt of a step that has a
    RetryPolicy into a retry, and the in-process executor retries it at once in the same run, which then
    ends SUCCESS (dagster-io/dagster#15026). When the run is being terminated, the step fails without a retry
    instead and the run ends CANCELED; re-executing it from failure resumes from the stored frames."""
    try:
        yield
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError) as e:
        run = context.instance.get_run_by_id(context.run_id)
        if run is None or run.status not in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED):
            raise  # a signal to the run worker, not a Terminate: Dagster's own handling
        skus = ", ".join(context.partition_keys)
        raise dg.Failure(
            description=f"SKU {skus}: the run was terminated while making frames. The frames stored so far "
            "are kept: re-execute the run from failure to make only the missing ones.",
            allow_retries=False,
        ) from e


def _preview(image: Image.Image) -> dg.MetadataValue:
    """A thumbnail as a markdown data URI, under the 1,000 characters the UI renders in place."""
    for side, quality in ((64, 80), (64, 50), (48, 50), (32, 40)):
        thumb = image.convert("RGB")
        thumb.thumbnail((side, side))
        buf = io.BytesIO()
        thumb.save(buf, format="WEBP", quality=quality)
        md = f"![preview](data:image/webp;base64,{base64.b64encode(buf.getvalue()).decode()})"
        if len(md) < 1000:
            return dg.MetadataValue.md(md)
    return dg.MetadataValue.md("(preview too large to show in place)")


def _companions(frame_set: FrameSet) -> list[str]:
    """The other SKUs whose diffusion calls this SKU's frames shared (`models.batch_size` above 1)."""
    batches = (call.get("batch", []) for call in frame_set.manifest["calls"])
    return sorted({sku for batch in batches for sku in batch} - {frame_set.sku})


def _windows(manifest: dict, native: int) -> str:
    """The calls' windows (output pixels) and the size the model paints each at, so a person sees the
    model's cost next to the output's size; e.g. at native 512: `1080x1980 at 384x640 (1 call), 1080x1536 at
    448x576 (2 calls)` (the buckets, `resample`)."""
    counts: dict[tuple[int, int], int] = {}
    for call in manifest["calls"]:
        left, top, right, bottom = call["window"]
        counts[(right - left, bottom - top)] = counts.get((right - left, bottom - top), 0) + 1
    return (
        ", ".join(
            f"{w}x{h} at {'x'.join(map(str, resample.working_size((w, h), native=native)))} "
            f"({n} call{'s' if n > 1 else ''})"
            for (w, h), n in counts.items()
        )
        or "(none: every frame lies inside the hero image)"
    )


def _where(store: ObjectStore, key: str) -> dg.MetadataValue:
    url = store.url(key)
    return dg.MetadataValue.url(url) if "://" in url else dg.MetadataValue.path(url)


def _photo(
    st: ObjectStore, sku: str, config: SkuConfig, store: StoreResource, skus: list[str]
) -> tuple[bytes, str | None, str | None]:
    """The SKU's photo: its bytes, its inbox key (None while it is still to be copied there) and its suffix
    (the one to copy it under). From `config.photo` if given, else the one in the inbox."""
    found = inbox.photos(st, sku)
    if not config.photo.strip():
        key = inbox.photo_key(st, sku)
        return st.read_bytes(key), key, None
    if len(skus) > 1:
        raise InvalidInputError(
            f"SKUs {', '.join(skus)}: config `photo` names one photo, and this run makes {len(skus)} SKUs; "
            "give it in a run of one SKU."
        )
    data, suffix = photo_drop.read_photo(
        config.photo.strip(), sku=sku, what="config `photo`", endpoint_url=store.s3_endpoint_url
    )
    if len(found) > 1:
        inbox.photo_key(st, sku)  # raises: two photos already
    return data, (found[0] if found else None), suffix


def _tag_run(context: dg.AssetExecutionContext, sku: str, checksum: str) -> None:
    """Give a run of one SKU the sensor's `prodvid/*` tags however it was launched (the launchpad, the asset
    graph, GraphQL), so that every run of a SKU is found by the same filter in the runs list."""
    tags = {"prodvid/sku": sku, "prodvid/brief": checksum}
    if any(context.run.tags.get(k) != v for k, v in tags.items()):
        context.instance.add_run_tags(context.run_id, tags)


def _checked(
    context: dg.AssetExecutionContext,
    st: ObjectStore,
    config: SkuConfig,
    store: StoreResource,
    settings: Settings,
) -> dict[str, request.Checked]:
    """Every SKU of the step checked (`request.check_sku`: id, brief with this run's `SkuConfig`, camera path,
    photo) before any is stored; a photo named in the config goes into the inbox only once all passed.
    Dagster 1.13 cannot fail one partition of a step that covers many (dagster-io/dagster#17836), so bad SKUs
    fail the step, each named on a line of its own, and the failure's metadata lists the SKUs that passed:
    `backfill_remainder_sensor` runs those again without the bad ones."""
    selection = context.run.asset_selection
    makes_hero = not selection or dg.AssetKey("hero_image") in selection  # None or empty: every asset
    skus = list(context.partition_keys)
    checked, bad, drops, briefs = {}, {}, {}, {}
    for sku in skus:
        try:
            briefs[sku] = inbox.brief_with(st, sku, require_prompt=makes_hero, **config.overrides(sku))
            data, photo, suffix = _photo(st, sku, config, store, skus)
            checked[sku] = request.check_sku(sku, data, briefs[sku], settings)
            if suffix is not None:
                drops[sku] = (data, suffix, photo)
        except ProdvidError as e:
            bad[sku] = str(e)
    if bad:
        lines = list(bad.values())
        if checked:
            lines.append(
                f"The other {len(checked)} SKU(s) of this run passed their checks and are run again without "
                f"the bad one(s) by the sensor {REMAINDER_SENSOR}: {', '.join(list(checked)[:20])}"
                + (" ..." if len(checked) > 20 else "")
            )
        raise dg.Failure(
            description="\n".join(lines),
            metadata={GOOD_SKUS: dg.MetadataValue.json(list(checked)), "bad skus": ", ".join(bad)},
            allow_retries=False,
        ) from None
    for sku, (data, suffix, existing) in drops.items():
        with _user_errors():
            photo_drop.drop_photo(st, sku, data, suffix, existing=existing)
    if len(skus) == 1:
        _tag_run(context, skus[0], briefs[skus[0]].checksum())
    return checked


@dg.asset(**_PARTITIONED, kinds={"pillow"}, deps=[INBOX])
def expanded_canvas(
    context: dg.AssetExecutionContext, config: SkuConfig, models: ModelsResource, store: StoreResource
) -> dict[str, Canvas]:
    """The product photo, normalized and placed on a white canvas of the SKU's output format
    (`expanded_canvas/<SKU>.png` + placement JSON). The first step checks the whole request (models,
    device, and each SKU's brief with this run's config, camera path and photo) before anything is stored;
    a photo given in the config is copied into the inbox only once it passed."""
    settings, st = _settings(models), store.open()
    with _user_errors():
        request.check_settings(settings)
    checked = _checked(context, st, config, store, settings)
    for sku, ok in checked.items():
        for warning in ok.warnings:
            context.log.warning(warning)
        placed = ok.framing
        context.add_asset_metadata(
            {
                "preview": _preview(ok.canvas.image),
                "photo": _where(st, inbox.photo_key(st, sku)),
                "format": placed.format.name,
                "size": list(ok.canvas.image.size),
                "anchor": placed.anchor,
                "placement": dg.MetadataValue.json(ok.canvas.metadata()),
                "storage": _where(st, layout.canvas_png(sku)),
            },
            partition_key=sku,
        )
    return {sku: ok.canvas for sku, ok in checked.items()}


@dg.asset(**_PARTITIONED, kinds={"pillow"})
def mask(
    context: dg.AssetExecutionContext, expanded_canvas: dict[str, Canvas], store: StoreResource
) -> dict[str, Image.Image]:
    """The product's mask on the canvas: 255 product, 0 background (`mask/<SKU>.png`)."""
    st = store.open()
    out = {}
    for sku in context.partition_keys:
        with _user_errors():
            out[sku] = segment(expanded_canvas[sku].image, sku=sku)
        histogram = out[sku].convert("L").histogram()
        context.add_asset_metadata(
            {
                "preview": _preview(out[sku]),
                "product pixels": sum(histogram[128:]),
                "storage": _where(st, layout.mask_png(sku)),
            },
            partition_key=sku,
        )
    return out


@dg.asset(**_PARTITIONED, pool=GPU_POOL, kinds={"pytorch"})
def hero_image(
    context: dg.AssetExecutionContext,
    expanded_canvas: dict[str, Canvas],
    mask: dict[str, Image.Image],
    models: ModelsResource,
    store: StoreResource,
) -> dict[str, HeroResult]:
    """The scene painted around the product by the hero model, every product pixel pasted back exactly
    (`hero_image/<SKU>.png` + JSON). Reused when the stored one was made with the same settings."""
    settings, st, config = _settings(models), store.open(), _sku_config(context)
    with _user_errors():
        briefs = {sku: inbox.brief_with(st, sku, **config.overrides(sku)) for sku in context.partition_keys}
        made = make_heroes(
            st, {sku: (expanded_canvas[sku], mask[sku], briefs[sku]) for sku in briefs}, settings
        )
    for sku, (hero, reused) in made.items():
        context.log.info(f"SKU {sku}: hero image {'reused' if reused else 'made'} in {hero.seconds} s")
        context.add_asset_metadata(
            {
                "preview": _preview(hero.image),
                "size": list(hero.image.size),
                "model": Settings.describe(hero.model),
                "prompt": hero.prompt,
                "seed": hero.seed,
                "steps": hero.steps,
                "guidance": hero.guidance,
                "attempts": hero.attempts,
                "seconds": hero.seconds,
                "diffusion calls": 0 if reused else hero.attempts,
                "batch": ", ".join(hero.batch),
                "reused": reused,
                **open_links(store, {"full size": layout.hero_png(sku)}),
                "storage": _where(st, layout.hero_png(sku)),
            },
            partition_key=sku,
        )
    return {sku: hero for sku, (hero, _) in made.items()}


@dg.asset(**_PARTITIONED, pool=GPU_POOL, retry_policy=FRAMES_RETRY, kinds={"pytorch"})
def frames(
    context: dg.AssetExecutionContext,
    hero_image: dict[str, HeroResult],
    models: ModelsResource,
    store: StoreResource,
) -> dict[str, FrameSet]:
    """The video's frames, windows of a world canvas painted once (`frames/<SKU>/world.png` + manifest.json;
    per-frame PNGs only with `models.keep_frames`). The world is checkpointed after each diffusion call; a
    retry or a re-execution resumes after the last checkpointed call and paints only the missing ones."""
    settings, st, config = _settings(models), store.open(), _sku_config(context)
    with _user_errors(), _stop_when_terminated(context):
        briefs = {}
        for sku in context.partition_keys:
            hero = hero_image[sku]  # the scene the hero image was made with, whatever the brief says now
            scene = {"prompt": hero.prompt, "negative_prompt": hero.negative_prompt, "seed": hero.seed}
            briefs[sku] = inbox.brief_with(st, sku, **{**config.overrides(sku), **scene})
        totals = {
            sku: brief.camera_path(sku, hero_image[sku].image.size).num_frames
            for sku, brief in briefs.items()
        }

        def on_frame(sku: str, record: dict, reused: bool) -> None:
            state = "reused" if reused else "made"
            context.log.info(f"SKU {sku}: frame {record['index'] + 1}/{totals[sku]} {state}")

        inputs = {sku: (hero_image[sku].image, brief) for sku, brief in briefs.items()}
        pipe = models.pipeline(settings.frames_model)
        out = make_frames_batch(st, inputs, settings, pipe=pipe, on_frame=on_frame)
    native = settings.model_size or native_size(pipe)
    for sku, frame_set in out.items():
        first, last = load_frames(st, sku, frame_set.manifest, indices=[0, frame_set.count - 1])
        sheet = media.save_contact_sheet(st, sku, frame_set.manifest)
        context.add_asset_metadata(
            {
                "first frame": _preview(Image.fromarray(first)),
                "last frame": _preview(Image.fromarray(last)),
                "frames": frame_set.count,
                "size": list(frame_set.manifest["size"]),
                "model size": native,
                "windows": _windows(frame_set.manifest, native),
                "diffusion calls": frame_set.calls_made,
                "frames reused": frame_set.frames_reused,
                "seconds": frame_set.seconds,
                "gpu idle seconds": frame_set.gpu_idle_seconds,  # caller time outside diffusion calls
                "model": Settings.describe(frame_set.manifest["model"]),
                "seed": frame_set.manifest["seed"],
                "steps": frame_set.manifest["steps"],
                "camera": dg.MetadataValue.json(briefs[sku].camera),
                "painted with": ", ".join(_companions(frame_set)) or "(alone)",
                **open_links(store, {"contact sheet": sheet}),
                "storage": _where(st, layout.frames_manifest(sku)),
            },
            partition_key=sku,
        )
    return out


@dg.asset(**_PARTITIONED, kinds={"ffmpeg"})
def video(
    context: dg.AssetExecutionContext, frames: dict[str, FrameSet], store: StoreResource
) -> dict[str, VideoResult]:
    """The frames as an H.264 MP4 that browsers play (`video/<SKU>.mp4` + JSON), verified by decoding.
    Reused when the stored one was encoded from the same frames at the same frame rate."""
    st = store.open()
    out = {}
    for sku in context.partition_keys:
        start = time.perf_counter()
        with _user_errors():
            out[sku], reused = make_video(st, sku, frames[sku])
        context.add_asset_metadata(
            {
                "reused": reused,
                "frames": out[sku].frame_count,
                "fps": out[sku].fps,
                "size": list(out[sku].size),
                "bytes": len(out[sku].data),
                "seconds": round(time.perf_counter() - start, 3),
                **open_links(store, {"play": layout.video_mp4(sku)}),
                "storage": _where(st, layout.video_mp4(sku)),
            },
            partition_key=sku,
        )
    return out


ASSETS = [expanded_canvas, mask, hero_image, frames, video]
