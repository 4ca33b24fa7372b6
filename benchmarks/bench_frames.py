"""Frames benchmark: the world canvas with lookahead vs the original method (one call per frame).

Run by hand (`make bench`, or `python benchmarks/bench_frames.py --size 256 --steps 2` for a quick look).
Both variants run in this process on the same hero image and model; the figures that matter are the ratios,
not the absolute seconds of the tiny random-weight model on a CPU. On a GPU, `--model random-sd15 --device
cuda` measures them at the real models' cost (`random_sd.py`); `--model` also takes a Hub id or a folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from prodvid_core import camera, frames, models, run
from prodvid_core.brief import parse_brief
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore
from random_sd import add_model_arguments, benchmark_settings

PATHS = {
    "seed (20 shifts, 10 fps)": camera.seed(),
    "pan 150 frames @ 30 fps, (2, 1) px/frame": camera.from_shifts([(2, 1)] * 149, fps=30),
}


def _time_frames(pipe, hero, path, settings: frames.FrameSettings) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = frames.generate(pipe, LocalStore(tmp), hero, path, settings, sku="BENCH")
        return result.calls_made, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--lookahead", type=int, default=run.Settings.lookahead)
    add_model_arguments(parser)
    args = parser.parse_args()

    settings, named = benchmark_settings(args, size=args.size, steps=args.steps)
    pipe = settings.load(settings.frames_model)
    expanded, product = run.make_canvas(sample_photo_bytes(), sku="BENCH", settings=settings)
    with tempfile.TemporaryDirectory() as tmp:
        brief = parse_brief({"prompt": "a bottle on a marble counter"}, sku="BENCH")
        hero, _ = run.make_heroes(LocalStore(tmp), {"BENCH": (expanded, product, brief)}, settings)["BENCH"]
    device, dtype = models.resolve_device(settings.device), str(pipe.dtype).removeprefix("torch.")
    print(f"model={named} size={args.size} steps={args.steps} device={device} dtype={dtype}")
    print(f"{'path':<44} {'variant':<22} {'frames':>6} {'calls':>6} {'seconds':>8}")
    for name, path in PATHS.items():
        rows = {}
        for variant, lookahead in (
            ("original (lookahead 0)", 0),
            (f"world (lookahead {args.lookahead})", args.lookahead),
        ):
            fs = frames.FrameSettings(
                prompt="a bottle on a marble counter", steps=args.steps, lookahead=lookahead
            )
            calls, seconds = _time_frames(pipe, hero.image, path, fs)
            rows[variant] = (calls, seconds)
            print(f"{name:<44} {variant:<22} {path.num_frames:>6} {calls:>6} {seconds:>8.1f}")
        (c0, s0), (c1, s1) = rows.values()
        print(f"{'':<44} {'ratio original/world':<22} {'':>6} {c0 / c1:>6.1f} {s0 / s1:>8.1f}")


if __name__ == "__main__":
    main()
