"""The whole chain for one SKU, the way the CLI runs it: canvas → mask → hero → frames → video.

Each step stores its result before the next starts, so a crash leaves every finished step on disk; a re-run
reuses a hero image made with the same settings and every diffusion call its stored world checkpoint shares.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

from PIL import Image

from prodvid_core import artifacts, frames, hero, layout, request, video
from prodvid_core.background import Writer
from prodvid_core.brief import Brief
from prodvid_core.canvas import Canvas
from prodvid_core.encoding import png_bytes, sha256
from prodvid_core.frames import FrameSet, OnDone, OnFrame
from prodvid_core.hero import HeroResult
from prodvid_core.inpaint import OnStep, batches, bucket_of
from prodvid_core.request import make_canvas
from prodvid_core.resample import SHAPES
from prodvid_core.settings import Settings, framing
from prodvid_core.storage import ObjectStore
from prodvid_core.video import VideoResult

__all__ = [
    "Settings",
    "SkuResult",
    "generate_sku",
    "generate_many",
    "framing",
    "make_canvas",
    "make_heroes",
    "make_frames_batch",
    "frame_settings",
    "make_video",
]


@dataclass
class SkuResult:
    """What `generate_sku` made, and where it stored it."""

    canvas: Canvas
    mask: Image.Image
    hero: HeroResult
    frames: FrameSet
    video: VideoResult
    hero_reused: bool
    video_reused: bool = False
    keys: list[str] = field(default_factory=list)


def make_heroes(
    store: ObjectStore,
    inputs: dict[str, tuple[Canvas, Image.Image, Brief]],
    settings: Settings,
    *,
    on_step: OnStep | None = None,
    overlap: bool = True,
) -> dict[str, tuple[HeroResult, bool]]:
    """The hero images of many SKUs (canvas, product mask and brief each), with whether each was reused.

    A stored hero image is reused when it was made from the same canvas with the same model, scene and
    settings and its PNG is intact; the others are painted `settings.batch_size` to a pipeline call and
    stored one by one as they are made, by a background writer while the next batch paints (`overlap`).
    `on_step` hears of each denoising step of the hero calls.
    """
    model = settings.model_key(settings.hero_model)
    out: dict[str, tuple[HeroResult, bool]] = {}
    requests, canvas_sha = [], {}
    for sku, (expanded, product, brief) in inputs.items():
        canvas_sha[sku] = sha256(png_bytes(expanded.image))
        wanted = {
            "model": model, "prompt": brief.prompt, "negative_prompt": brief.negative_prompt,
            "seed": brief.seed, "steps": settings.steps, "guidance": settings.guidance,
            "model_size": settings.model_size, "canvas_sha256": canvas_sha[sku], "shapes": SHAPES,
        }  # fmt: skip
        stored = _stored_hero(store, sku, wanted)
        if stored is not None:
            out[sku] = stored, True
        else:
            requests.append(
                hero.HeroRequest(
                    sku, expanded.image, product, brief.prompt, brief.negative_prompt, brief.seed
                )
            )
    if requests:
        pipe = settings.load(settings.hero_model)
        requests.sort(key=lambda r: bucket_of(pipe, r.canvas.size, settings.model_size))  # batch by bucket
        writer = Writer("heroes", overlap=overlap, backlog=2 * settings.batch_size)
        try:
            for batch in batches(requests, settings.batch_size):
                results = hero.generate_batch(
                    pipe,
                    batch,
                    steps=settings.steps,
                    guidance=settings.guidance,
                    model=model,
                    batch_size=len(batch),
                    native=settings.model_size,
                    on_step=on_step,
                )
                for request, result in zip(batch, results, strict=True):
                    save = functools.partial(artifacts.save_hero, canvas_sha256=canvas_sha[request.sku])
                    writer.submit(save, store, request.sku, result)  # stored while the next batch paints
                    out[request.sku] = result, False
            writer.drain()
        finally:
            writer.close()
    return {sku: out[sku] for sku in inputs}


def _stored_hero(store: ObjectStore, sku: str, wanted: dict) -> HeroResult | None:
    """The stored hero image if its sidecar matches `wanted` and its PNG is the one the sidecar describes."""
    stored = artifacts.read_json(store, layout.hero_json(sku))
    if not stored or any(stored.get(k) != v for k, v in wanted.items()):
        return None
    try:
        data = store.read_bytes(layout.hero_png(sku))
    except FileNotFoundError:
        return None
    return artifacts.hero_from(stored, data, sku=sku) if sha256(data) == stored.get("sha256") else None


def frame_settings(brief: Brief, settings: Settings) -> frames.FrameSettings:
    """The settings that decide a SKU's frames: its brief's scene, the run's painting settings."""
    return frames.FrameSettings(
        prompt=brief.prompt, negative_prompt=brief.negative_prompt, seed=brief.seed, steps=settings.steps,
        guidance=settings.guidance, lookahead=settings.lookahead, max_window=settings.max_window,
        model_size=settings.model_size, model=settings.model_key(settings.frames_model),
    )  # fmt: skip


def make_frames_batch(
    store: ObjectStore,
    inputs: dict[str, tuple[Image.Image, Brief]],
    settings: Settings,
    *,
    pipe=None,
    on_frame: OnFrame | None = None,
    on_done: OnDone | None = None,
    overlap: bool = True,
) -> dict[str, FrameSet]:
    """The frames of many SKUs (hero image and brief each), diffusion calls shared `settings.batch_size`
    SKUs at a time (`frames.generate_batch`; `on_done` and `overlap` as there)."""
    requests = [
        frames.FramesRequest(
            sku, hero_image, brief.camera_path(sku, hero_image.size), frame_settings(brief, settings)
        )
        for sku, (hero_image, brief) in inputs.items()
    ]
    pipe = pipe if pipe is not None else settings.load(settings.frames_model)
    results = frames.generate_batch(
        pipe,
        store,
        requests,
        batch_size=settings.batch_size,
        on_frame=on_frame,
        keep_frames=settings.keep_frames,
        overlap=overlap,
        on_done=on_done,
    )
    return {result.sku: result for result in results}


def make_video(store: ObjectStore, sku: str, frame_set: FrameSet) -> tuple[VideoResult, bool]:
    """The MP4 of the frames, rendered from the stored world, and whether it was reused: encoding is skipped
    when the stored MP4 was encoded from these very frames (their sha256s) at this frame rate and its bytes
    are intact."""
    source = _video_source(frame_set)
    stored = artifacts.read_json(store, layout.video_json(sku))
    if stored and stored.get("frames_sha256") == source:
        try:
            data = store.read_bytes(layout.video_mp4(sku))
        except FileNotFoundError:
            data = b""
        if sha256(data) == stored.get("sha256"):
            return artifacts.video_from(stored, data), True
    frames_iter = frames.load_frames(store, sku, frame_set.manifest)
    result = video.encode(frames_iter, fps=frame_set.manifest["fps"], sku=sku)
    artifacts.save_video(store, sku, result, frames_sha256=source)
    return result, False


def _video_source(frame_set: FrameSet) -> str:
    """What decides the MP4's bytes: the frames' pixels (the manifest's sha256s), their rate and the codec."""
    shas = [record["sha256"] for record in frame_set.manifest["frames"]]
    source = {"frames": shas, "fps": frame_set.manifest["fps"], "codec": video.CODEC}
    return sha256(json.dumps(source, sort_keys=True).encode())


def generate_sku(
    store: ObjectStore,
    sku: str,
    photo: bytes,
    brief: Brief,
    settings: Settings,
    *,
    on_frame: OnFrame | None = None,
    on_hero_step: OnStep | None = None,
    checked: request.Checked | None = None,
) -> SkuResult:
    """Make and store everything for one SKU: canvas, mask, hero image, frames and video (`checked`: as
    in `generate_many`).

    Example:
        >>> store = LocalStore("prodvid-data")
        >>> brief = parse_brief({"prompt": "on a marble kitchen counter"}, sku="MUG-1")
        >>> settings = Settings().with_preset("tiny")
        >>> result = generate_sku(store, "MUG-1", Path("mug.png").read_bytes(), brief, settings)
        >>> result.keys
    """
    done = {sku: checked} if checked is not None else None
    return generate_many(
        store, {sku: (photo, brief)}, settings, on_frame=on_frame, on_hero_step=on_hero_step, checked=done
    )[sku]


def generate_many(
    store: ObjectStore,
    inputs: dict[str, tuple[bytes, Brief]],
    settings: Settings,
    *,
    on_frame: OnFrame | None = None,
    on_hero_step: OnStep | None = None,
    checked: dict[str, request.Checked] | None = None,
    overlap: bool = True,
) -> dict[str, SkuResult]:
    """Make and store everything for many SKUs (photo bytes and brief each), each model loaded once.

    With `settings.batch_size` above 1 the SKUs share diffusion calls (README, "Many SKUs at once"). The
    whole request (every SKU id, camera path and photo, the models, the device: `request`) is checked
    before anything is stored or painted, so one bad input stops the run with its SKU named and nothing
    made or changed; `prodvid inbox` checks each SKU first and leaves the bad ones out. A caller that has
    checked the request itself (the CLI does, before it imports torch) passes `checked`, each SKU's
    `request.check_sku` result with `request.check_settings` passed, and the check is not done again: it
    costs a canvas and a product mask per SKU. Each step stores its results before the next starts.
    `on_hero_step` and `on_frame` follow the hero calls' denoising steps and the frames (progress bars).

    The GPU does not wait for the store: hero images are written, world checkpoints and manifests are
    written and each SKU's video is encoded on background threads while the next diffusion calls run, in
    the order a single thread would write them (`background.Writer`; `overlap=False` writes everything on
    the caller's thread). `SkuResult.frames.gpu_idle_seconds` says how long the GPU still waited.

    Example:
        >>> briefs = {sku: parse_brief(data, sku=sku) for sku, data in briefs_json.items()}
        >>> photos = {sku: Path(f"{sku}.png").read_bytes() for sku in briefs}
        >>> results = generate_many(store, {s: (photos[s], briefs[s]) for s in briefs}, settings)
    """
    # 1. Check the whole request before anything is stored or any model loaded: SKU ids, camera paths at
    #    each SKU's format, photos (their canvases are made here), then the models and the device
    if checked is None:
        checked = {
            sku: request.check_sku(sku, photo, brief, settings) for sku, (photo, brief) in inputs.items()
        }
        request.check_settings(settings)
    canvases = {sku: (c.canvas, c.mask) for sku, c in checked.items()}

    # 2. Canvases and masks (cheap, made every time; stored for people and for Dagster)
    keys = {
        sku: artifacts.save_canvas(store, sku, expanded) + artifacts.save_mask(store, sku, product)
        for sku, (expanded, product) in canvases.items()
    }

    # 3. Hero images (reused when made with the same settings)
    heroes = make_heroes(
        store,
        {sku: (*canvases[sku], brief) for sku, (_, brief) in inputs.items()},
        settings,
        on_step=on_hero_step,
        overlap=overlap,
    )

    # 4. Frames (resume from what is stored); 5. each SKU's video, encoded by its frames writer as soon as its
    #    frames are stored, while the next SKUs paint
    videos: dict[str, tuple[VideoResult, bool]] = {}

    def encode(frame_set: FrameSet) -> None:
        videos[frame_set.sku] = make_video(store, frame_set.sku, frame_set)

    frame_inputs = {sku: (heroes[sku][0].image, brief) for sku, (_, brief) in inputs.items()}
    frame_sets = make_frames_batch(
        store, frame_inputs, settings, on_frame=on_frame, on_done=encode, overlap=overlap
    )
    results = {}
    for sku in inputs:
        video_result, video_reused = videos[sku]
        keys[sku] += [layout.hero_png(sku), layout.hero_json(sku), *frame_sets[sku].keys]
        keys[sku] += [layout.video_mp4(sku), layout.video_json(sku)]
        expanded, product = canvases[sku]
        hero_result, hero_reused = heroes[sku]
        results[sku] = SkuResult(
            expanded,
            product,
            hero_result,
            frame_sets[sku],
            video_result,
            hero_reused,
            video_reused,
            keys[sku],
        )
    return results
