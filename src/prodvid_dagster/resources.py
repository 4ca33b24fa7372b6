"""Resources: the models (diffusers pipelines, loaded once per process) and the object store.

Every field is optional: a field left unset in Dagster config falls back to its `PRODVID_*` env var, then
to the core default, so the same env vars configure the CLI, the Python API and Dagster (README,
"Configuration"); config set in the launchpad wins over the environment.

| field | env var | default |
|---|---|---|
| `StoreResource.location` | `PRODVID_STORE` | `./prodvid-data` |
| `StoreResource.s3_endpoint_url` | `PRODVID_S3_ENDPOINT_URL` | AWS |
| `StoreResource.media_url` | `PRODVID_MEDIA_URL` | unset (a local store's results get no link) |
| `StoreResource.media_url_expires` | `PRODVID_MEDIA_URL_EXPIRES` | 604800 (7 days: presigned S3 links) |
| `ModelsResource.preset` | `PRODVID_PRESET` | unset (real models) |
| `ModelsResource.hero_model` | `PRODVID_HERO_MODEL` | SD 1.5 inpainting |
| `ModelsResource.frames_model` | `PRODVID_FRAMES_MODEL` | SD 2 inpainting |
| `ModelsResource.device` | `PRODVID_DEVICE` | `auto` |
| `ModelsResource.dtype` | `PRODVID_DTYPE` | float16 on CUDA, float32 on CPU |
| `ModelsResource.scheduler` | `PRODVID_SCHEDULER` | the checkpoint's own |
| `ModelsResource.format` | `PRODVID_FORMAT` | `square` (1080x1080) |
| `ModelsResource.size` | `PRODVID_SIZE` | unset (N means format NxN) |
| `ModelsResource.anchor` | `PRODVID_ANCHOR` | `bottom` |
| `ModelsResource.fill` | `PRODVID_FILL` | 0.7 |
| `ModelsResource.margin` | `PRODVID_MARGIN` | 0 |
| `ModelsResource.steps` | `PRODVID_STEPS` | 25 |
| `ModelsResource.guidance` | `PRODVID_GUIDANCE` | 7.5 |
| `ModelsResource.lookahead` | `PRODVID_LOOKAHEAD` | 128 |
| `ModelsResource.max_window` | `PRODVID_MAX_WINDOW` | 1.5 × native side: 768 SD, 1536 SDXL (model px) |
| `ModelsResource.model_size` | `PRODVID_MODEL_SIZE` | the checkpoint's native side |
| `ModelsResource.batch_size` | `PRODVID_BATCH_SIZE` | 1 |
| `ModelsResource.keep_frames` | `PRODVID_KEEP_FRAMES` | off (frames are rendered from the world) |
| `ModelsResource.lora` | `PRODVID_LORA` (comma-separated) | none; each `ID_OR_DIR[:SCALE]`, fused |
| `ModelsResource.speed` | `PRODVID_SPEED` | unset; `lcm-sd15` or `lcm-sdxl` (README, "Speed presets") |
| `ModelsResource.compile` | `PRODVID_COMPILE` | off (regional torch.compile, cache in PRODVID_CACHE) |
| `ModelsResource.offload` | `PRODVID_OFFLOAD` | off (model CPU offload, for GPUs under ~10 GB) |
| `ModelsResource.variant` | `PRODVID_VARIANT` | automatic (fp16 files on CUDA in float16), `fp16`, `none` |

`format`, `anchor`, `fill` and `margin` are defaults: a SKU's brief, and a run's `SkuConfig`, win.
The fields are those of the core `Settings` plus `preset` (a test holds them equal).

S3 credentials come from the usual AWS variables and files (boto3's chain), never from prodvid's config.
"""

import dagster as dg
from pydantic import Field, PrivateAttr

from prodvid_core.run import Settings
from prodvid_core.storage import ObjectStore, open_store

__all__ = ["ModelsResource", "StoreResource"]


class ModelsResource(dg.ConfigurableResource):
    """The diffusion models and how they paint. Unset fields come from `PRODVID_*` env vars.

    Pipelines are loaded by the core's process-wide cache (keyed by model, device, dtype, scheduler), so
    every step of a run, and every SKU of a single-run backfill, shares one loaded copy of each model.
    """

    preset: str | None = Field(
        None, description="`tiny` or `tiny-xl` for the offline random-weight models ($PRODVID_PRESET)."
    )
    hero_model: str | None = Field(
        None, description="Hub id or folder of the hero model ($PRODVID_HERO_MODEL)."
    )
    frames_model: str | None = Field(
        None, description="Hub id or folder of the frames model ($PRODVID_FRAMES_MODEL)."
    )
    device: str | None = Field(None, description="`cuda`, `cpu` or `auto` ($PRODVID_DEVICE).")
    dtype: str | None = Field(None, description="`float16`, `bfloat16` or `float32` ($PRODVID_DTYPE).")
    scheduler: str | None = Field(None, description="diffusers scheduler, e.g. `euler` ($PRODVID_SCHEDULER).")
    format: str | None = Field(
        None,
        description="Output size of SKUs whose brief sets none: square, portrait, story, landscape or WxH "
        "($PRODVID_FORMAT, square).",
    )
    size: int | None = Field(
        None, description="Square output of this side, the same as format NxN ($PRODVID_SIZE)."
    )
    anchor: str | None = Field(
        None,
        description="Where the product sits: bottom, center, left-third or right-third ($PRODVID_ANCHOR).",
    )
    fill: float | None = Field(
        None, description="Share of the canvas the product may fill ($PRODVID_FILL, 0.7)."
    )
    margin: float | None = Field(
        None,
        description="Share of the canvas kept clear around the product on each side ($PRODVID_MARGIN, 0).",
    )
    steps: int | None = Field(None, description="Denoising steps per diffusion call ($PRODVID_STEPS, 25).")
    guidance: float | None = Field(None, description="Classifier-free guidance ($PRODVID_GUIDANCE, 7.5).")
    lookahead: int | None = Field(
        None,
        description="Px of camera travel one call paints ahead; 0 = one call per frame ($PRODVID_LOOKAHEAD).",
    )
    max_window: int | None = Field(
        None,
        description="Largest side of a diffusion window, model pixels ($PRODVID_MAX_WINDOW, 1.5 x native).",
    )
    model_size: int | None = Field(
        None,
        description="Side of the square the models paint at; default the checkpoint's native one "
        "($PRODVID_MODEL_SIZE).",
    )

    batch_size: int | None = Field(
        None,
        description="SKUs of a backfill that share one diffusion call ($PRODVID_BATCH_SIZE, 1).",
    )
    keep_frames: bool | None = Field(
        None,
        description="Also store every frame as frames/<SKU>/00000.png …; the world canvas and manifest are "
        "the frames either way ($PRODVID_KEEP_FRAMES, off).",
    )

    lora: list[str] | None = Field(
        None,
        description="LoRAs fused into both models, each ID_OR_DIR[:SCALE] ($PRODVID_LORA, comma-separated).",
    )
    speed: str | None = Field(
        None, description="Few-step preset `lcm-sd15` or `lcm-sdxl`; fills in unset fields ($PRODVID_SPEED)."
    )
    compile: bool | None = Field(
        None, description="Regional torch.compile of the UNet and VAE blocks ($PRODVID_COMPILE, off)."
    )
    offload: bool | None = Field(
        None, description="Model CPU offload, for GPUs under ~10 GB; no-op on CPU ($PRODVID_OFFLOAD, off)."
    )
    variant: str | None = Field(
        None, description="Weight files: `fp16`, `none`, or automatic (fp16 on CUDA) ($PRODVID_VARIANT)."
    )

    _settings: Settings | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        """The core `Settings` these fields and the environment describe."""
        if self._settings is None:
            values = self.model_dump(exclude={"preset"})
            self._settings = Settings.from_env(self.preset, **values)
        return self._settings

    def pipeline(self, model: str):
        """The loaded diffusers pipeline for `model` (the core caches it for the process)."""
        return self.settings().load(model)


class StoreResource(dg.ConfigurableResource):
    """Where the inbox and every artifact live: a folder or `s3://bucket/prefix` (README, "Storage
    layout")."""

    location: str | None = Field(
        None, description="A folder or s3://bucket/prefix ($PRODVID_STORE, default ./prodvid-data)."
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint: MinIO, R2, a local server ($PRODVID_S3_ENDPOINT_URL)."
    )

    media_url: str | None = Field(
        None,
        description="Where `prodvid serve` answers for a local store, e.g. http://127.0.0.1:3001: the hero "
        "image, frames and video link there ($PRODVID_MEDIA_URL; `make ui` sets it).",
    )
    media_url_expires: int | None = Field(
        None,
        description="Seconds a presigned link to an S3 store's result stays valid, up to 604800 "
        "($PRODVID_MEDIA_URL_EXPIRES, 7 days).",
    )

    _store: ObjectStore | None = PrivateAttr(default=None)

    def open(self) -> ObjectStore:
        if self._store is None:
            self._store = open_store(self.location, endpoint_url=self.s3_endpoint_url)
        return self._store
