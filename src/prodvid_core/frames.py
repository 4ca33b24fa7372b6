"""The video's frames: windows of a world canvas that the model paints once, never twice.

Frame 0 is the hero image. Each later frame is the world canvas seen at the camera's position; the
diffusion calls of `plan.plan_calls` paint the world ahead of the camera, and every pixel, once painted, is
carried over unchanged to every frame that shows it. So product pixels stay exact and error never
accumulates the way it does when each frame is re-generated from the last.

Each frame is written to the store as soon as it exists, with `manifest.json` updated after it; the world
canvas is checkpointed after each call, before the frames it serves. A re-run reuses every stored frame whose
fingerprint and checksum match and resumes at the first missing or invalid one, byte for byte what an
uninterrupted run would have written.
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


class _Fingerprints:
    """What decides each frame's pixels, hashed, so a change invalidates only from the first frame it affects.

    The world after call c depends on the settings, the hero image and calls 0..c (windows and seeds); frame
    k depends on the world after the call that completes it and on its own offset. So extending a path, or
    changing its end, keeps every frame painted before the first call that differs. fps only times the
    frames and is left out.
    """

    def __init__(self, settings: FrameSettings, plan: Plan, hero_sha256: str):
        spec = asdict(settings)
        spec.pop("max_retries")
        spec.update(size=list(plan.frame_size), hero=hero_sha256, v=MANIFEST_VERSION)
        self.worlds = [sha256(json.dumps(spec, sort_keys=True).encode())]  # [c + 1]: after call c
        for call in plan.calls:
            self.worlds.append(sha256(f"{self.worlds[-1]}|{call.window}|{call.first_frame}".encode()))
        self.frames = [
            sha256(f"{self.worlds[c + 1]}|{offset}".encode())
            for c, offset in zip(plan.call_of_frame, plan.offsets, strict=True)
        ]

    def world(self, call: int) -> str:
        return self.worlds[call + 1]

    @property
    def video(self) -> str:
        return sha256("|".join(self.frames).encode())


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
        text = {
            "fingerprint": fp,
            "call": str(call),
            "calls": json.dumps(calls),
            "bounds": json.dumps(self.bounds),
        }
        return png_bytes(rgba, text)

    @classmethod
    def from_png(cls, data: bytes, bounds: Box) -> tuple[_World, dict[str, str]]:
        """Load a checkpoint into a world of `bounds` (a changed path may have moved the world's edges)."""
        image = Image.open(io.BytesIO(data))
        image.load()
        text = dict(image.text)
        old = cls(tuple(json.loads(text["bounds"])))
        rgba = np.asarray(image.convert("RGBA"))
        if rgba.shape[:2] != old.painted.shape:
            raise ValueError("checkpoint size does not match its bounds")
        old.pixels[:], old.painted[:] = rgba[..., :3], rgba[..., 3] == 255
        world = cls(bounds)
        (x0, y0, x1, y1), (u0, v0, u1, v1) = bounds, old.bounds
        common = (max(x0, u0), max(y0, v0), min(x1, u1), min(y1, v1))
        if common[0] >= common[2] or common[1] >= common[3]:
            raise ValueError("checkpoint lies outside the world")
        pixels, painted = old.window(common)
        if painted.sum() != old.painted.sum():
            raise ValueError("checkpoint has painted pixels outside the world")
        world.paint(common, pixels, painted)
        return world, text


def _valid_prefix(store: ObjectStore, sku: str, manifest: dict | None, fps: _Fingerprints) -> list[dict]:
    """The stored frame records, in order, up to the first one missing, changed or from other settings."""
    if not manifest:
        return []
    valid = []
    prefix = layout.frames_prefix(sku)
    for i, record in enumerate(manifest.get("frames", [])[: len(fps.frames)]):
        if record.get("index") != i or record.get("fingerprint") != fps.frames[i]:
            break
        try:
            data = store.read_bytes(prefix + record["file"])
        except FileNotFoundError:
            break
        if sha256(data) != record.get("sha256"):
            break
        valid.append(record)
    return valid


def _load_checkpoint(
    store: ObjectStore, sku: str, plan: Plan, fps: _Fingerprints
) -> tuple[_World, int, list] | None:
    """The world after the last finished call, that call's index and the calls' records (seeds)."""
    try:
        world, text = _World.from_png(store.read_bytes(layout.world_checkpoint(sku)), plan.bounds)
        call, calls = int(text["call"]), json.loads(text["calls"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable checkpoint: rebuild the world from the hero image
    if not 0 <= call < len(plan.calls) or text.get("fingerprint") != fps.world(call):
        return None
    return world, call, calls[: call + 1]


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
    fps = _Fingerprints(settings, plan, sha256(hero_png))
    manifest = _new_manifest(sku, fps.video, path, plan, settings)

    # 3. Reuse what a previous run stored for the same frames: from the first frame a change affects, redo
    reused = _valid_prefix(store, sku, read_manifest(store, sku), fps)
    manifest["frames"] = list(reused)
    for record in reused:
        if on_frame:
            on_frame(record, True)
    checkpoint = _load_checkpoint(store, sku, plan, fps)
    if checkpoint is None:
        world, done = _World(plan.bounds), -1
        world.paint(plan.frame_box(0), hero_rgb, np.ones(hero_rgb.shape[:2], dtype=bool))
    else:
        world, done, calls = checkpoint
        manifest["calls"][: done + 1] = calls  # keeps the seeds that retries moved on to

    # 4. Frames whose pixels the world already holds
    writer = _FrameWriter(store, sku, plan, manifest, fps.frames, on_frame)
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
        checkpoint_png = world.to_png(fps.world(call.index), call.index, manifest["calls"][: call.index + 1])
        store.write_bytes(layout.world_checkpoint(sku), checkpoint_png)
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

    def __init__(
        self, store: ObjectStore, sku: str, plan: Plan, manifest: dict, fingerprints: list[str], on_frame
    ):
        self.store, self.sku, self.plan, self.manifest, self.on_frame = store, sku, plan, manifest, on_frame
        self.fingerprints = fingerprints
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
                "fingerprint": self.fingerprints[k],
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
