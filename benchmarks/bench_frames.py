"""Frames benchmark: the world canvas with lookahead vs the original method (one call per frame), per path and
per output format.

Run by hand (`make bench`, or `python benchmarks/bench_frames.py --size 256 --steps 2` for a quick look).
Both variants run in this process on the same hero image and model; the figures that matter are the ratios,
not the absolute seconds of the tiny random-weight model on a CPU. On a GPU, `--model random-sd15 --device
cuda` measures them at the real models' cost (`random_sd.py`); `--model` also takes a Hub id or a folder.

`--formats` (default: the four publishable formats) adds, per format:
- from the plan at the full output size (no model runs): the diffusion calls and the summed model pixel area
  × steps (what GPU time scales with: each call paints its window resampled to the model's native area,
  `--native`, 512 for SD 1.5/2, 1024 for SDXL), against the original method (one call per frame that shows
  anything new, painted at the output size), and the calls the same path needs on a 512² frame;
- from a real run at `--scale` × the output size (1 by default: the tiny model paints at its 256 px native
  area, so a full-size story takes about a minute on 2 cores): the bytes stored per SKU (world PNG +
  manifest + MP4 against per-frame PNGs, those estimated from a few rendered frames × the frame count) and
  the CPU seconds outside diffusion: resampling the windows to the model's size and back, the seam
  correction, the world PNG checkpoints, per-frame PNGs, video encoding.
`--formats none` runs only the paths table; `--paths none` only the formats.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from prodvid_core import (
    camera,
    canvas,
    formats,
    frames,
    hero,
    layout,
    mask,
    models,
    resample,
    run,
    seams,
    video,
)
from prodvid_core.brief import parse_brief
from prodvid_core.encoding import png_bytes
from prodvid_core.plan import plan_calls
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore
from prodvid_core.world import Checkpoint
from random_sd import add_model_arguments, benchmark_settings

PATHS = {
    "seed (20 shifts, 10 fps)": camera.seed(),
    "pan 150 frames @ 30 fps, (2, 1) px/frame": camera.from_shifts([(2, 1)] * 149, fps=30),
}
FORMATS = ("square", "portrait", "story", "landscape")
PROMPT = "a bottle on a marble counter"


def _time_frames(pipe, hero, path, settings: frames.FrameSettings) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = frames.generate(pipe, LocalStore(tmp), hero, path, settings, sku="BENCH")
        return result.calls_made, time.perf_counter() - start


def bench_paths(pipe, hero_image: Image.Image, args: argparse.Namespace) -> None:
    """The original method against the world canvas, calls and seconds, on each of `PATHS`."""
    print(f"{'path':<44} {'variant':<22} {'frames':>6} {'calls':>6} {'seconds':>8}")
    for name, path in PATHS.items():
        rows = {}
        for variant, lookahead in (
            ("original (lookahead 0)", 0),
            (f"world (lookahead {args.lookahead})", args.lookahead),
        ):
            fs = frames.FrameSettings(prompt=PROMPT, steps=args.steps, lookahead=lookahead)
            calls, seconds = _time_frames(pipe, hero_image, path, fs)
            rows[variant] = (calls, seconds)
            print(f"{name:<44} {variant:<22} {path.num_frames:>6} {calls:>6} {seconds:>8.1f}")
        (c0, s0), (c1, s1) = rows.values()
        print(f"{'':<44} {'ratio original/world':<22} {'':>6} {c0 / c1:>6.1f} {s0 / s1:>8.1f}")


# --- per format ------------------------------------------------------------------------------------------


def _grid(value: float) -> int:
    """`value` rounded to an even number of pixels (H.264 yuv420p), at least 64."""
    return max(64, round(value / 2) * 2)


def drift(frame_size: tuple[int, int], num_frames: int) -> camera.CameraPath:
    """The default path on frames of `frame_size` (the 512 px design scaled per axis)."""
    return camera.drift(num_frames=num_frames, frame_size=frame_size)


@dataclass(frozen=True)
class Geometry:
    """What a video costs the GPU, from the plan alone."""

    calls: int
    area_steps: int  # Σ over calls of model pixels × steps
    original_calls: int
    original_area_steps: int
    calls_at_512: int


def geometry(
    size: tuple[int, int], *, native: int, steps: int, lookahead: int, max_window: int, num_frames: int
) -> Geometry:
    """Plan the default path on an output frame of `size` as `frames.generate` does, against the original
    method (one call per frame that moves, at the output size) and the same path on a 512² frame."""
    plan = plan_calls(
        drift(size, num_frames), size, native=native, lookahead=lookahead, max_window=max_window
    )
    areas = [
        math.prod(
            resample.working_size((c.window[2] - c.window[0], c.window[3] - c.window[1]), native=native)
        )
        for c in plan.calls
    ]
    original = plan_calls(drift(size, num_frames), size, native=native, lookahead=0)
    at_512 = plan_calls(drift((512, 512), num_frames), (512, 512), native=native, lookahead=lookahead,
                        max_window=max_window)  # fmt: skip
    w, h = size
    return Geometry(
        len(plan.calls), sum(areas) * steps, len(original.calls), len(original.calls) * w * h * steps,
        len(at_512.calls),
    )  # fmt: skip


def _cpu() -> float:
    """CPU seconds of this process and its finished children (ffmpeg), all threads."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _Timed:
    """The pipeline, with the CPU seconds spent in it counted (diffusion), and the calls."""

    def __init__(self, pipe):
        self.pipe, self.seconds, self.calls = pipe, 0.0, 0

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kwargs):
        start = _cpu()
        try:
            return self.pipe(**kwargs)
        finally:
            self.seconds += _cpu() - start
            self.calls += 1


@dataclass(frozen=True)
class Stored:
    """Bytes per SKU and the CPU seconds outside diffusion, from one real run."""

    size: tuple[int, int]
    frames: int
    calls: int
    world_bytes: int
    manifest_bytes: int
    mp4_bytes: int
    frame_png_bytes: int  # all frames as PNGs, estimated from a few
    seams_s: float
    world_png_s: float
    frame_pngs_s: float
    video_s: float
    resample_s: float
    other_s: float  # the rest of frames.generate outside diffusion (manifest, fingerprints, copies)
    step_plain: float  # seams.measure_step on the world, plain copy vs corrected (only with --seams-compare)
    step_fixed: float


@contextlib.contextmanager
def _timing(spent: dict[str, float], module, *names: str):
    """Count the CPU seconds spent in `module`'s functions `names` (looked up through the module, as prodvid
    calls them) into `spent`, for the duration of the block."""
    originals = {name: getattr(module, name) for name in names}

    def timed(name):
        def call(*args, **kwargs):
            start = _cpu()
            try:
                return originals[name](*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + _cpu() - start

        return call

    for name in names:
        setattr(module, name, timed(name))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(module, name, original)


def run_format(pipe, size: tuple[int, int], args: argparse.Namespace) -> Stored:
    """Make one SKU's frames and video at `size` and measure what it stores and the CPU time around
    diffusion."""
    # 1. Canvas, mask and hero image at the output size
    photo = sample_photo_bytes()
    expanded = canvas.expand(photo, sku="BENCH", size=size)
    product = mask.segment(expanded.image, sku="BENCH")
    hero_image = hero.generate(
        pipe, expanded.image, product, sku="BENCH", prompt=PROMPT, steps=args.steps
    ).image
    path = drift(size, args.frames)
    settings = frames.FrameSettings(
        prompt=PROMPT,
        steps=args.steps,
        lookahead=args.lookahead,
        max_window=args.max_window,
    )

    # 2. The frames, timed: diffusion (the pipeline), resampling, the seam correction, the rest
    timed, spent = _Timed(pipe), {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        _timing(spent, seams, "correct"),
        _timing(spent, resample, "to_model", "to_output", "paint_to_model"),
    ):
        store = LocalStore(tmp)
        start = _cpu()
        result = frames.generate(timed, store, hero_image, path, settings, sku="BENCH")
        generate_s = _cpu() - start
        world = store.read_bytes(layout.world_checkpoint("BENCH"))
        manifest = store.read_bytes(layout.frames_manifest("BENCH"))

        # 3. The video from the stored frames
        start = _cpu()
        mp4 = video.encode(
            frames.load_frames(store, "BENCH", result.manifest), fps=path.fps, sku="BENCH"
        ).data
        video_s = _cpu() - start

        # 4. The world PNG (encoded after each call; timed on the final world) and per-frame PNGs (a few)
        world_state = Checkpoint.from_png(world).world
        rgba = np.dstack([world_state.pixels, np.where(world_state.owner >= 0, 255, 0).astype(np.uint8)])
        start = _cpu()
        png_bytes(rgba)
        world_png_s = (_cpu() - start) * result.calls_made
        step_fixed = seams.measure_step(world_state.pixels, world_state.owner).step
        sample = [0, result.count // 2, result.count - 1]
        rendered = [
            f for k, f in enumerate(frames.load_frames(store, "BENCH", result.manifest)) if k in sample
        ]
        start = _cpu()
        sizes = [len(png_bytes(f)) for f in rendered]
        frame_pngs_s = (_cpu() - start) / len(rendered) * result.count
        frame_png_bytes = round(np.mean(sizes) * result.count)

    # 6. With --seams-compare, the same frames with plain copying, for the step it leaves
    step_plain = float("nan")
    if args.seams_compare:
        with tempfile.TemporaryDirectory() as tmp:
            store = LocalStore(tmp)
            plain = dataclasses.replace(settings, seams=False)
            frames.generate(pipe, store, hero_image, path, plain, sku="BENCH")
            w = Checkpoint.from_png(store.read_bytes(layout.world_checkpoint("BENCH"))).world
            step_plain = seams.measure_step(w.pixels, w.owner).step

    seams_s, resample_s = spent.get("correct", 0.0), sum(v for k, v in spent.items() if k != "correct")
    other_s = max(0.0, generate_s - timed.seconds - seams_s - resample_s - world_png_s)
    return Stored(
        size=size,
        frames=result.count,
        calls=result.calls_made,
        world_bytes=len(world),
        manifest_bytes=len(manifest),
        mp4_bytes=len(mp4),
        frame_png_bytes=frame_png_bytes,
        seams_s=seams_s,
        world_png_s=world_png_s,
        frame_pngs_s=frame_pngs_s,
        video_s=video_s,
        resample_s=resample_s,
        other_s=other_s,
        step_plain=step_plain,
        step_fixed=step_fixed,
    )


def time_seams(window: tuple[int, int] = (2200, 1300), repeat: int = 3) -> None:
    """CPU seconds of `seams.correct` on a window of `window` px (random pixels), for a band of new pixels
    at one side and for an L (a diagonal move), best of `repeat`."""
    w, h = window
    rng = np.random.default_rng(0)
    old, out = (rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2))
    band = np.ones((h, w), dtype=bool)
    band[:, w - 400 :] = False
    ell = band.copy()
    ell[h - 200 :] = False
    for name, painted in (("band of 400 px", band), ("L of 400 + 200 px", ell)):
        seconds = []
        for _ in range(repeat):
            start = time.process_time()
            seams.correct(out, old, painted)
            seconds.append(time.process_time() - start)
        print(
            f"seams.correct, {w}x{h} window, {name} ({(~painted).sum():,} new px): {min(seconds):.2f} s CPU"
        )


def bench_formats(pipe, args: argparse.Namespace) -> None:
    """Per format: GPU cost from the plan at full size, bytes and CPU seconds from a run at `--scale`."""
    print(
        f"\nformats: {args.frames} frames of the default drift, steps {args.steps}, native {args.native} px"
    )
    print(
        f"{'format':<10} {'size':>9} {'calls':>5} {'at 512²':>7} {'orig calls':>10} {'Mpx·steps':>10} "
        f"{'orig Mpx·steps':>14} {'ratio':>6}"
    )
    for value in args.formats:
        size = formats.parse_format(value).size
        g = geometry(
            size, native=args.native, steps=args.steps, lookahead=args.lookahead,
            max_window=args.max_window, num_frames=args.frames,
        )  # fmt: skip
        print(
            f"{value:<10} {'x'.join(map(str, size)):>9} {g.calls:>5} {g.calls_at_512:>7} "
            f"{g.original_calls:>10} "
            f"{g.area_steps / 1e6:>10.1f} {g.original_area_steps / 1e6:>14.1f} "
            f"{g.original_area_steps / g.area_steps:>6.1f}"
        )
    print()
    time_seams()
    print(f"\nstored per SKU and CPU seconds outside diffusion, run at {args.scale} × the output size:")
    print(
        f"{'format':<10} {'run size':>9} {'calls':>5} {'world':>8} {'manifest':>8} {'mp4':>8} "
        f"{'per-frame':>9} {'ratio':>6} | {'seams':>6} {'worldpng':>8} {'framepngs':>9} {'video':>6} "
        f"{'resample':>8} {'other':>6} | {'step plain/fixed':>16}"
    )
    for value in args.formats:
        w, h = formats.parse_format(value).size
        s = run_format(pipe, (_grid(w * args.scale), _grid(h * args.scale)), args)
        ours = s.world_bytes + s.manifest_bytes + s.mp4_bytes
        print(
            f"{value:<10} {'x'.join(map(str, s.size)):>9} {s.calls:>5} {s.world_bytes / 1e6:>7.2f}M "
            f"{s.manifest_bytes / 1e3:>7.1f}k {s.mp4_bytes / 1e6:>7.2f}M {s.frame_png_bytes / 1e6:>8.1f}M "
            f"{s.frame_png_bytes / ours:>6.1f} | {s.seams_s:>6.2f} {s.world_png_s:>8.2f} "
            f"{s.frame_pngs_s:>9.2f} {s.video_s:>6.2f} {s.resample_s:>8.2f} {s.other_s:>6.2f} | "
            f"{s.step_plain:>7.2f}/{s.step_fixed:>5.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="the paths table's square frame")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--lookahead", type=int, default=run.Settings.lookahead)
    parser.add_argument("--max-window", type=int, default=run.Settings.max_window, help="model px")
    parser.add_argument("--paths", default="all", help="all or none")
    parser.add_argument("--formats", default=",".join(FORMATS), help="names or WxH, comma-separated; none")
    parser.add_argument("--scale", type=float, default=1.0, help="the formats' run size / output size")
    parser.add_argument("--frames", type=int, default=48, help="frames per video in the formats' runs")
    parser.add_argument("--native", type=int, default=512, help="the model's native side (SDXL: 1024)")
    parser.add_argument("--seams-compare", action="store_true", help="also run plain copying: the step")
    add_model_arguments(parser)
    args = parser.parse_args()
    args.formats = [] if args.formats == "none" else args.formats.split(",")

    settings, named = benchmark_settings(args, size=args.size, steps=args.steps)
    pipe = settings.load(settings.frames_model)
    device, dtype = models.resolve_device(settings.device), str(pipe.dtype).removeprefix("torch.")
    print(f"model={named} steps={args.steps} device={device} dtype={dtype}")
    if args.paths != "none":
        expanded, product = run.make_canvas(sample_photo_bytes(), sku="BENCH", settings=settings)
        with tempfile.TemporaryDirectory() as tmp:
            brief = parse_brief({"prompt": PROMPT}, sku="BENCH")
            hero_set = run.make_heroes(LocalStore(tmp), {"BENCH": (expanded, product, brief)}, settings)
        print(f"paths at {args.size} px")
        bench_paths(pipe, hero_set["BENCH"][0].image, args)
    if args.formats:
        bench_formats(pipe, args)


if __name__ == "__main__":
    main()
