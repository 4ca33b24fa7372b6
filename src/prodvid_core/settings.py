"""Settings: how a run paints, shared by the CLI, the Python API and Dagster (same names, same env vars).

Kept apart from `run` so that it imports without torch: the CLI checks a whole request (`request`) before
it imports any heavy library, and a mistake in a setting is answered in a fraction of a second.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields, replace

from prodvid_core import formats, models
from prodvid_core.brief import Brief
from prodvid_core.errors import SettingsError

__all__ = ["Settings", "framing"]


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
    max_window: int | None = None  # None: 1.5 × the model's native side (plan.default_window)
    model_size: int | None = None
    batch_size: int = 1
    keep_frames: bool = False  # also store frames/<SKU>/00000.png …; the world and manifest are the frames
    # Speed (docs/speed.md): `lora` entries are `ID_OR_DIR[:SCALE]`, fused into both models; `speed` names a
    # preset (`SPEED_PRESETS`) that fills in the fields left at their defaults.
    lora: tuple[str, ...] = ()
    speed: str | None = None
    compile: bool = False
    offload: bool = False
    variant: str | None = None  # None: fp16 weight files when loading in float16 and the checkpoint has them

    def __post_init__(self) -> None:
        """Refuse settings that cannot work before any model is loaded or any SKU is touched."""
        object.__setattr__(self, "lora", _lora_tuple(self.lora))  # env: "a,b"; Dagster: a list
        if self.variant == "auto":
            object.__setattr__(self, "variant", None)
        if self.speed in SPEED_PRESETS:
            self._fill_in_speed_preset()
        size_ok = self.size is None or (
            _int_in(self.size, formats.MIN_SIDE, formats.MAX_SIDE) and self.size % 2 == 0
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
            "steps": _within(self.steps, 1, 1000),
            "guidance": _within(self.guidance, 0, 100, whole=False),
            "lookahead": _within(self.lookahead, 0, 8192, " (model pixels)"),
            "max_window": (
                _within(self.max_window, 64, 8192, " (model pixels)")
                if self.max_window is not None
                else (True, "")
            ),
            "model_size": (
                self.model_size is None or _int_in(self.model_size, 64, 4096) and self.model_size % 8 == 0,
                "unset (the checkpoint's own) or a multiple of 8 from 64 to 4096",
            ),
            "batch_size": _within(self.batch_size, 1, 256),
            "device": (
                isinstance(self.device, str) and _DEVICE.fullmatch(self.device) is not None,
                "auto, cpu, cuda or cuda:<index>",
            ),
            "dtype": (
                self.dtype is None or self.dtype in models.DTYPES,
                f"one of {', '.join(models.DTYPES)}",
            ),
            "scheduler": (
                self.scheduler is None or self.scheduler in models.SCHEDULERS,
                f"unset (the checkpoint's own) or one of {', '.join(models.SCHEDULERS)}",
            ),
            "hero_model": (_name(self.hero_model), "a preset, a Hub id or a folder"),
            "frames_model": (_name(self.frames_model), "a preset, a Hub id or a folder"),
            "keep_frames": (isinstance(self.keep_frames, bool), "true or false"),
            "lora": _loras_ok(self.lora),
            "speed": (
                self.speed is None or self.speed in SPEED_PRESETS,
                f"unset or one of {', '.join(SPEED_PRESETS)}",
            ),
            "compile": (isinstance(self.compile, bool), "true or false"),
            "offload": (isinstance(self.offload, bool), "true or false"),
            "variant": (self.variant in (None, "fp16", "none"), "auto (unset), fp16 or none"),
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
        """What identifies a model's numerics in fingerprints: the checkpoint, scheduler, device, dtype and
        the LoRAs fused into it (so a resume with another LoRA paints again instead of reusing frames).

        Left out, as they change no more than the last bits (like a batch size): `compile` (other kernel
        fusions), `offload` (where the weights wait between calls) and `variant` (fp16 files hold the same
        weights as the full ones cast to float16)."""
        device = models.resolve_device(self.device)
        key = f"{model}|{self.scheduler or 'default'}|{device}|{self.dtype or 'auto'}"
        return key + (f"|lora={','.join(map(_lora_key, self.lora))}" if self.lora else "")

    @staticmethod
    def describe(key: str) -> str:
        """A `model_key` as a person reads it: `tiny|default|cpu|auto` is `tiny (scheduler: the checkpoint's,
        device: cpu, dtype: automatic)`."""
        model, scheduler, device, dtype, *rest = key.split("|")
        scheduler = "the checkpoint's" if scheduler == "default" else scheduler
        parts = [
            f"scheduler: {scheduler}",
            f"device: {device}",
            f"dtype: {'automatic' if dtype == 'auto' else dtype}",
            *(f"LoRA: {extra.removeprefix('lora=')}" for extra in rest),
        ]
        return f"{model} ({', '.join(parts)})"

    def load(self, model: str):
        return models.load_inpaint_pipeline(
            model, device=self.device, dtype=self.dtype, scheduler=self.scheduler, lora=self.lora,
            compile=self.compile, offload=self.offload, variant=self.variant,
        )  # fmt: skip

    def _fill_in_speed_preset(self) -> None:
        """Give every field still at its default the speed preset's value; the LoRA is added to the user's
        own (a style LoRA stays). Idempotent, so `replace` on filled-in settings changes nothing."""
        if not _loras_ok(self.lora)[0]:
            return  # reported with the other fields' problems
        defaults = {f.name: f.default for f in fields(self)}
        for name, value in SPEED_PRESETS[self.speed].items():
            if name == "lora":
                mine = {models.split_lora(entry)[0] for entry in self.lora}
                value = tuple(v for v in value if models.split_lora(v)[0] not in mine) + self.lora
            elif getattr(self, name) != defaults[name]:
                continue
            object.__setattr__(self, name, value)
        tiny = [m for m in (self.hero_model, self.frames_model) if m in models.PRESETS]
        if tiny:
            raise SettingsError(
                f"`speed` {self.speed!r} fuses a LoRA made for {SPEED_PRESETS[self.speed]['hero_model']}, "
                f"which does not fit the random-weight preset {tiny[0]!r}: leave out `speed` (or the "
                "preset), or give the tiny models a LoRA of their own (--lora DIR). It comes from --speed, "
                "Dagster config or PRODVID_SPEED."
            )


# Speed presets: a few-step LoRA with its scheduler, steps and guidance, on the checkpoints it was distilled
# for (both models: the LoRA has to fit both). What they trade: README.md, "Speed presets".
SPEED_PRESETS: dict[str, dict] = {
    "lcm-sd15": {
        "hero_model": models.DEFAULT_HERO_MODEL,
        "frames_model": models.DEFAULT_HERO_MODEL,
        "lora": ("latent-consistency/lcm-lora-sdv1-5",),
        "scheduler": "lcm",
        "steps": 6,
        "guidance": 1.5,
    },
    "lcm-sdxl": {
        "hero_model": models.SDXL_INPAINT_MODEL,
        "frames_model": models.SDXL_INPAINT_MODEL,
        "lora": ("latent-consistency/lcm-lora-sdxl",),
        "scheduler": "lcm",
        "steps": 6,
        "guidance": 1.5,
    },
}

MAX_LORA_SCALE = 4.0


def _lora_tuple(value) -> tuple:
    """`lora` as a tuple: a comma-separated string (PRODVID_LORA) or a list (Dagster config) becomes one."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value) if isinstance(value, list | tuple) else value


def _loras_ok(value) -> tuple[bool, str]:
    """Whether every `lora` entry is `ID_OR_DIR[:SCALE]` with a finite scale in (0, MAX_LORA_SCALE]."""
    want = f"a list of ID_OR_DIR[:SCALE] with SCALE in (0, {MAX_LORA_SCALE:g}]"
    if not isinstance(value, tuple):
        return False, want
    for entry in value:
        if not _name(entry):
            return False, want
        name, scale = models.split_lora(entry)
        if not name.strip() or not (math.isfinite(scale) and 0 < scale <= MAX_LORA_SCALE):
            return False, want
    return True, want


def _lora_key(entry: str) -> str:
    """An entry as fingerprints see it: `name:scale` with the scale written one way ("x" is "x:1")."""
    name, scale = models.split_lora(entry)
    return f"{name}:{scale:g}"


_FORMAT_WANT = f"one of {', '.join(formats.PRESETS)} or WxH with even sides (e.g. 1080x1350)"


_DEVICE = re.compile(r"auto|cpu|cuda(:\d{1,2})?")


def _int_in(value, low: int, high: int) -> bool:
    """Whether `value` is a whole number (not a bool) from `low` to `high`."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _within(value, low: int, high: int, unit: str = "", *, whole: bool = True) -> tuple[bool, str]:
    """Whether `value` is a number (whole with `whole`) from `low` to `high`, and what was wanted, said
    for the side it missed: "1 or more", "at most 1000"."""
    kinds = int if whole else int | float
    if not isinstance(value, kinds) or isinstance(value, bool) or value != value:  # NaN != NaN
        return False, f"a {'whole number' if whole else 'number'} from {low} to {high}{unit}"
    if value < low:
        return False, f"{low} or more{unit}"
    return value <= high, f"at most {high}{unit}"


def _name(value) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= 1024


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
        raise SettingsError(
            f"`preset` has to be one of {choices} but is {preset!r} (PRODVID_PRESET or --preset)."
        )
    return {"hero_model": preset, "frames_model": preset}


_KINDS = {"int": "number (int)", "float": "number (float)", "bool": "boolean (1/0, true/false)"}


def _env_settings() -> dict:
    """The `PRODVID_<FIELD>` env vars that are set, converted to each field's type."""
    values = {}
    for f in fields(Settings):
        raw = os.environ.get(f"PRODVID_{f.name.upper()}")
        if not raw:
            continue
        kind = str(f.type).removesuffix(" | None")  # tuple[str, ...] (lora) stays a string: "a,b"
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


def framing(brief: Brief | None, settings: Settings) -> formats.Framing:
    """A SKU's output format and placement: each of `format`, `anchor`, `fill`, `margin` from its brief
    where the brief sets it, else from the settings (flags and run config reach a SKU through its brief:
    `generate --format`, Dagster's `SkuConfig`). Without a brief, the settings' own."""

    def pick(name: str):
        value = getattr(brief, name, None)
        return getattr(settings, name) if value is None else value

    return formats.Framing(
        formats.parse_format(pick("format")), anchor=pick("anchor"), fill=pick("fill"), margin=pick("margin")
    )
