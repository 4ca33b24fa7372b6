"""The video's frames: windows of a world canvas that the model paints once, never twice.

Frame 0 is the hero image. Each later frame is the world canvas seen at the camera's position; the
diffusion calls of `plan.plan_calls` paint the world ahead of the camera, and every pixel, once painted, is
carried over unchanged to every frame that shows it. So product pixels stay exact and error never
accumulates the way it does when each frame is re-generated from the last.

Each frame is written to the store as soon as the world holds all its pixels (the frames of one call by
worker threads together), with `manifest.json` updated after them; the world canvas is checkpointed after
each call, before the frames it serves. A re-run reuses every stored frame whose fingerprint and checksum
match and resumes at the first missing or invalid one, byte for byte what an uninterrupted run would have
written.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from prodvid_core import layout, seams
from prodvid_core.camera import CameraPath
from prodvid_core.encoding import png_bytes, sha256
from prodvid_core.errors import InvalidInputError
from prodvid_core.inpaint import PaintRequest, Prompt, batches, inpaint_batch, step_seed
from prodvid_core.plan import Box, Plan, plan_calls
from prodvid_core.storage import ObjectStore

__all__ = [
    "FrameSettings",
    "FramesRequest",
    "FrameSet",
    "generate",
    "generate_batch",
    "read_manifest",
    "load_frame_set",
    "load_frames",
]

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
    seams: bool = True  # correct each call's new pixels to meet the painted ones without a step (seams.py)


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


def load_frame_set(store: ObjectStore, sku: str) -> FrameSet:
    """The stored frames of `sku` (its manifest) as a `FrameSet` that made no calls, for the next step."""
    manifest = read_manifest(store, sku)
    if manifest is None:
        raise FileNotFoundError(f"SKU {sku}: no {layout.frames_manifest(sku)}; make the frames first.")
    return FrameSet(
        sku=sku, manifest=manifest, calls_made=0, frames_reused=len(manifest["frames"]), seconds=0.0
    )


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
    """The world canvas: its pixels, and which step painted each (-1 none, 0 the hero image, c + 1 call c).

    Knowing the painter of every pixel lets one checkpoint give back the world after any earlier call, which
    is what a changed camera path that shares only the first calls resumes from.
    """

    def __init__(self, bounds: Box):
        self.bounds = bounds
        w, h = bounds[2] - bounds[0], bounds[3] - bounds[1]
        self.pixels = np.zeros((h, w, 3), dtype=np.uint8)
        self.owner = np.full((h, w), -1, dtype=np.int16)

    def _slice(self, box: Box) -> tuple[slice, slice]:
        x0, y0 = self.bounds[0], self.bounds[1]
        return slice(box[1] - y0, box[3] - y0), slice(box[0] - x0, box[2] - x0)

    def window(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """The pixels of `box` and which of them are painted."""
        s = self._slice(box)
        return self.pixels[s], self.owner[s] >= 0

    def paint(self, box: Box, pixels: np.ndarray, new: np.ndarray, *, owner: int) -> None:
        """Keep only the newly painted pixels: already-painted ones are never replaced."""
        s = self._slice(box)
        self.pixels[s][new] = pixels[new]
        self.owner[s][new] = owner

    def rewind(self, call: int) -> None:
        """Forget what the calls after `call` painted."""
        later = self.owner > call + 1
        self.pixels[later], self.owner[later] = 0, -1

    def moved_to(self, bounds: Box) -> _World:
        """The same world in `bounds` (a changed path may have moved the world's edges)."""
        world = _World(bounds)
        (x0, y0, x1, y1), (u0, v0, u1, v1) = bounds, self.bounds
        common = (max(x0, u0), max(y0, v0), min(x1, u1), min(y1, v1))
        if common[0] >= common[2] or common[1] >= common[3]:
            raise ValueError("checkpoint lies outside the world")
        src, dst = self._slice(common), world._slice(common)
        world.pixels[dst], world.owner[dst] = self.pixels[src], self.owner[src]
        if (world.owner >= 0).sum() != (self.owner >= 0).sum():
            raise ValueError("checkpoint has painted pixels outside the world")
        return world

    def to_png(self, worlds: list[str], calls: list[dict]) -> bytes:
        """One atomic object: pixels, painted mask (alpha), each pixel's painter, and the calls made so far
        with their seeds and the fingerprint of the world after each."""
        rgba = np.dstack([self.pixels, np.where(self.owner >= 0, 255, 0).astype(np.uint8)])
        owners = base64.b64encode(zlib.compress(self.owner.astype("<i2").tobytes(), 9)).decode()
        text = {
            "call": str(len(worlds) - 1),
            "worlds": json.dumps(worlds),
            "calls": json.dumps(calls),
            "bounds": json.dumps(self.bounds),
            "owners": owners,
        }
        return png_bytes(rgba, text)

    @classmethod
    def from_png(cls, data: bytes) -> tuple[_World, dict[str, str]]:
        image = Image.open(io.BytesIO(data))
        image.load()
        text = dict(image.text)
        world = cls(tuple(json.loads(text["bounds"])))
        rgba = np.asarray(image.convert("RGBA"))
        owner = np.frombuffer(zlib.decompress(base64.b64decode(text["owners"])), dtype="<i2")
        if rgba.shape[:2] != world.owner.shape or owner.size != world.owner.size:
            raise ValueError("checkpoint size does not match its bounds")
        world.pixels[:], world.owner[:] = rgba[..., :3], owner.reshape(world.owner.shape)
        if not np.array_equal(rgba[..., 3] == 255, world.owner >= 0):
            raise ValueError("checkpoint alpha does not match its owners")
        return world, text


def _valid_prefix(
    store: ObjectStore, sku: str, manifest: dict | None, fps: _Fingerprints, pool: ThreadPoolExecutor
) -> list[dict]:
    """The stored frame records, in order, up to the first one missing, changed or from other settings.

    The frames are read and hashed by the pool's threads: a re-run that reuses a video reads every frame.
    """
    candidates = []
    for i, record in enumerate((manifest or {}).get("frames", [])[: len(fps.frames)]):
        if record.get("index") != i or record.get("fingerprint") != fps.frames[i]:
            break
        candidates.append(record)
    shas = list(pool.map(lambda record: _stored_sha256(store, sku, record), candidates))
    valid = []
    for record, sha in zip(candidates, shas, strict=True):
        if sha is None or sha != record.get("sha256"):
            break
        valid.append(record)
    return valid


def _stored_sha256(store: ObjectStore, sku: str, record: dict) -> str | None:
    try:
        return sha256(store.read_bytes(layout.frames_prefix(sku) + record["file"]))
    except FileNotFoundError:
        return None


def _load_checkpoint(
    store: ObjectStore, sku: str, plan: Plan, fps: _Fingerprints
) -> tuple[_World, int, list] | None:
    """The world after the last call this plan shares with the checkpoint's, that call's index and the
    calls' records (seeds). A crash resumes after the last finished call; a changed path after the last
    call it did not change."""
    try:
        world, text = _World.from_png(store.read_bytes(layout.world_checkpoint(sku)))
        worlds, calls = json.loads(text["worlds"]), json.loads(text["calls"])
        # world fingerprints are chained: the plans share every call up to the last one that matches
        shared = [c for c in range(min(len(worlds), len(plan.calls))) if worlds[c] == fps.world(c)]
        if not shared:
            return None
        world.rewind(shared[-1])
        return world.moved_to(plan.bounds), shared[-1], calls[: shared[-1] + 1]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, zlib.error):
        return None  # unreadable checkpoint: rebuild the world from the hero image


@dataclass(frozen=True, eq=False)
class FramesRequest:
    """One SKU's video to make: its hero image (frame 0), camera path and settings."""

    sku: str
    hero: Image.Image
    path: CameraPath
    settings: FrameSettings


OnFrame = Callable[[str, dict, bool], None]


def generate(
    pipe,
    store: ObjectStore,
    hero: Image.Image,
    path: CameraPath,
    settings: FrameSettings,
    *,
    sku: str,
    on_frame: OnFrame | None = None,
) -> FrameSet:
    """Make (or resume) the frames of `sku`'s video and store them with their manifest.

    Args:
        pipe: a diffusers inpainting pipeline (`models.load_inpaint_pipeline`).
        store: where `frames/<SKU>/` lives.
        hero: the hero image, frame 0.
        path: the camera path; `path.num_frames` frames are made.
        settings: prompt, seed and painting settings.
        on_frame: called with the SKU, each frame's manifest record and whether it was reused, for progress.

    Example:
        >>> settings = FrameSettings(prompt="on a beach")
        >>> frame_set = frames.generate(pipe, store, hero.image, camera.drift(), settings, sku="MUG-1")
        >>> frame_set.calls_made, frame_set.count
    """
    return generate_batch(pipe, store, [FramesRequest(sku, hero, path, settings)], on_frame=on_frame)[0]


def generate_batch(
    pipe,
    store: ObjectStore,
    requests: list[FramesRequest],
    *,
    batch_size: int = 1,
    on_frame: OnFrame | None = None,
    workers: int | None = None,
) -> list[FrameSet]:
    """Make (or resume) the frames of many SKUs' videos, sharing diffusion calls `batch_size` SKUs at a time.

    SKUs whose calls have the same window sizes (the same camera path on the same canvas size) are put side
    by side and taken `batch_size` at a time. The SKUs of a batch paint in rounds, each its next call, and
    the calls of a round that share a window size share one pipeline call. Each SKU stores its frames,
    manifest and world checkpoint exactly as it does alone, so resuming works the same; the painted pixels
    may differ in their last bits from an unbatched run, and each call's record in the manifest names the
    SKUs it was painted with.

    Frames are PNG-encoded and stored by `workers` threads (default: the CPU count, at most 8): encoding
    releases the GIL and an S3 PUT waits on the network, so the frames of a call take a fraction of the time
    one thread takes (`benchmarks/bench_io.py`).
    """
    # 1. Check inputs and plan every SKU's calls (geometry only, cheap) before any diffusion call
    if batch_size < 1:
        raise ValueError(f"`batch_size` has to be 1 or more but is {batch_size}.")
    videos = [_Video(store, request, on_frame) for request in requests]

    # 2. SKUs with the same window sizes side by side, then a batch of them at a time
    order = sorted(range(len(videos)), key=lambda i: videos[i].window_sizes)
    pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1), thread_name_prefix="frames")
    with pool:
        for batch in batches(order, batch_size):
            _make_batch(pipe, [videos[i] for i in batch], pool)
    return [video.result for video in videos]


def _make_batch(pipe, group: list[_Video], pool: ThreadPoolExecutor) -> None:
    """Steps 3-5 of `generate_batch` for one batch of SKUs."""
    # 3. Resume each SKU from what is stored: reused frames, the last checkpointed world
    for video in group:
        video.resume(pool)

    # 4. Paint in rounds: each SKU's next call; calls of one window size in one pipeline call
    while todo := [video for video in group if not video.done]:
        rounds: dict[tuple, list[_Video]] = {}
        for video in todo:
            rounds.setdefault(video.call_key, []).append(video)
        for same in rounds.values():
            outs = inpaint_batch(
                pipe, [v.paint_request() for v in same], max_retries=same[0].settings.max_retries
            )
            for video, (out, attempt) in zip(same, outs, strict=True):
                video.apply(out, attempt, batch=[v.sku for v in same])

    # 5. Drop frames a longer earlier video left behind; let the world go
    for video in group:
        video.finish()


class _Video:
    """One SKU's frames in the making: plan, fingerprints, manifest and world canvas."""

    def __init__(self, store: ObjectStore, request: FramesRequest, on_frame: OnFrame | None):
        size = request.hero.size
        if size[0] % 8 or size[1] % 8:
            raise InvalidInputError(
                f"SKU {request.sku}: the hero image has to be a multiple of 8 px but is {size[0]}x{size[1]}."
            )
        self.store, self.request, self.sku, self.settings = store, request, request.sku, request.settings
        self.on_frame = on_frame
        self.plan = plan_calls(
            request.path, size, lookahead=self.settings.lookahead, max_window=self.settings.max_window
        )
        self.result: FrameSet | None = None

    @property
    def window_sizes(self) -> tuple[tuple[int, int], ...]:
        return tuple((c.window[2] - c.window[0], c.window[3] - c.window[1]) for c in self.plan.calls)

    def resume(self, pool: ThreadPoolExecutor) -> None:
        """Fingerprint the plan, reuse the stored frames that match, load the world, write what it holds."""
        self.start = time.perf_counter()
        hero_rgb = np.asarray(self.request.hero.convert("RGB"))
        self.hero_png = png_bytes(hero_rgb)
        self.fps = _Fingerprints(self.settings, self.plan, sha256(self.hero_png))
        self.manifest = _new_manifest(self.sku, self.fps.video, self.request.path, self.plan, self.settings)

        stored = read_manifest(self.store, self.sku)
        self.reused = _valid_prefix(self.store, self.sku, stored, self.fps, pool)
        self.manifest["frames"] = list(self.reused)
        for record in self.reused:
            if self.on_frame:
                self.on_frame(self.sku, record, True)
        checkpoint = _load_checkpoint(self.store, self.sku, self.plan, self.fps)
        if checkpoint is None:
            self.world, self.last = _World(self.plan.bounds), -1
            self.world.paint(
                self.plan.frame_box(0), hero_rgb, np.ones(hero_rgb.shape[:2], dtype=bool), owner=0
            )
        else:
            self.world, self.last, calls = checkpoint
            self.manifest["calls"][: self.last + 1] = calls  # keeps the seeds that retries moved on to
        self.calls_made = 0
        self.writer = _FrameWriter(
            self.store, self.sku, self.plan, self.manifest, self.fps.frames, self.on_frame, pool
        )
        self.writer.write_ready(self.world, self.last, hero_png=self.hero_png)

    @property
    def done(self) -> bool:
        return self.last + 1 >= len(self.plan.calls)

    @property
    def call_key(self) -> tuple:
        """What calls must share to be painted together: window size, steps, guidance, retries."""
        s = self.settings
        return self.window_sizes[self.last + 1], s.steps, s.guidance, s.max_retries

    def paint_request(self) -> PaintRequest:
        call = self.plan.calls[self.last + 1]
        pixels, painted = self.world.window(call.window)
        s = self.settings
        return PaintRequest(
            pixels, ~painted, Prompt(s.prompt, s.negative_prompt, s.steps, s.guidance),
            seed=s.seed, step=call.first_frame, sku=self.sku, what=f"frame {call.first_frame}",
        )  # fmt: skip

    def apply(self, out: np.ndarray, attempt: int, *, batch: list[str]) -> None:
        """Keep the call's new pixels, checkpoint the world, then write the frames it completes."""
        call = self.plan.calls[self.last + 1]
        old, painted = self.world.window(call.window)
        out = seams.correct(out, old, painted) if self.settings.seams else out
        self.world.paint(call.window, out, ~painted, owner=call.index + 1)
        self.last, self.calls_made = call.index, self.calls_made + 1
        record = self.manifest["calls"][call.index]
        record.update(seed=step_seed(self.settings.seed, call.first_frame, attempt), batch=batch)
        worlds = [self.fps.world(c) for c in range(call.index + 1)]
        checkpoint_png = self.world.to_png(worlds, self.manifest["calls"][: call.index + 1])
        self.store.write_bytes(layout.world_checkpoint(self.sku), checkpoint_png)
        self.writer.write_ready(self.world, call.index, hero_png=self.hero_png)

    def finish(self) -> None:
        keep = {layout.frames_prefix(self.sku) + r["file"] for r in self.manifest["frames"]}
        for key in self.store.list(layout.frames_prefix(self.sku)):
            name = key.rsplit("/", 1)[-1]
            if name[:5].isdigit() and name.endswith(".png") and key not in keep:
                self.store.delete(key)
        self.result = FrameSet(
            sku=self.sku,
            manifest=self.manifest,
            calls_made=self.calls_made,
            frames_reused=len(self.reused),
            seconds=round(time.perf_counter() - self.start, 3),
        )
        self.world = self.writer = None  # a backfill of many SKUs holds one batch of worlds at a time


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


# Frames encoded and stored together before the manifest is written: bounds the frames held in memory.
_WRITE_CHUNK = 64


class _FrameWriter:
    """Writes frames in order, as soon as the world holds all their pixels, then the manifest.

    The frames one call completes are encoded and stored in parallel, and the manifest is written once after
    them: it lists only frames that are whole. A crash may leave frames the manifest does not list yet; a
    resume writes them again from the checkpointed world, byte for byte the same.
    """

    def __init__(
        self,
        store: ObjectStore,
        sku: str,
        plan: Plan,
        manifest: dict,
        fingerprints: list[str],
        on_frame: OnFrame | None,
        pool: ThreadPoolExecutor,
    ):
        self.store, self.sku, self.plan, self.manifest, self.on_frame = store, sku, plan, manifest, on_frame
        self.fingerprints, self.pool = fingerprints, pool
        self.fail_at = int(os.environ.get(FAIL_AT_FRAME_ENV, "-1"))

    def write_ready(self, world: _World, done: int, *, hero_png: bytes) -> None:
        frames = self.manifest["frames"]
        ready = range(len(frames), len(self.plan.offsets))
        ready = [k for k in ready if self.plan.call_of_frame[k] <= done]  # a prefix: calls come in order
        for chunk in batches([k for k in ready if k < self.fail_at or self.fail_at < 0], _WRITE_CHUNK):
            # copy the windows now: the world changes with the next call
            images = [hero_png if k == 0 else world.window(self.plan.frame_box(k))[0].copy() for k in chunk]
            records = list(self.pool.map(self._store, chunk, images))
            frames.extend(records)
            self.store.write_bytes(
                layout.frames_manifest(self.sku), json.dumps(self.manifest, indent=1).encode()
            )
            for record in records:
                if self.on_frame:
                    self.on_frame(self.sku, record, False)
        if self.fail_at in ready:
            raise RuntimeError(
                f"SKU {self.sku}: test fault injected at frame {self.fail_at} ({FAIL_AT_FRAME_ENV})."
            )

    def _store(self, k: int, image: bytes | np.ndarray) -> dict:
        """Encode and store frame `k`; its manifest record."""
        data = image if isinstance(image, bytes) else png_bytes(image)
        self.store.write_bytes(layout.frame_png(self.sku, k), data)
        return {
            "index": k,
            "file": f"{k:05d}.png",
            "shift": list(self.plan.offsets[k] if k == 0 else _diff(self.plan.offsets, k)),
            "offset": list(self.plan.offsets[k]),
            "call": self.plan.call_of_frame[k],
            "sha256": sha256(data),
            "fingerprint": self.fingerprints[k],
        }


def _diff(offsets: tuple[tuple[int, int], ...], k: int) -> tuple[int, int]:
    return offsets[k][0] - offsets[k - 1][0], offsets[k][1] - offsets[k - 1][1]
