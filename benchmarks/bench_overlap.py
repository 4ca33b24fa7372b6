"""Overlap benchmark: GPU-idle time per SKU with the store writes and video encoding on the caller's thread vs
on background writers (`generate_many(..., overlap=...)`).

Run by hand: `python benchmarks/bench_overlap.py` (CPU, tiny model, tiny sizes) or on a GPU with
`--device cuda --model random-sd15`. Both variants make the same SKUs from empty stores in this process on
the same model, after an untimed warm-up of both. GPU-idle is the caller thread's time outside pipeline
calls during the frames step (resuming, seam correction, world checkpoints, manifests, frame hashing and,
without overlap, the video encoding), as `FrameSet.gpu_idle_seconds` reports it; the ratio against the
non-overlapped path is the figure to read. On a CPU the background threads share the cores with the model,
so the wall time gains little there; on a GPU the model does not use the CPU and the idle time is saved.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from prodvid_core import run
from prodvid_core.brief import parse_brief
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore
from random_sd import add_model_arguments, benchmark_settings


def _make_all(settings: run.Settings, skus: int, camera: str, overlap: bool) -> tuple[float, list]:
    """Wall seconds and the results of making `skus` SKUs from an empty store."""
    photo = sample_photo_bytes()
    brief = {"prompt": "a bottle", "camera": {"path": camera}}
    inputs = {f"O-{i}": (photo, parse_brief({**brief, "seed": i}, sku=f"O-{i}")) for i in range(skus)}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results = run.generate_many(LocalStore(tmp), inputs, settings, overlap=overlap)
        return time.perf_counter() - start, list(results.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skus", type=int, default=4)
    parser.add_argument("--format", default="512x512")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--camera", default="seed", help="camera path name (seed: 20 frames, many calls)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each variant, alternating")
    add_model_arguments(parser)
    args = parser.parse_args()

    settings, named = benchmark_settings(args, format=args.format, steps=args.steps, lookahead=32)
    print(f"model={named} format={args.format} steps={args.steps} skus={args.skus} camera={args.camera}")
    for overlap in (False, True):  # warm-up, untimed
        _make_all(settings, 1, args.camera, overlap)

    rows: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    for _ in range(args.repeat):
        for overlap in (False, True):
            wall, results = _make_all(settings, args.skus, args.camera, overlap)
            idle = statistics.mean(r.frames.gpu_idle_seconds for r in results)
            calls = statistics.mean(r.frames.calls_made for r in results)
            rows[overlap].append((wall, idle, calls))
    for overlap, runs in rows.items():
        wall = statistics.median(r[0] for r in runs)
        idle = statistics.median(r[1] for r in runs)
        name = "overlapped " if overlap else "on caller  "
        print(f"{name}: {wall:7.2f} s wall, GPU idle {idle:6.3f} s per SKU ({runs[0][2]:.1f} calls per SKU)")
    w0, i0 = (statistics.median(r[k] for r in rows[False]) for k in (0, 1))
    w1, i1 = (statistics.median(r[k] for r in rows[True]) for k in (0, 1))
    print(f"ratio: GPU idle per SKU {i1 / i0:.2f}x of the non-overlapped path; wall {w1 / w0:.2f}x")


if __name__ == "__main__":
    main()
