"""GPU benchmark: one markdown table of what a SKU costs on real hardware, against the issue's targets.

Run `benchmarks/gpu.sh` (or `make bench-gpu`) on a CUDA machine. It builds the full-size random-weight
checkpoints once (`random_sd.py`: `sd15` for the hero image, `sd2` for the frames, `sdxl` unless `--quick`),
then runs every row in this one process and prints one table; `--out FILE` also writes it with its device,
command and date. `--cpu-tiny` runs the same rows on the CPU with the offline `tiny` / `tiny-xl` presets at an
eighth of each format's side and model size 128, in about a minute: it checks the script, not the hardware.

What each row measures, all through the public API (`run.generate_many`, `Settings.load`):
- `seed` / `story` rows (batch 1): hero latency (`HeroResult.seconds`), whole-SKU wall time of
  `generate_many` (canvas, hero, frames, video, stores), video time = SKU − hero, diffusion calls (hero +
  `FrameSet.calls_made`) and UNet forwards (a forward hook; one forward holds both halves of
  classifier-free guidance), per SKU. The `story` video is 150 frames at 30 fps of the default drift path at
  1080x1920; `seed` the original method's path at the default square format.
- The original method (one 50-step call per frame, the hero included) is not run in full (a 150-frame story
  would take minutes): its per-call wall time and UNet forwards per call are MEASURED on `--original-calls`
  calls in this process (prodvid at lookahead 0, 50 steps, same models and working size), then multiplied by
  its call count for the full path (`plan.plan_calls(..., lookahead=0)` + the hero). "orig" columns are that
  product, the ratios original / ours.
- SKUs/hour: `generate_many` with `batch_size` 1, 8 and 16 on as many story SKUs (2 at batch 1), with the
  speed preset when the installed prodvid has it, else at 25 steps (the row says which).
- Peak GPU memory per row: `torch.cuda.max_memory_allocated` from a reset before the row; the memory row is
  the largest peak of the batch-1 rows, with the hero (SD 1.5) and frames (SD 2) pipelines both loaded.
- UNet TFLOP/s: the FLOPs of one UNet forward at each input shape a row used are counted with
  `torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add of every convolution, matmul and attention
  product; norms and activations are not counted), times the forwards at that shape, over the summed time of
  the UNet forwards (CUDA events around each forward). The share is of the GPU's dense fp16 tensor peak
  (`PEAK_TFLOPS`, by device name; `--peak-tflops` overrides).

Speed-preset rows take their settings from the `speed` presets (`SPEED_SD15` / `SPEED_SDXL`, below). With
random-weight models the LCM-LoRA of the preset cannot be downloaded (the benchmark machine is offline): a
stand-in of the same rank and target modules is written with peft (`random_sd.random_lora_dir`,
zero-initialised B matrices, so it leaves the random model's numbers as they are); fused, a LoRA adds no
work per step, so the timings are the real preset's.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import random_sd
from prodvid_core import formats, models, run
from prodvid_core.brief import parse_brief
from prodvid_core.plan import plan_calls
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.settings import SPEED_PRESETS
from prodvid_core.storage import LocalStore

# The speed presets' settings (`lcm-sd15` / `lcm-sdxl` of the `speed` setting: LCM-LoRA, the LCM scheduler,
# few steps, low guidance), without their models: these rows paint with the benchmark's random checkpoints.
# The LoRA for SD 1.5 does not fit SD 2's UNet (another cross-attention width), so the frames are painted with
# the hero model too.
SPEED_SD15: dict[str, Any] = {
    k: v for k, v in SPEED_PRESETS["lcm-sd15"].items() if k not in ("hero_model", "frames_model")
}
SPEED_SDXL: dict[str, Any] = {
    k: v for k, v in SPEED_PRESETS["lcm-sdxl"].items() if k not in ("hero_model", "frames_model")
}
STEPS = 25  # prodvid's default
ORIGINAL_STEPS = 50  # the original method: one 50-step call per frame
STORY = {"format": "story", "num_frames": 150, "fps": 30}  # the default drift camera
SEED = {"format": "square", "camera": {"path": "seed"}}
BATCHES = (1, 8, 16)
PROMPTS = ("a glass bottle on a marble counter", "a bottle on a beach at dusk", "a bottle in a moss forest")

# Dense (no sparsity) fp16/bf16 tensor-core peak, TFLOP/s, by a part of `torch.cuda.get_device_name()`;
# the longest matching key wins ("H100 PCIe" before "H100"). SXM parts at their boost clock.
PEAK_TFLOPS: dict[str, float] = {
    "H200": 989.4,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "GH200": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
}

# Targets that are about the hardware: on a CPU (`--cpu-tiny`) their verdict is "n/a (CPU)".
HARDWARE_TARGETS = ("sku_s", "throughput", "mfu", "memory")
TARGETS = {
    "evals": "UNet fwd <= 1/10 of original",
    "sku_s": "hero + story <= 3 s/SKU",
    "throughput": ">= 1200 SKUs/h",
    "mfu": "UNet >= 35% of peak",
    "memory": "both pipelines <= 8 GiB",
}

# The table's columns: header and the Row attribute (or property) it shows.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("row", "name"),
    ("models", "models"),
    ("steps", "steps"),
    ("batch", "batch"),
    ("SKUs", "skus"),
    ("hero s", "hero_s"),
    ("video s", "video_s"),
    ("SKU s", "sku_s"),
    ("calls/SKU", "calls"),
    ("orig calls/SKU", "orig_calls"),
    ("UNet fwd/SKU", "evals"),
    ("orig fwd/SKU", "orig_evals"),
    ("fwd ratio", "evals_ratio"),
    ("orig s/SKU", "orig_s"),
    ("time ratio", "time_ratio"),
    ("SKUs/h", "skus_per_hour"),
    ("peak GiB", "peak_gib"),
    ("UNet TFLOP/s", "tflops"),
    ("% of peak", "peak_share"),
    ("target", "target"),
    ("pass", "verdict"),
)


# --- counting FLOPs and timing the UNet ------------------------------------------------------------------


def count_flops(module: torch.nn.Module, *args: Any, **kwargs: Any) -> int:
    """FLOPs of one call `module(*args, **kwargs)`: 2 per multiply-add of its convolutions, matmuls and
    attention products, as `torch.utils.flop_counter.FlopCounterMode` counts them from the ops it runs.

    FlopCounterMode knows the CUDA attention kernels (flash, memory-efficient, cuDNN) but not the CPU's
    fused one, which it would count as 0: that op gets the same formula here (the `--cpu-tiny` rows, the
    test's hand count)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa_flop(query_shape, key_shape, value_shape, *args: Any, **kwargs: Any) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    mapping = {cpu_sdpa: cpu_sdpa_flop} if cpu_sdpa is not None else {}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        module(*args, **kwargs)
    return int(counter.get_total_flops())


class UnetMeter:
    """Forward hooks on a pipeline's UNet: how many forwards, at which shapes, and how long they took.

    The time of each forward is taken with CUDA events on a GPU (no synchronisation in the hot path), with
    the wall clock on the CPU. The FLOPs of a shape are counted once, after the row, on the first inputs
    seen at that shape.
    """

    def __init__(self) -> None:
        self.unets: list[torch.nn.Module] = []
        self._flops: dict[tuple, int] = {}
        self._inputs: dict[tuple, tuple[torch.nn.Module, tuple, dict]] = {}
        self.reset()

    def reset(self) -> None:
        self.forwards: dict[tuple, int] = {}
        self._spans: list[tuple[Any, Any]] = []
        self._open: Any = None

    def attach(self, pipe: Any) -> None:
        unet = pipe.unet
        if any(unet is seen for seen in self.unets):
            return
        self.unets.append(unet)
        unet.register_forward_pre_hook(self._before, with_kwargs=True)
        unet.register_forward_hook(self._after)

    def _before(self, unet: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        key = _shape_key(unet, args, kwargs)
        self.forwards[key] = self.forwards.get(key, 0) + 1
        self._inputs.setdefault(key, (unet, args, kwargs))
        self._open = _now(unet)

    def _after(self, unet: torch.nn.Module, args: tuple, output: Any) -> None:
        self._spans.append((self._open, _now(unet)))

    @property
    def count(self) -> int:
        return sum(self.forwards.values())

    def seconds(self) -> float:
        if self._spans and isinstance(self._spans[0][0], torch.cuda.Event):
            torch.cuda.synchronize()
            return sum(a.elapsed_time(b) for a, b in self._spans) / 1000
        return sum(b - a for a, b in self._spans)

    def flops(self) -> int:
        """The FLOPs of every forward since `reset`, counted per shape (one extra forward per new shape)."""
        total = 0
        for key, n in self.forwards.items():
            if key not in self._flops:
                unet, args, kwargs = self._inputs[key]
                self._flops[key] = count_flops_unhooked(unet, args, kwargs)
            total += self._flops[key] * n
        return total


def count_flops_unhooked(unet: torch.nn.Module, args: tuple, kwargs: dict) -> int:
    """`count_flops` with the UnetMeter hooks out of the way (they would count the forward as work)."""
    hooks = (unet._forward_pre_hooks, unet._forward_hooks)
    saved = [dict(h) for h in hooks]
    for h in hooks:
        h.clear()
    try:
        return count_flops(unet, *args, **kwargs)
    finally:
        for h, s in zip(hooks, saved, strict=True):
            h.update(s)


def _shape_key(unet: torch.nn.Module, args: tuple, kwargs: dict) -> tuple:
    shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor) and a.dim() > 0]
    shapes += [(k, tuple(v.shape)) for k, v in sorted(kwargs.items()) if isinstance(v, torch.Tensor)]
    return (id(unet), *shapes)


def _now(unet: torch.nn.Module) -> Any:
    if unet.device.type == "cuda":
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def peak_tflops(device_name: str, override: float | None = None) -> float | None:
    """The dense fp16 peak of `device_name` (`PEAK_TFLOPS`, longest matching key), or `override`."""
    if override is not None:
        return override
    matches = [key for key in PEAK_TFLOPS if key.lower() in device_name.lower()]
    return PEAK_TFLOPS[max(matches, key=len)] if matches else None


# --- the table -------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table; None prints as "—"."""

    name: str
    models: str = ""
    steps: str = ""
    batch: int | None = None
    skus: int | None = None
    hero_s: float | None = None
    sku_s: float | None = None
    calls: float | None = None
    orig_calls: float | None = None
    evals: float | None = None
    orig_evals: float | None = None
    orig_s: float | None = None
    skus_per_hour: float | None = None
    peak_gib: float | None = None
    tflops: float | None = None
    peak_share: float | None = None  # percent
    targets: tuple[str, ...] = ()  # keys of TARGETS this row is judged on
    cpu: bool = False  # measured on a CPU: only the hardware-independent targets are judged
    note: str = ""  # why a row has no figures (skipped, failed)

    @property
    def video_s(self) -> float | None:
        return None if self.sku_s is None or self.hero_s is None else self.sku_s - self.hero_s

    @property
    def evals_ratio(self) -> float | None:
        return _ratio(self.orig_evals, self.evals)

    @property
    def time_ratio(self) -> float | None:
        return _ratio(self.orig_s, self.sku_s)

    @property
    def target(self) -> str:
        return "; ".join(TARGETS[t] for t in self.targets) or "—"

    @property
    def verdict(self) -> str:
        if self.note:
            return self.note
        return "; ".join(judge(self, t) for t in self.targets) or "—"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def judge(row: Row, target: str) -> str:
    """`pass`, `FAIL` or `n/a` (the figure is missing) for one of `TARGETS` on `row`."""
    if row.cpu and target in HARDWARE_TARGETS:
        return "n/a (CPU)"
    value, ok = {
        "evals": (row.evals_ratio, lambda v: v >= 10),
        "sku_s": (row.sku_s, lambda v: v <= 3),
        "throughput": (row.skus_per_hour, lambda v: v >= 1200),
        "mfu": (row.peak_share, lambda v: v >= 35),
        "memory": (row.peak_gib, lambda v: v <= 8),
    }[target]
    return "n/a" if value is None else "pass" if ok(value) else "FAIL"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"
    return str(value).replace("|", "/")


def render_table(rows: Sequence[Row]) -> str:
    """The rows as one markdown table with every column of `COLUMNS`."""
    lines = ["| " + " | ".join(header for header, _ in COLUMNS) + " |"]
    lines.append("|" + "|".join("---" if i < 5 else "---:" for i in range(len(COLUMNS) - 2)) + "|---|---|")
    for row in rows:
        lines.append("| " + " | ".join(_cell(getattr(row, attr)) for _, attr in COLUMNS) + " |")
    return "\n".join(lines)


# --- running the rows ------------------------------------------------------------------------------------


@dataclass
class Bench:
    """What every row shares: models, device, the meter, the clock and its budget."""

    hero_model: str
    frames_model: str
    xl_model: str | None
    device: str
    dtype: str | None
    scale: float  # output sides × this (1 on a GPU; --cpu-tiny: 1/8)
    skus: int  # SKUs per batch-1 row
    original_calls: int
    budget_s: float
    cuda: bool
    model_size: int | None = None  # --cpu-tiny: 128, to keep the CPU run short; else the checkpoint's own
    started: float = field(default_factory=time.perf_counter)
    meter: UnetMeter = field(default_factory=UnetMeter)
    loras: dict[str, str] = field(default_factory=dict)  # preset LoRA id -> stand-in folder (random models)

    def settings(self, **fields: Any) -> run.Settings:
        base = {
            "hero_model": self.hero_model,
            "frames_model": self.frames_model,
            "model_size": self.model_size,
        }
        return run.Settings(**{**base, "device": self.device, "dtype": self.dtype, **fields})

    def over_budget(self) -> bool:
        return time.perf_counter() - self.started > self.budget_s


def brief_for(bench: Bench, spec: dict, i: int) -> Any:
    """SKU `i`'s brief for a row: the spec's format at `bench.scale`, its own prompt and seed."""
    w, h = formats.parse_format(spec["format"]).size
    size = f"{_even(w * bench.scale)}x{_even(h * bench.scale)}"
    fields = {**spec, "format": size, "prompt": PROMPTS[i % len(PROMPTS)], "seed": i}
    return parse_brief(fields, sku=f"BENCH-{i}")


def _even(value: float) -> int:
    return max(64, round(value / 2) * 2)


def make_skus(bench: Bench, spec: dict, n: int) -> dict[str, tuple[bytes, Any]]:
    photo = sample_photo_bytes()
    return {f"BENCH-{i}": (photo, brief_for(bench, spec, i)) for i in range(n)}


def _pipes(settings: run.Settings) -> list[Any]:
    return [settings.load(m) for m in dict.fromkeys((settings.hero_model, settings.frames_model))]


def measure(bench: Bench, settings: run.Settings, skus: dict) -> dict[str, float]:
    """Run `generate_many` on `skus` from an empty store; the figures per SKU, the peak and the UNet's."""
    for pipe in _pipes(settings):  # loaded (and hooked) before the clock starts
        bench.meter.attach(pipe)
    if bench.cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    bench.meter.reset()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results = run.generate_many(LocalStore(tmp), skus, settings)
        if bench.cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    n = len(skus)
    unet_s, flops = bench.meter.seconds(), bench.meter.flops()
    heroes = {tuple(r.hero.batch): r.hero.seconds for r in results.values()}  # one time per hero call
    return {
        "wall": wall,
        "sku_s": wall / n,
        "hero_s": sum(heroes.values()) / n,
        "calls": sum(1 + r.frames.calls_made for r in results.values()) / n,
        "evals": bench.meter.count / n,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if bench.cuda else None,
        "tflops": flops / unet_s / 1e12 if unet_s else None,
    }


def original(bench: Bench, spec: dict, settings: run.Settings) -> dict[str, float]:
    """The original method on the full path of `spec`, per SKU: calls, UNet forwards, seconds, computed from
    `bench.original_calls` measured 50-step calls (hero included) × its call count."""
    # The default drift over `original_calls` frames: at lookahead 0 every frame is one call whose window is
    # the frame, as on the full path, so a call costs the same (hero + original_calls - 1 frame calls).
    probe = {k: v for k, v in spec.items() if k != "camera"} | {"num_frames": bench.original_calls}
    old = dataclasses.replace(settings, steps=ORIGINAL_STEPS, lookahead=0)
    got = measure(bench, old, make_skus(bench, probe, 1))
    per_call_s, per_call_fwd = got["sku_s"] / got["calls"], got["evals"] / got["calls"]
    brief = brief_for(bench, spec, 0)
    size = formats.parse_format(brief.format).size
    native = settings.model_size or models.native_size(settings.load(settings.frames_model))
    calls = 1 + len(plan_calls(brief.camera_path("BENCH-0", size), size, native=native, lookahead=0).calls)
    return {"calls": calls, "evals": per_call_fwd * calls, "s": per_call_s * calls}


def _compare(row: Row, orig: dict[str, float]) -> None:
    row.orig_calls, row.orig_evals, row.orig_s = orig.get("calls"), orig.get("evals"), orig.get("s")


def speed_settings(bench: Bench, preset: dict, model: str) -> run.Settings:
    """The speed preset's settings on `model` (hero and frames), its LoRA the offline stand-in."""
    fields = dict(preset)
    fields["lora"] = tuple(bench.loras.get(lora, lora) for lora in fields["lora"])
    return bench.settings(**{**fields, "hero_model": model, "frames_model": model})


def _guarded(bench: Bench, row: Row, body: Callable[[Row], None]) -> Row:
    """Fill `row` with `body`, or say why not: over the time budget, or the error it raised."""
    if bench.over_budget():
        row.note = f"skipped: over --budget-s {bench.budget_s:.0f}"
        return row
    try:
        body(row)
    except Exception as err:  # a row that fails is reported in the table; the others still run
        row.note = f"error: {type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''}"
    print(f"  {row.name}: {time.perf_counter() - bench.started:.0f} s", file=sys.stderr, flush=True)
    return row


def _fill(row: Row, got: dict[str, float], peak: float | None) -> None:
    row.hero_s, row.sku_s, row.calls, row.evals = got["hero_s"], got["sku_s"], got["calls"], got["evals"]
    row.peak_gib, row.tflops = got["peak_gib"], got["tflops"]
    if peak and row.tflops is not None:
        row.peak_share = 100 * row.tflops / peak


def latency_rows(bench: Bench, peak: float | None, name: str, spec: dict) -> list[Row]:
    """The `name` path at 25 steps (SD 1.5 hero, SD 2 frames) and with the SD 1.5 speed preset."""
    base = bench.settings(steps=STEPS)
    orig: dict[str, float] = {}
    judged = ("evals",) if name == "seed" else ("sku_s",)

    def default(row: Row) -> None:
        orig.update(original(bench, spec, base))
        _fill(row, measure(bench, base, make_skus(bench, spec, bench.skus)), peak)
        _compare(row, orig)

    def speed(row: Row) -> None:
        settings = speed_settings(bench, SPEED_SD15, bench.hero_model)
        _fill(row, measure(bench, settings, make_skus(bench, spec, bench.skus)), peak)
        _compare(row, orig)

    both = f"{_short(bench.hero_model)} + {_short(bench.frames_model)}"
    rows = [
        _guarded(bench, Row(f"{name}, {STEPS} steps", both, str(STEPS), 1, bench.skus,
                            targets=("evals",) if name == "seed" else ()), default),
        _guarded(bench, Row(f"{name}, speed preset", _short(bench.hero_model), _steps(SPEED_SD15), 1,
                            bench.skus, targets=judged), speed),
    ]  # fmt: skip
    return rows


def throughput_rows(bench: Bench, peak: float | None, batches: Sequence[int]) -> list[Row]:
    """SKUs/hour of story SKUs at each batch size, with the speed preset."""
    settings, label = speed_settings(bench, SPEED_SD15, bench.hero_model), "speed preset"
    rows = []
    for batch in batches:
        n = max(batch, bench.skus)

        def body(row: Row, batch: int = batch, n: int = n) -> None:
            got = measure(bench, dataclasses.replace(settings, batch_size=batch), make_skus(bench, STORY, n))
            _fill(row, got, peak)
            row.skus_per_hour = 3600 / got["sku_s"]

        targets = ("throughput", "mfu") if batch >= 8 else ()
        models_used = " + ".join(
            _short(m) for m in dict.fromkeys((settings.hero_model, settings.frames_model))
        )
        steps = f"{settings.steps}" + (f" ({settings.scheduler})" if settings.scheduler else "")
        row = Row(f"story SKUs/h, {label}", models_used, steps, batch, n, targets=targets)
        rows.append(_guarded(bench, row, body))
    return rows


# Seconds the SDXL rows need at least, its build (about a minute on a 16-core host) included.
SDXL_NEEDS_S = 150


def sdxl_rows(bench: Bench, peak: float | None, name: str) -> list[Row]:
    """The seed path with SDXL inpainting as hero and frames model, at 25 steps and with its speed preset.

    The model (`name`, built once if it is `random-sdxl`) and its LoRA stand-in are made only when at least
    `SDXL_NEEDS_S` of the budget is left; otherwise both rows say they were skipped."""
    rows = [
        Row(f"SDXL seed, {STEPS} steps", name, str(STEPS), 1, bench.skus, targets=("evals",)),
        Row("SDXL seed, speed preset", name, _steps(SPEED_SDXL), 1, bench.skus, targets=("evals",)),
    ]
    if time.perf_counter() - bench.started > bench.budget_s - SDXL_NEEDS_S:
        for row in rows:
            row.note = f"skipped: under {SDXL_NEEDS_S} s of --budget-s {bench.budget_s:.0f} left"
        return rows
    model = bench.xl_model = random_sd.resolve_benchmark_model(name)
    if bench.loras:  # this prodvid loads LoRAs: a stand-in for the SDXL preset's too
        bench.loras[SPEED_SDXL["lora"][0]] = str(random_sd.random_lora_dir(model))
    out: dict[str, float] = {}

    def default(row: Row) -> None:
        settings = bench.settings(steps=STEPS, hero_model=model, frames_model=model)
        out.update(original(bench, SEED, settings))
        _fill(row, measure(bench, settings, make_skus(bench, SEED, bench.skus)), peak)
        _compare(row, out)

    def speed(row: Row) -> None:
        settings = speed_settings(bench, SPEED_SDXL, model)
        _fill(row, measure(bench, settings, make_skus(bench, SEED, bench.skus)), peak)
        _compare(row, out)

    return [_guarded(bench, rows[0], default), _guarded(bench, rows[1], speed)]


def memory_row(rows: Sequence[Row], weights_gib: float | None) -> Row:
    """Both default pipelines loaded: the largest peak of the batch-1 rows that used them."""
    peaks = [r.peak_gib for r in rows if r.batch == 1 and r.peak_gib is not None and "+" in r.models]
    row = Row("both pipelines loaded, batch 1", rows[0].models if rows else "", targets=("memory",))
    row.peak_gib = max(peaks) if peaks else None
    if weights_gib is not None:
        row.steps = f"weights {weights_gib:.2f} GiB"
    return row


def _short(model: str) -> str:
    name = Path(model).name if os.path.isdir(model) else model
    return name.removesuffix("-v1")


def _steps(preset: dict) -> str:
    return f"{preset['steps']} ({preset['scheduler']})"


# --- main ------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-tiny", action="store_true", help="tiny presets on the CPU at 1/8 size")
    parser.add_argument("--quick", action="store_true", help="1 SKU per row, no SDXL rows")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --cpu-tiny)")
    parser.add_argument("--dtype", default=None, help="default: float16 on CUDA")
    parser.add_argument("--skus", type=int, default=None, help="SKUs per batch-1 row (default 2, quick 1)")
    parser.add_argument(
        "--original-calls",
        type=int,
        default=None,
        help="measured calls of the original method, the hero included (default 3; 2 with --cpu-tiny)",
    )
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="SKUs/h batch sizes")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no row after this many s")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense fp16 peak")
    parser.add_argument("--no-sdxl", action="store_true", help="leave out the SDXL rows")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    return parser


def main(argv: Sequence[str] | None = None) -> str:
    args = _parser().parse_args(argv)
    quick = args.quick
    device = args.device or ("cpu" if args.cpu_tiny else "cuda")
    if args.cpu_tiny:
        torch.set_num_threads(1)  # on a shared CPU, torch's threads spin against each other (20x slower)
    models.resolve_device(device)  # fail now, not after building checkpoints

    # 1. The models: the offline presets, or the full-size random-weight checkpoints (built once; SDXL's
    #    only when its rows are reached, so a slow build cannot push the SD rows past the budget)
    started = time.perf_counter()
    if args.cpu_tiny:
        hero_model, frames_model = "tiny", "tiny"
    else:
        hero_model = random_sd.resolve_benchmark_model("random-sd15")
        frames_model = random_sd.resolve_benchmark_model("random-sd2")
    bench = Bench(
        hero_model, frames_model, None, device, args.dtype, scale=0.125 if args.cpu_tiny else 1.0,
        skus=args.skus or (1 if quick else 2),
        original_calls=max(2, args.original_calls or (2 if args.cpu_tiny else 3)),
        budget_s=args.budget_s, cuda=device.startswith("cuda"), model_size=128 if args.cpu_tiny else None,
        started=started,
    )  # fmt: skip
    bench.loras = _lora_stand_ins(bench)
    cpu = f"CPU ({platform.machine()}, {os.cpu_count()} cores, 1 torch thread)"
    name = torch.cuda.get_device_name(device) if bench.cuda else cpu
    peak = peak_tflops(name, args.peak_tflops)

    # 2. Load both default pipelines, note the weights' memory, warm up (first calls pay for kernels)
    base = bench.settings(steps=2)
    for pipe in _pipes(base):
        bench.meter.attach(pipe)
    weights = torch.cuda.memory_allocated() / 2**30 if bench.cuda else None
    measure(bench, base, make_skus(bench, {**STORY, "num_frames": 8}, 1))

    # 3. The rows, most important first; each one skipped once the budget is spent
    rows = latency_rows(bench, peak, "seed", SEED) + latency_rows(bench, peak, "story", STORY)
    rows.append(memory_row(rows, weights))
    rows += throughput_rows(bench, peak, [int(b) for b in args.batches.split(",")])
    if not (quick or args.no_sdxl):
        rows += sdxl_rows(bench, peak, "tiny-xl" if args.cpu_tiny else "random-sdxl")

    # 4. The table, with what it was measured on
    for row in rows:
        row.cpu = not bench.cuda
    header = _header(bench, name, peak, argv)
    text = header + "\n\n" + render_table(rows) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return text


def _lora_stand_ins(bench: Bench) -> dict[str, str]:
    """For random-weight or tiny models: a stand-in folder for each speed preset's LoRA (offline machine)."""
    if not hasattr(run.Settings(), "lora"):
        return {}  # this prodvid cannot load a LoRA: the speed rows say so
    return {SPEED_SD15["lora"][0]: str(random_sd.random_lora_dir(bench.hero_model))}


def _header(bench: Bench, name: str, peak: float | None, argv: Sequence[str] | None) -> str:
    import diffusers

    command = "benchmarks/gpu.sh " + shlex.join(sys.argv[1:] if argv is None else argv)
    dtype = str(bench.settings().load(bench.hero_model).dtype).removeprefix("torch.")
    lines = [
        f"- device: {name}; dense fp16 peak {f'{peak:g} TFLOP/s' if peak else 'unknown (--peak-tflops)'}",
        f"- command: `{command.strip()}`",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}, {dtype}",
        f"- models: hero {_short(bench.hero_model)}, frames {_short(bench.frames_model)}"
        + (f", SDXL rows {_short(bench.xl_model)}" if bench.xl_model else "")
        + f"; output sizes × {bench.scale:g}"
        + (f", model size {bench.model_size}" if bench.model_size else ""),
        f"- original: {bench.original_calls} calls measured at {ORIGINAL_STEPS} steps, lookahead 0, "
        "× the full path's call count (computed, not run in full)",
        f"- total {time.perf_counter() - bench.started:.0f} s",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
