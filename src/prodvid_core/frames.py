"""The video's frames: windows of a world canvas that the model paints once, never twice.

Frame 0 is the hero image. Each later frame is the world canvas seen at the camera's position; the
diffusion calls of `plan.plan_calls` paint the world ahead of the camera, and every pixel, once painted, is
carried over unchanged to every frame that shows it. So product pixels stay exact and error never
accumulates the way it does when each frame is re-generated from the last.

Each frame is written to the store as soon as it exists, with `manifest.json` updated after it; the world
canvas is checkpointed after each call, before the frames it serves. A re-run with the same fingerprint
reuses every stored frame whose checksum matches and resumes at the first missing one, byte for byte what
an uninterrupted run would have written.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from prodvid_core import layout
from prodvid_core.camera import CameraPath
from prodvid_core.encoding import png_bytes, sha256
from prodvid_core.errors import InvalidInputError
from prodvid_core.inpaint import Prompt, inpaint, step_seed
from prodvid_core.plan import Box, Plan, plan_calls
from prodvid_core.storage import ObjectStore

__all__ = ["FrameSettings", "FrameSet", "generate", "read_manifest", "load_frames"]

MANIFEST_VERSION = 1
FAIL_AT_FRAME_ENV = "PRODVID_TEST_FAIL_AT_FRAME"  # test-only switch: raise before writing this frame


@dataclass(frozen=True)
class FrameSettings:
    """Everything besides the camera path that decides the frames' pixels (and so their fingerprint)."""

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    lookahead: int = 128
    max_window: int = 768
    model: str = ""
    max_retries: int = 2


@dataclass
class FrameSet:
    """The stored frames of one SKU and what making them took."""

    sku: str
    manifest: dict
    calls_made: int
    frames_reused: int
    seconds: float

    @property
    def count(self) -> int:
        return len(self.manifest["frames"])

    @property
    def keys(self) -> list[str]:
        prefix = layout.frames_prefix(self.sku)
        return [prefix + f["file"] for f in self.manifest["frames"]]


def read_manifest(store: ObjectStore, sku: str) -> dict | None:
    try:
        return json.loads(store.read_bytes(layout.frames_manifest(sku)))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # a manifest that does not parse is as good as none: everything is made again


def load_frames(store: ObjectStore, sku: str, manifest: dict | None = None) -> Iterator[np.ndarray]:
    """The stored frames in order, as uint8 H×W×3 arrays."""
    manifest = manifest or read_manifest(store, sku)
    if manifest is None:
        raise FileNotFoundError(layout.frames_manifest(sku))
    for record in manifest["frames"]:
        data = store.read_bytes(layout.frames_prefix(sku) + record["file"])
        yield np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def fingerprint(settings: FrameSettings, path: CameraPath, size: tuple[int, int], hero_sha256: str) -> str:
    """Hash of everything that determines the frames' pixels (fps only times them, so it is left out)."""
    spec = asdict(settings)
    spec.pop("max_retries")
    spec.update(shifts=[list(s) for s in path.shifts], size=list(size), hero=hero_sha256, v=MANIFEST_VERSION)
    return sha256(json.dumps(spec, sort_keys=True).encode())


class _World:
    """The world canvas: pixels and which of them are painted, over the plan's bounds."""

    def __init__(self, bounds: Box):
        self.bounds = bounds
        w, h = bounds[2] - bounds[0], bounds[3] - bounds[1]
        self.pixels = np.zeros((h, w, 3), dtype=np.uint8)
        self.painted = np.zeros((h, w), dtype=bool)

    def _slice(self, box: Box) -> tuple[slice, slice]:
        x0, y0 = self.bounds[0], self.bounds[1]
        return slice(box[1] - y0, box[3] - y0), slice(box[0] - x0, box[2] - x0)

    def window(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        s = self._slice(box)
        return self.pixels[s], self.painted[s]

    def paint(self, box: Box, pixels: np.ndarray, new: np.ndarray) -> None:
        """Keep only the newly painted pixels: already-painted ones are never replaced."""
        s = self._slice(box)
        self.pixels[s][new] = pixels[new]
        self.painted[s] |= new

    def to_png(self, fp: str, call: int, calls: list[dict]) -> bytes:
        """One atomic object: pixels, painted mask (alpha) and the calls made so far, with their seeds."""
        rgba = np.dstack([self.pixels, np.where(self.painted, 255, 0).astype(np.uint8)])
        return png_bytes(rgba, {"fingerprint": fp, "call": str(call), "calls": json.dumps(calls)})

    @classmethod
    def from_png(cls, data: bytes, bounds: Box) -> tuple[_World, dict[str, str]]:
        image = Image.open(io.BytesIO(data))
        image.load()
        rgba = np.asarray(image.convert("RGBA"))
        world = cls(bounds)
        if rgba.shape[:2] != world.painted.shape:
            raise ValueError("checkpoint has another size")
        world.pixels[:] = rgba[..., :3]
        world.painted[:] = rgba[..., 3] == 255
        return world, dict(image.text)


def _valid_prefix(store: ObjectStore, sku: str, manifest: dict | None, fp: str, count: int) -> list[dict]:
    """The stored frame records, in order, up to the first one missing, changed or from other settings."""
    if not manifest or manifest.get("fingerprint") != fp:
        return []
    valid = []
    prefix = layout.frames_prefix(sku)
    for i, record in enumerate(manifest.get("frames", [])[:count]):
        if record.get("index") != i:
            break
        try:
            data = store.read_bytes(prefix + record["file"])
        except FileNotFoundError:
            break
        if sha256(data) != record.get("sha256"):
            break
        valid.append(record)
    return valid


def _load_checkpoint(store: ObjectStore, sku: str, plan: Plan, fp: str) -> tuple[_World, int, list] | None:
    """The world after the last finished call, that call's index and the calls' records (seeds)."""
    try:
        world, text = _World.from_png(store.read_bytes(layout.world_checkpoint(sku)), plan.bounds)
        call, calls = int(text["call"]), json.loads(text["calls"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError):
        return None  # unreadable checkpoint: rebuild the world from the hero image
    if text.get("fingerprint") != fp or not 0 <= call < len(plan.calls) or len(calls) != len(plan.calls):
        return None
    return world, call, calls


def generate(
    pipe,
    store: ObjectStore,
    hero: Image.Image,
    path: CameraPath,
    settings: FrameSettings,
    *,
    sku: str,
    on_frame: Callable[[dict, bool], None] | None = None,
) -> FrameSet:
    """Make (or resume) the frames of `sku`'s video and store them with their manifest.

    Args:
        pipe: a diffusers inpainting pipeline (`models.load_inpaint_pipeline`).
        store: where `frames/<SKU>/` lives.
        hero: the hero image, frame 0.
        path: the camera path; `path.num_frames` frames are made.
        settings: prompt, seed and painting settings.
        on_frame: called with each frame's manifest record and whether it was reused, for progress.

    Example:
        >>> settings = FrameSettings(prompt="on a beach")
        >>> frame_set = frames.generate(pipe, store, hero.image, camera.drift(), settings, sku="MUG-1")
        >>> frame_set.calls_made, frame_set.count
    """
    # 1. Check inputs
    size = hero.size
    if size[0] % 8 or size[1] % 8:
        raise InvalidInputError(
            f"SKU {sku}: the hero image has to be a multiple of 8 px but is {size[0]}x{size[1]}."
        )
    hero_rgb = np.asarray(hero.convert("RGB"))
    hero_png = png_bytes(hero_rgb)
    start = time.perf_counter()

    # 2. Plan every diffusion call (a pure function of path and settings)
    plan = plan_calls(path, size, lookahead=settings.lookahead, max_window=settings.max_window)
    fp = fingerprint(settings, path, size, sha256(hero_png))
    manifest = _new_manifest(sku, fp, path, plan, settings)

    # 3. Reuse what a previous run stored with the same fingerprint
    previous = read_manifest(store, sku)
    reused = _valid_prefix(store, sku, previous, fp, path.num_frames)
    manifest["frames"] = list(reused)
    for record in reused:
        if on_frame:
            on_frame(record, True)
    checkpoint = _load_checkpoint(store, sku, plan, fp)
    if checkpoint is None:
        world, done = _World(plan.bounds), -1
        world.paint(plan.frame_box(0), hero_rgb, np.ones(hero_rgb.shape[:2], dtype=bool))
    else:
        world, done, manifest["calls"] = checkpoint  # keeps the seeds that retries moved on to

    # 4. Frames whose pixels the world already holds
    writer = _FrameWriter(store, sku, plan, manifest, on_frame)
    writer.write_ready(world, done, hero_png=hero_png)

    # 5. Paint the rest, call by call: checkpoint the world, then write the frames it completes
    prompt = Prompt(settings.prompt, settings.negative_prompt, settings.steps, settings.guidance)
    calls_made = 0
    for call in plan.calls[done + 1 :]:
        pixels, painted = world.window(call.window)
        out, attempt = inpaint(
            pipe, pixels, ~painted, prompt, seed=settings.seed, step=call.first_frame, sku=sku,
            what=f"frame {call.first_frame}", max_retries=settings.max_retries,
        )  # fmt: skip
        world.paint(call.window, out, ~painted)
        calls_made += 1
        manifest["calls"][call.index]["seed"] = step_seed(settings.seed, call.first_frame, attempt)
        store.write_bytes(layout.world_checkpoint(sku), world.to_png(fp, call.index, manifest["calls"]))
        writer.write_ready(world, call.index, hero_png=hero_png)

    # 6. Drop frames a longer earlier video left behind
    keep = {layout.frames_prefix(sku) + r["file"] for r in manifest["frames"]}
    for key in store.list(layout.frames_prefix(sku)):
        name = key.rsplit("/", 1)[-1]
        if name[:5].isdigit() and name.endswith(".png") and key not in keep:
            store.delete(key)
    return FrameSet(
        sku=sku,
        manifest=manifest,
        calls_made=calls_made,
        frames_reused=len(reused),
        seconds=round(time.perf_counter() - start, 3),
    )


def _new_manifest(sku: str, fp: str, path: CameraPath, plan: Plan, settings: FrameSettings) -> dict:
    calls = [{**c.to_json(), "seed": step_seed(settings.seed, c.first_frame)} for c in plan.calls]
    return {
        "version": MANIFEST_VERSION,
        "sku": sku,
        "fingerprint": fp,
        "size": list(plan.frame_size),
        "fps": path.fps,
        "num_frames": path.num_frames,
        "model": settings.model,
        "prompt": settings.prompt,
        "negative_prompt": settings.negative_prompt,
        "seed": settings.seed,
        "steps": settings.steps,
        "guidance": settings.guidance,
        "lookahead": settings.lookahead,
        "max_window": settings.max_window,
        "calls": calls,
        "frames": [],
    }


class _FrameWriter:
    """Writes frames in order, each as soon as the world holds all its pixels, then the manifest."""

    def __init__(self, store: ObjectStore, sku: str, plan: Plan, manifest: dict, on_frame):
        self.store, self.sku, self.plan, self.manifest, self.on_frame = store, sku, plan, manifest, on_frame
        self.fail_at = int(os.environ.get(FAIL_AT_FRAME_ENV, "-1"))

    def write_ready(self, world: _World, done: int, *, hero_png: bytes) -> None:
        frames = self.manifest["frames"]
        while len(frames) < self.plan_frames and self.plan.call_of_frame[len(frames)] <= done:
            k = len(frames)
            if k == self.fail_at:
                raise RuntimeError(f"SKU {self.sku}: test fault injected at frame {k} ({FAIL_AT_FRAME_ENV}).")
            data = hero_png if k == 0 else png_bytes(world.window(self.plan.frame_box(k))[0])
            record = {
                "index": k,
                "file": f"{k:05d}.png",
                "shift": list(self.plan.offsets[k] if k == 0 else _diff(self.plan.offsets, k)),
                "offset": list(self.plan.offsets[k]),
                "call": self.plan.call_of_frame[k],
                "sha256": sha256(data),
            }
            self.store.write_bytes(layout.frame_png(self.sku, k), data)
            frames.append(record)
            self.store.write_bytes(
                layout.frames_manifest(self.sku), json.dumps(self.manifest, indent=1).encode()
            )
            if self.on_frame:
                self.on_frame(record, False)

    @property
    def plan_frames(self) -> int:
        return len(self.plan.offsets)


def _diff(offsets: tuple[tuple[int, int], ...], k: int) -> tuple[int, int]:
    return offsets[k][0] - offsets[k - 1][0], offsets[k][1] - offsets[k - 1][1]
