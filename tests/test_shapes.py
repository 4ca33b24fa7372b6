"""Fixed shapes: the diffusion calls of 100 SKUs of mixed formats and camera paths need only a few shapes.

Pure geometry (the plan of calls and the buckets, no model), so it is cheap: every call a SKU makes, the
hero image and each frames call, is sized by `resample.working` exactly as `inpaint_batch` sizes it.
"""

from __future__ import annotations

import functools
import json
import os
import random

import pytest

from prodvid_core import formats, resample
from prodvid_core.brief import parse_brief
from prodvid_core.plan import plan_calls

FORMATS = [
    *formats.PRESETS,
    "1000x562",
    "1200x628",
    "800x1000",
    "1280x720",
    "720x1280",
    "1500x500",
    "600x600",
]
CAMERAS = [
    {"path": "drift"},
    {"path": "seed"},
    {"path": "pan", "distance": [-0.2, 0]},
    {"path": "pan", "distance": [0, -0.15]},
    {"path": "arc"},
    {"path": "polyline", "points": [[0, 0], [-0.1, -0.05], [-0.2, 0.05]]},
]
# The most shapes each model may see over 100 such SKUs: its buckets used (docs/speed.md, "Fixed shapes").
BOUND = {256: 5, 512: 9, 1024: 13}


def skus(count: int = 100, seed: int = 0):
    """`count` SKUs: a format and a camera path each, drawn with a seeded generator."""
    rng = random.Random(seed)
    for i in range(count):
        sku = f"S-{i}"
        brief = parse_brief(
            {"prompt": "p", "format": rng.choice(FORMATS), "camera": rng.choice(CAMERAS)}, sku=sku
        )
        yield sku, brief


@functools.cache
def window_sizes(output: str, camera: str, native: int) -> list[tuple[int, int]]:
    """The windows of one SKU's calls, the hero image's first (SKUs of one format and path share them)."""
    size = formats.parse_format(output).size
    brief = parse_brief({"prompt": "p", "format": output, "camera": json.loads(camera)}, sku="S")
    plan = plan_calls(brief.camera_path("S", size), size, native=native)
    return [size] + [(c.window[2] - c.window[0], c.window[3] - c.window[1]) for c in plan.calls]


def shapes(native: int) -> tuple[set, set, int]:
    """The distinct window sizes (output pixels), the distinct working sizes and the calls of 100 SKUs."""
    windows, working, calls = set(), set(), 0
    for _, brief in skus():
        sizes = window_sizes(brief.format, json.dumps(brief.camera, sort_keys=True), native)
        windows |= set(sizes)
        working |= {resample.working_size(s, native=native) for s in sizes}
        calls += len(sizes)
    return windows, working, calls


# SDXL's 1024 plans take about 20 s on 2 cores: by hand, with PRODVID_SHAPES_SDXL=1
SDXL = pytest.param(
    1024, marks=pytest.mark.skipif(not os.environ.get("PRODVID_SHAPES_SDXL"), reason="PRODVID_SHAPES_SDXL")
)


@pytest.mark.parametrize("native", [256, 512, SDXL])
def test_100_skus_of_mixed_formats_need_few_shapes(native):
    windows, working, calls = shapes(native)
    assert len(windows) > 50  # without buckets, nearly one shape per window
    assert working <= set(resample.buckets(native))
    assert len(working) <= BOUND[native], sorted(working)
    print(f"native {native}: {calls} calls, {len(windows)} window sizes, {len(working)} working sizes")
