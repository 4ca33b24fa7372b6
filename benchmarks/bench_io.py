"""Frame I/O benchmark: kept frames (`keep_frames`, per-frame PNGs on request) encoded and stored by one
thread vs by the frames step's worker threads. Without `keep_frames` nothing per frame is encoded or stored:
the world and the manifest are the frames.

Run by hand: `python benchmarks/bench_io.py` (CPU, tiny model, 512 px, the default 48-frame drift: one
diffusion call, 48 frames to encode and store). With lookahead one call serves many frames, so encoding and
storing them is a large share of a video's time, and on a GPU machine the model waits for it. Both variants
run in this process on the same hero image, after an untimed warm-up, `--repeat` times each, alternating;
the figures that matter are the ratios. `--s3 s3://bucket/prefix` (with `PRODVID_S3_ENDPOINT_URL` for a
local server) measures against S3, where each PUT waits on the network.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid

from prodvid_core import camera, frames, run
from prodvid_core.brief import parse_brief
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore, ObjectStore, open_store
from random_sd import add_model_arguments, benchmark_settings


def _seconds(pipe, store: ObjectStore, request: frames.FramesRequest, workers: int) -> float:
    start = time.perf_counter()
    frames.generate_batch(pipe, store, [request], workers=workers, keep_frames=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--s3", help="s3://bucket/prefix to store the frames in instead of a temp folder")
    add_model_arguments(parser)
    args = parser.parse_args()

    settings, named = benchmark_settings(args, size=args.size, steps=args.steps)
    pipe = settings.load(settings.frames_model)
    brief = parse_brief({"prompt": "a bottle on a marble counter", "num_frames": args.frames}, sku="IO")
    expanded, product = run.make_canvas(sample_photo_bytes(), sku="IO", settings=settings)
    with tempfile.TemporaryDirectory() as tmp:
        hero, _ = run.make_heroes(LocalStore(tmp), {"IO": (expanded, product, brief)}, settings)["IO"]
    path = camera.drift(num_frames=args.frames)
    request = frames.FramesRequest("IO", hero.image, path, run.frame_settings(brief, settings))
    print(f"model={named} size={args.size} frames={args.frames} store={'s3' if args.s3 else 'local'}")

    times: dict[int, list[float]] = {1: [], args.workers: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat + 1):
            for workers in times:
                where = f"{args.s3.rstrip('/')}/{uuid.uuid4().hex}" if args.s3 else f"{tmp}/{i}-{workers}"
                seconds = _seconds(pipe, open_store(where), request, workers)
                if i:  # the first round warms up every shape and thread
                    times[workers].append(seconds)
    for workers, values in times.items():
        print(f"{workers} writer thread(s): median {statistics.median(values):.2f} s of {len(values)}")
    ratio = statistics.median(times[1]) / statistics.median(times[args.workers])
    print(f"ratio: {ratio:.2f}x faster with {args.workers} threads")


if __name__ == "__main__":
    main()
