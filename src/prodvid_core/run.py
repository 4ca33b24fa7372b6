"""The whole chain for one SKU, the way the CLI runs it: canvas → mask → hero → frames → video.

Each step stores its result before the next starts, so a crash leaves every finished step on disk; a re-run
reuses a hero image made with the same settings and every diffusion call its stored world checkpoint shares.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace

from PIL import Image

from prodvid_core import artifacts, canvas, formats, frames, hero, layout, mask, models, video
from prodvid_core.brief import Brief
from prodvid_core.canvas import Canvas
from prodvid_core.encoding import png_bytes, sha256
from prodvid_core.errors import SettingsError, validate_sku
from prodvid_core.frames import FrameSet, OnFrame
from prodvid_core.hero import HeroResult
from prodvid_core.inpaint import batches
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


@dataclass(frozen=True)
class Settings:
    """Settings shared by the CLI, the Python API and the Dagster resources (same names, same env vars).

    `format`, `anchor`, `fill` and `margin` are the defaults of every SKU whose brief does not set them
    (`framing`). `size` is the older way to ask for a square format: `size=N` means `format="NxN"`.
    """

    hero_model: str = models.DEFAULT_HERO_MODEL
    frames_model: str = models.DEFAULT_FRAMES_MODEL
    device: str = "auto"
    dtype: str | None = None
    scheduler: str | None = None
    format: str = formats.DEFAULT_FORMAT
    size: int | None = None
    anchor: str = "bottom"
    fill: float = 0.7
    margin: float = 0.0
    steps: int = 25
    guidance: float = 7.5
    lookahead: int = 128
    max_window: int = 768
    model_size: int | None = None
    batch_size: int = 1
    keep_frames: bool = False  # also store frames/<SKU>/00000.png …; the world and manifest are the frames

    def __post_init__(self) -> None:
        """Refuse settings that cannot work before any model is loaded or any SKU is touched."""
        size_ok = (
            self.size is None or formats.MIN_SIDE <= self.size <= formats.MAX_SIDE and self.size % 2 == 0
        )
        if size_ok and self.size is not None:
            square = f"{self.size}x{self.size}"
            if self.format not in (formats.DEFAULT_FORMAT, square):
                raise SettingsError(
                    f"`size` ({self.size}) and `format` ({self.format!r}) both set the output size; set one. "
                    "They come from flags, Dagster config, PRODVID_SIZE or PRODVID_FORMAT."
                )
            object.__setattr__(self, "format", square)  # frozen; `size` is only another way to say it
        if _valid(formats.parse_format, self.format):
            object.__setattr__(self, "format", formats.parse_format(self.format).name)  # "Story" is "story"
        rules = {
            "format": (_valid(formats.parse_format, self.format), _FORMAT_WANT),
            "size": (size_ok, f"even, {formats.MIN_SIDE} to {formats.MAX_SIDE}"),
            "anchor": (self.anchor in formats.ANCHORS, f"one of {', '.join(formats.ANCHORS)}"),
            "fill": (_valid(formats.check_fill, self.fill), "in (0, 1]"),
            "margin": (_valid(formats.check_margin, self.margin), f"in [0, {formats.MAX_MARGIN}]"),
            "steps": (self.steps >= 1, "1 or more"),
            "guidance": (self.guidance >= 0, "0 or more"),
            "lookahead": (self.lookahead >= 0, "0 or more"),
            "max_window": (self.max_window >= 64, "64 or more (model pixels)"),
            "model_size": (
                self.model_size is None or (self.model_size >= 64 and self.model_size % 8 == 0),
                "unset (the checkpoint's own) or a multiple of 8, 64 or more",
            ),
            "batch_size": (self.batch_size >= 1, "1 or more"),
        }
        bad = {name: want for name, (ok, want) in rules.items() if not ok}
        if bad:
            problems = "; ".join(
                f"`{n}` has to be {want} but is {getattr(self, n)!r}" for n, want in bad.items()
            )
            env = ", ".join(f"PRODVID_{n.upper()}" for n in bad)
            raise SettingsError(f"{problems}. It comes from a flag, Dagster config or {env}.")

    @classmethod
    def from_env(cls, preset: str | None = None, **overrides) -> Settings:
        """Defaults, then `PRODVID_*` env vars, then `preset`, then `overrides` (CLI flags, Dagster config)
        that are not None. `PRODVID_PRESET=tiny` picks the tiny models unless a model variable names one.
        `format` and `size` are one setting: a flag for either replaces both env vars. The result is
        checked once, as a whole: a flag may fix what an env var alone would not allow."""
        values = _preset_models(os.environ["PRODVID_PRESET"]) if os.environ.get("PRODVID_PRESET") else {}
        layers = [_env_settings(), _preset_models(preset) if preset else {}]
        layers.append({k: v for k, v in overrides.items() if v is not None})
        for layer in layers:
            if "format" in layer or "size" in layer:
                values = {k: v for k, v in values.items() if k not in ("format", "size")}
            values.update(layer)
        return cls(**values)

    @property
    def output(self) -> formats.Format:
        """The default output format (a brief may choose another: `framing`)."""
        return formats.parse_format(self.format)

    def with_preset(self, preset: str) -> Settings:
        return replace(self, **_preset_models(preset))

    def model_key(self, model: str) -> str:
        """What identifies a model's numerics in fingerprints: the checkpoint, scheduler, device and dtype."""
        device = models.resolve_device(self.device)
        return f"{model}|{self.scheduler or 'default'}|{device}|{self.dtype or 'auto'}"

    def load(self, model: str):
        return models.load_inpaint_pipeline(
            model, device=self.device, dtype=self.dtype, scheduler=self.scheduler
        )


_FORMAT_WANT = f"one of {', '.join(formats.PRESETS)} or WxH with even sides (e.g. 1080x1350)"


def _valid(check, value) -> bool:
    """Whether `check(value)` accepts `value` (the `formats` checks raise ValueError)."""
    try:
        check(value)
    except ValueError:
        return False
    return True


def _preset_models(preset: str) -> dict[str, str]:
    if preset not in models.PRESETS:
        choices = ", ".join(map(repr, models.PRESETS))
        raise ValueError(f"`preset` has to be one of {choices} but is {preset!r}.")
    return {"hero_model": preset, "frames_model": preset}


_KINDS = {"int": "number (int)", "float": "number (float)", "bool": "boolean (1/0, true/false)"}


def _env_settings() -> dict:
    """The `PRODVID_<FIELD>` env vars that are set, converted to each field's type."""
    values = {}
    for f in fields(Settings):
        raw = os.environ.get(f"PRODVID_{f.name.upper()}")
        if not raw:
            continue
        kind = str(f.type).removesuffix(" | None")
        try:
            values[f.name] = {"int": int, "float": float, "bool": _bool}.get(kind, str)(raw)
        except ValueError:
            raise SettingsError(
                f"PRODVID_{f.name.upper()} must be a {_KINDS.get(kind, kind)} but is {raw!r}."
            ) from None
    return values


def _bool(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


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


def framing(brief: Brief | None, settings: Settings) -> formats.Framing:
    """A SKU's output format and placement: each of `format`, `anchor`, `fill`, `margin` from its brief
    where the brief sets it, else from the settings (flags and run config reach a SKU through its brief:
    `generate --format`, Dagster's `CanvasConfig`). Without a brief, the settings' own."""

    def pick(name: str):
        value = getattr(brief, name, None)
        return getattr(settings, name) if value is None else value

    return formats.Framing(
        formats.parse_format(pick("format")), anchor=pick("anchor"), fill=pick("fill"), margin=pick("margin")
    )


def make_canvas(photo: bytes, *, sku: str, brief: Brief, settings: Settings) -> tuple[Canvas, Image.Image]:
    """The canvas of the SKU's format with its product placed as `framing` says, and its product mask."""
    placed = framing(brief, settings)
    expanded = canvas.expand(
        photo, sku=sku, size=placed.size, fill=placed.fill, margin=placed.margin, anchor=placed.anchor
    )
    return expanded, mask.segment(expanded.image, sku=sku)


def make_heroes(
    store: ObjectStore, inputs: dict[str, tuple[Canvas, Image.Image, Brief]], settings: Settings
) -> dict[str, tuple[HeroResult, bool]]:
    """The hero images of many SKUs (canvas, product mask and brief each), with whether each was reused.

    A stored hero image is reused when it was made from the same canvas with the same model, scene and
    settings and its PNG is intact; the others are painted `settings.batch_size` to a pipeline call and
    stored one by one as they are made.
    """
    model = settings.model_key(settings.hero_model)
    out: dict[str, tuple[HeroResult, bool]] = {}
    requests, canvas_sha = [], {}
    for sku, (expanded, product, brief) in inputs.items():
        canvas_sha[sku] = sha256(png_bytes(expanded.image))
        wanted = {
            "model": model, "prompt": brief.prompt, "negative_prompt": brief.negative_prompt,
            "seed": brief.seed, "steps": settings.steps, "guidance": settings.guidance,
            "model_size": settings.model_size, "canvas_sha256": canvas_sha[sku],
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
        for batch in batches(requests, settings.batch_size):
            results = hero.generate_batch(
                pipe,
                batch,
                steps=settings.steps,
                guidance=settings.guidance,
                model=model,
                batch_size=len(batch),
                native=settings.model_size,
            )
            for request, result in zip(batch, results, strict=True):
                artifacts.save_hero(store, request.sku, result, canvas_sha256=canvas_sha[request.sku])
                out[request.sku] = result, False
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
) -> dict[str, FrameSet]:
    """The frames of many SKUs (hero image and brief each), diffusion calls shared `settings.batch_size`
    SKUs at a time (`frames.generate_batch`)."""
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
) -> SkuResult:
    """Make and store everything for one SKU: canvas, mask, hero image, frames and video.

    Example:
        >>> store = LocalStore("prodvid-data")
        >>> brief = parse_brief({"prompt": "on a marble kitchen counter"}, sku="MUG-1")
        >>> settings = Settings().with_preset("tiny")
        >>> result = generate_sku(store, "MUG-1", Path("mug.png").read_bytes(), brief, settings)
        >>> result.keys
    """
    return generate_many(store, {sku: (photo, brief)}, settings, on_frame=on_frame)[sku]


def generate_many(
    store: ObjectStore,
    inputs: dict[str, tuple[bytes, Brief]],
    settings: Settings,
    *,
    on_frame: OnFrame | None = None,
) -> dict[str, SkuResult]:
    """Make and store everything for many SKUs (photo bytes and brief each), each model loaded once.

    With `settings.batch_size` above 1 the SKUs share diffusion calls (README, "Many SKUs at once"). Every
    SKU id, brief and photo is checked before anything is stored or painted, so one bad input stops the
    run with its SKU named and nothing made. Each step stores its results before the next starts.

    Example:
        >>> briefs = {sku: parse_brief(data, sku=sku) for sku, data in briefs_json.items()}
        >>> photos = {sku: Path(f"{sku}.png").read_bytes() for sku in briefs}
        >>> results = generate_many(store, {s: (photos[s], briefs[s]) for s in briefs}, settings)
    """
    # 1. Check inputs: SKU ids and briefs (with their format) before anything is read, photos before
    #    anything is written
    for sku, (_, brief) in inputs.items():
        validate_sku(sku)
        brief.camera_path(sku, framing(brief, settings).size)
    canvases = {
        sku: make_canvas(photo, sku=sku, brief=brief, settings=settings)
        for sku, (photo, brief) in inputs.items()
    }

    # 2. Canvases and masks (cheap, made every time; stored for people and for Dagster)
    keys = {
        sku: artifacts.save_canvas(store, sku, expanded) + artifacts.save_mask(store, sku, product)
        for sku, (expanded, product) in canvases.items()
    }

    # 3. Hero images (reused when made with the same settings)
    heroes = make_heroes(
        store, {sku: (*canvases[sku], brief) for sku, (_, brief) in inputs.items()}, settings
    )

    # 4. Frames (resume from what is stored)
    frame_inputs = {sku: (heroes[sku][0].image, brief) for sku, (_, brief) in inputs.items()}
    frame_sets = make_frames_batch(store, frame_inputs, settings, on_frame=on_frame)

    # 5. Videos
    results = {}
    for sku in inputs:
        video_result, video_reused = make_video(store, sku, frame_sets[sku])
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
