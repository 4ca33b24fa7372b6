"""The frames step: paint a world canvas once, never twice, and store it with the manifest of its frames.

Frame 0 is the hero image. Each later frame is the world canvas seen at the camera's position (`world.py`);
the diffusion calls of `plan.plan_calls` paint the world ahead of the camera, and every pixel, once painted,
is carried over unchanged to every frame that shows it. So product pixels stay exact and error never
accumulates the way it does when each frame is re-generated from the last.

Frames are rendered, not stored one by one (`render.py`): after each call the world is checkpointed, then
the manifest lists the frames that call completed, so the manifest never lists a frame the stored world
cannot render. A re-run resumes after the last call the checkpoint shares with its own plan
(`fingerprints.py`) and paints only the calls after it, byte for byte what an uninterrupted run would have
stored. Per-frame PNGs are written only on request (`keep_frames`).
"""

from __future__ import annotations

import functools
import os
import time
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from prodvid_core import layout, models, resample, seams
from prodvid_core.background import CallClock, Writer
from prodvid_core.camera import CameraPath
from prodvid_core.errors import InvalidInputError
from prodvid_core.fingerprints import VERSION, Fingerprints
from prodvid_core.inpaint import PaintRequest, Prompt, batches, bucket_grid, inpaint_batch, step_seed
from prodvid_core.manifest import frame_sha256, read_manifest, write_manifest
from prodvid_core.plan import Plan, plan_calls
from prodvid_core.render import load_frames, render_frame, store_frame_png
from prodvid_core.storage import ObjectStore
from prodvid_core.world import Checkpoint, World

__all__ = [
    "FrameSettings",
    "FramesRequest",
    "FrameSet",
    "OnFrame",
    "generate",
    "generate_batch",
    "read_manifest",
    "load_frame_set",
    "load_frames",
]


@dataclass(frozen=True)
class FrameSettings:
    """Everything besides the camera path that decides the frames' pixels (and so their fingerprint)."""

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    lookahead: int = 128
    max_window: int | None = None  # None: 1.5 × the model's native side (plan.default_window)
    model_size: int | None = None  # the model's working side; None: the checkpoint's native side
    model: str = ""
    max_retries: int = 2  # not in the fingerprint: a retry's seed is recorded with its call
    seams: bool = True  # correct each call's new pixels to meet the painted ones without a step (seams.py)


@dataclass
class FrameSet:
    """The stored frames of one SKU and what making them took."""

    sku: str
    manifest: dict
    calls_made: int
    frames_reused: int
    seconds: float
    gpu_idle_seconds: float = 0.0  # the caller's time outside diffusion calls, this SKU's share of its batch

    @property
    def count(self) -> int:
        return len(self.manifest["frames"])

    @property
    def keys(self) -> list[str]:
        """What is stored for these frames: the world and the manifest, and the frame PNGs when kept."""
        keys = [layout.world_checkpoint(self.sku), layout.frames_manifest(self.sku)]
        if self.manifest.get("keep_frames"):
            keys += [layout.frame_png(self.sku, f["index"]) for f in self.manifest["frames"]]
        return keys


def load_frame_set(store: ObjectStore, sku: str) -> FrameSet:
    """The stored frames of `sku` (its manifest) as a `FrameSet` that made no calls, for the next step."""
    manifest = read_manifest(store, sku)
    if manifest is None:
        raise FileNotFoundError(f"SKU {sku}: no {layout.frames_manifest(sku)}; make the frames first.")
    return FrameSet(
        sku=sku, manifest=manifest, calls_made=0, frames_reused=len(manifest["frames"]), seconds=0.0
    )


@dataclass(frozen=True, eq=False)
class FramesRequest:
    """One SKU's video to make: its hero image (frame 0), camera path and settings."""

    sku: str
    hero: Image.Image
    path: CameraPath
    settings: FrameSettings


OnFrame = Callable[[str, dict, bool], None]
OnDone = Callable[[FrameSet], None]


def generate(
    pipe,
    store: ObjectStore,
    hero: Image.Image,
    path: CameraPath,
    settings: FrameSettings,
    *,
    sku: str,
    on_frame: OnFrame | None = None,
    keep_frames: bool = False,
) -> FrameSet:
    """Make (or resume) the frames of `sku`'s video: store the world canvas and the manifest.

    Args:
        pipe: a diffusers inpainting pipeline (`models.load_inpaint_pipeline`).
        store: where `frames/<SKU>/` lives.
        hero: the hero image, frame 0.
        path: the camera path; `path.num_frames` frames are made.
        settings: prompt, seed and painting settings.
        on_frame: called with the SKU, each frame's manifest record and whether it was reused, for progress.
        keep_frames: also write each frame as `frames/<SKU>/00000.png …` (renderings; off by default).

    Example:
        >>> settings = FrameSettings(prompt="on a beach")
        >>> frame_set = frames.generate(pipe, store, hero.image, camera.drift(), settings, sku="MUG-1")
        >>> frame_set.calls_made, frame_set.count
    """
    request = FramesRequest(sku, hero, path, settings)
    return generate_batch(pipe, store, [request], on_frame=on_frame, keep_frames=keep_frames)[0]


def generate_batch(
    pipe,
    store: ObjectStore,
    requests: list[FramesRequest],
    *,
    batch_size: int = 1,
    on_frame: OnFrame | None = None,
    workers: int | None = None,
    keep_frames: bool = False,
    overlap: bool = True,
    on_done: OnDone | None = None,
) -> list[FrameSet]:
    """Make (or resume) the frames of many SKUs' videos, sharing diffusion calls `batch_size` SKUs at a time.

    SKUs whose calls fall in the same working sizes (buckets, `resample`: the same camera path on canvases
    of one aspect, but also other paths and formats whose windows fit one bucket) are put side by side and
    taken `batch_size` at a time. The SKUs of a batch paint in rounds, each its next call, and the calls of
    a round that share a bucket share one pipeline call. Each SKU stores its world
    checkpoint and manifest exactly as it does alone, so resuming works the same; the painted pixels may
    differ in their last bits from an unbatched run, and each call's record in the manifest names the SKUs
    it was painted with.

    The GPU does not wait for the store (`overlap`, default on): after a call the caller keeps only what the
    next call needs (the new pixels in the world) and hands a snapshot of the world to the SKU's background
    writer (`background.Writer`), which encodes and stores the checkpoint, renders, hashes and lists the
    frames it completes, in the same order as without overlap, while the caller paints on. `on_done` is
    called on that writer's thread with each SKU's `FrameSet` once everything of it is stored (the run
    encodes the video there), and `on_frame` on the caller's thread. `FrameSet.gpu_idle_seconds` is the
    caller's time outside pipeline calls, per SKU; `overlap=False` makes every write on the caller's thread.

    The frames a call completes are rendered and hashed (and PNG-encoded and stored with `keep_frames`) by
    `workers` threads (default: the CPU count, at most 8): hashing and encoding release the GIL.
    """
    # 1. Check inputs and plan every SKU's calls (geometry only, cheap) before any diffusion call
    if batch_size < 1:
        raise ValueError(f"`batch_size` has to be 1 or more but is {batch_size}.")
    native_side, grid = models.native_size(pipe), bucket_grid(pipe)
    videos = [
        _Video(store, r, on_frame, keep_frames, native=r.settings.model_size or native_side, grid=grid)
        for r in requests
    ]

    # 2. SKUs whose calls fall in the same buckets side by side, then a batch of them at a time
    order = sorted(range(len(videos)), key=lambda i: videos[i].buckets)
    pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1), thread_name_prefix="frames")
    clock, in_flight = CallClock(), deque()
    with pool:
        try:
            for batch in batches(order, batch_size):
                group = [videos[i] for i in batch]
                _make_batch(pipe, group, pool, clock, in_flight, overlap=overlap, on_done=on_done,
                            limit=batch_size)  # fmt: skip
        finally:
            for video in videos:
                video.close()  # what was handed to the writers is stored, also when a call failed
                video.notify()  # and reported: the frames stored before a failed call were made
        for video in videos:
            video.drain()  # a write that failed raises here
            video.notify()
    return [video.result for video in videos]


def _make_batch(
    pipe, group: list[_Video], pool: ThreadPoolExecutor, clock: CallClock, in_flight: deque, *,
    overlap: bool, on_done: OnDone | None, limit: int,
) -> None:  # fmt: skip
    """Steps 3-5 of `generate_batch` for one batch of SKUs."""
    start, busy = time.perf_counter(), clock.busy
    # 3. At most `limit` earlier SKUs still being written (video encoding) while this batch paints
    while in_flight and (len(in_flight) > limit or not in_flight[0].writing):
        in_flight.popleft().drain()

    # 4. Resume each SKU from its stored world checkpoint: the calls it shares with the plan are kept
    for video in group:
        video.resume(pool, Writer(f"frames-{video.sku}", overlap=overlap))

    # 5. Paint in rounds: each SKU's next call; calls of one bucket in one pipeline call
    while todo := [video for video in group if not video.finished]:
        rounds: dict[tuple, list[_Video]] = {}
        for video in todo:
            rounds.setdefault(video.call_key, []).append(video)
        for same in rounds.values():
            outs = inpaint_batch(
                pipe, [v.paint_request() for v in same], max_retries=same[0].settings.max_retries,
                native=same[0].native, clock=clock,
            )  # fmt: skip
            for video, (out, attempt) in zip(same, outs, strict=True):
                video.apply(out, attempt, batch=[v.sku for v in same])
        for video in group:
            video.notify()

    # 6. The results, made by each SKU's writer once its writes are done; the caller lets the worlds go
    for video in group:
        video.finish(on_done)
        in_flight.append(video)
    idle = time.perf_counter() - start - (clock.busy - busy)
    for video in group:
        video.gpu_idle = idle / len(group)


class _Video:
    """One SKU's frames in the making: plan, fingerprints, manifest and world canvas."""

    def __init__(
        self,
        store: ObjectStore,
        request: FramesRequest,
        on_frame: OnFrame | None,
        keep_frames: bool,
        *,
        native: int,
        grid: int = resample.BUCKET_GRID,
    ):
        size = request.hero.size
        if size[0] % 2 or size[1] % 2:
            raise InvalidInputError(
                f"SKU {request.sku}: the hero image has to have even sides (H.264 yuv420p) but is "
                f"{size[0]}x{size[1]}."
            )
        self.store, self.request, self.sku, self.settings = store, request, request.sku, request.settings
        self.on_frame, self.keep_frames, self.native = on_frame, keep_frames, native
        self.plan = plan_calls(
            request.path, size, native=native, lookahead=self.settings.lookahead,
            max_window=self.settings.max_window,
        )  # fmt: skip
        self.result: FrameSet | None = None
        self.writer: Writer | None = None
        self.notices: deque[tuple[dict, bool]] = deque()  # frames listed by the writer, for `on_frame`
        self.gpu_idle = 0.0
        sizes = [(c.window[2] - c.window[0], c.window[3] - c.window[1]) for c in self.plan.calls]
        self.buckets = tuple(resample.working_size(s, native=native, grid=grid) for s in sizes)

    def resume(self, pool: ThreadPoolExecutor, writer: Writer) -> None:
        """Load the world after the last call the stored checkpoint shares with the plan (or start from the
        hero image), list the frames it completes, and store what this run keeps before painting on."""
        self.start, self.pool, self.writer, self.calls_made = time.perf_counter(), pool, writer, 0
        hero_rgb = np.asarray(self.request.hero.convert("RGB"))
        self.fingerprints = Fingerprints(self.settings, self.plan, frame_sha256(hero_rgb))
        self.manifest = _new_manifest(
            self.sku, self.fingerprints.video, self.request.path, self.plan, self.settings
        )
        self.manifest["keep_frames"] = self.keep_frames
        stored = read_manifest(self.store, self.sku) or {}

        # 1. The world after the last shared call, if the stored frames it completes are the ones listed
        resumed = _shared_checkpoint(self.store, self.sku, self.plan, self.fingerprints)
        reused: list[dict] = []
        if resumed is not None:
            self.world, self.last_call, calls = resumed
            reused = self._records(self.world, self._complete_after(0, self.last_call))
            listed = {r.get("index"): r for r in stored.get("frames", []) if isinstance(r, dict)}
            if any(_same_frame(listed.get(r["index"]), r) is False for r in reused):
                resumed, reused = None, []  # the checkpoint does not render what it rendered before
        if resumed is None:
            self.world, self.last_call = World(self.plan.bounds), -1
            self.world.paint(self.plan.frame_box(0), hero_rgb, np.ones(hero_rgb.shape[:2], bool), owner=0)
        else:
            self.manifest["calls"][: self.last_call + 1] = calls  # keeps the seeds that retries moved on to
        self.reused = len(reused)
        self.manifest["frames"] = reused

        # 2. Frame PNGs: keep those still valid (and asked for), delete the rest, write the missing ones.
        #    While they change, the stored manifest claims none (`keep_frames` false): a crash meanwhile
        #    never leaves a manifest that lists a frame PNG deleted or not yet written
        pngs = [k for k in self.store.list(layout.frames_prefix(self.sku)) if _is_frame_png(k)]
        trusted = self._trusted_pngs(stored, reused) & set(pngs)
        stale = [key for key in pngs if key not in trusted]
        missing = [r["index"] for r in reused if layout.frame_png(self.sku, r["index"]) not in trusted]
        missing = missing if self.keep_frames else []
        if stored.get("keep_frames") and (stale or missing):
            write_manifest(self.store, self.sku, {**self.manifest, "keep_frames": False})
        for key in stale:
            self.store.delete(key)
        list(pool.map(functools.partial(self._store_png, self.world), missing))

        # 3. The manifest before the world: the frames listed are the ones both worlds render
        if stored or reused:
            write_manifest(self.store, self.sku, self.manifest)
        for record in reused:
            if self.on_frame:
                self.on_frame(self.sku, record, True)
        if resumed is None:
            self._submit()

    @property
    def finished(self) -> bool:
        return self.last_call + 1 >= len(self.plan.calls)

    @property
    def call_key(self) -> tuple:
        """What calls must share to be painted together: bucket, steps, guidance, retries."""
        s = self.settings
        return self.buckets[self.last_call + 1], self.native, s.steps, s.guidance, s.max_retries

    def paint_request(self) -> PaintRequest:
        call = self.plan.calls[self.last_call + 1]
        pixels, painted = self.world.window(call.window)
        s = self.settings
        return PaintRequest(
            pixels, ~painted, Prompt(s.prompt, s.negative_prompt, s.steps, s.guidance),
            seed=s.seed, step=call.first_frame, sku=self.sku, what=f"frame {call.first_frame}",
        )  # fmt: skip

    def apply(self, out: np.ndarray, attempt: int, *, batch: list[str]) -> None:
        """Keep the call's new pixels, checkpoint the world, then list the frames it completes."""
        call = self.plan.calls[self.last_call + 1]
        old, painted = self.world.window(call.window)
        out = seams.correct(out, old, painted) if self.settings.seams else out
        self.world.paint(call.window, out, ~painted, owner=call.index + 1)
        self.last_call, self.calls_made = call.index, self.calls_made + 1
        self._submit({"seed": step_seed(self.settings.seed, call.first_frame, attempt), "batch": batch})

    def finish(self, on_done: OnDone | None) -> None:
        """Hand the result to the writer, after the writes; the caller lets the world go (the writer's jobs
        hold the snapshots they still store)."""
        self.writer.submit(self._done, on_done)
        self.world = None  # a backfill of many SKUs holds one batch of worlds at a time

    @property
    def writing(self) -> bool:
        return self.writer is not None and self.writer.busy

    def drain(self) -> None:
        if self.writer is not None:
            self.writer.drain()
            self.writer.close()
            self.writer = None
        if self.result is not None:
            self.result.gpu_idle_seconds = round(self.gpu_idle, 4)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def notify(self) -> None:
        """`on_frame` for the frames the writer has listed since, on the caller's thread."""
        while self.notices:
            record, reused = self.notices.popleft()
            if self.on_frame:
                self.on_frame(self.sku, record, reused)

    def _submit(self, update: dict | None = None) -> None:
        """Store the world after `last_call` and list the frames it completes: on the writer's thread, from
        a snapshot when it overlaps the next calls. `update` goes into the call's manifest record."""
        world = self.world.copy() if self.writer.overlaps else self.world
        self.writer.submit(self._store, world, self.last_call, update)

    def _store(self, world: World, last_call: int, update: dict | None) -> None:
        """The writer's job after a call: the checkpoint first, then the manifest listing its frames."""
        if update is not None:
            self.manifest["calls"][last_call].update(update)
        self._checkpoint(world, last_call)
        self._add_complete_frames(world, last_call)

    def _done(self, on_done: OnDone | None) -> None:
        self.result = FrameSet(
            sku=self.sku,
            manifest=self.manifest,
            calls_made=self.calls_made,
            frames_reused=self.reused,
            seconds=round(time.perf_counter() - self.start, 3),
        )
        self.pool = None
        if on_done is not None:
            on_done(self.result)

    def _checkpoint(self, world: World, last_call: int) -> None:
        """Store the world after `last_call` (after the hero image alone, for -1) as one atomic object."""
        worlds = self.fingerprints.worlds_through(last_call)
        calls = self.manifest["calls"][: last_call + 1]
        self.store.write_bytes(layout.world_checkpoint(self.sku), Checkpoint(world, worlds, calls).to_png())

    def _complete_after(self, listed: int, last_call: int) -> list[int]:
        """The frames from `listed` on that the world holds whole (a prefix: calls come in frame order)."""
        ready = range(listed, len(self.plan.offsets))
        return [k for k in ready if self.plan.call_of_frame[k] <= last_call]

    def _add_complete_frames(self, world: World, last_call: int) -> None:
        """List the frames the checkpointed world now completes (their PNGs first, when kept)."""
        frames = self.manifest["frames"]
        ready = self._complete_after(len(frames), last_call)
        if not ready:
            return
        records = self._records(world, ready)
        if self.keep_frames:
            list(self.pool.map(functools.partial(self._store_png, world), ready))
        frames.extend(records)
        write_manifest(self.store, self.sku, self.manifest)
        self.notices.extend((record, False) for record in records)

    def _records(self, world: World, indices: list[int]) -> list[dict]:
        """The manifest records of frames the world holds, rendered and hashed by the pool's threads."""
        return list(self.pool.map(functools.partial(self._record, world), indices))

    def _record(self, world: World, k: int) -> dict:
        offsets = self.plan.offsets
        shift = (
            offsets[0] if k == 0 else (offsets[k][0] - offsets[k - 1][0], offsets[k][1] - offsets[k - 1][1])
        )
        return {
            "index": k,
            "shift": list(shift),
            "offset": list(offsets[k]),
            "call": self.plan.call_of_frame[k],
            "sha256": frame_sha256(world.window(self.plan.frame_box(k))[0]),
            "fingerprint": self.fingerprints.frames[k],
        }

    def _store_png(self, world: World, k: int) -> str:
        return store_frame_png(
            self.store, self.sku, k, render_frame(world, self.plan.offsets[k], self.plan.frame_size)
        )

    def _trusted_pngs(self, stored: dict, reused: list[dict]) -> set[str]:
        """The frame PNGs this run keeps as they are, if stored: asked for, listed by a manifest that kept
        PNGs, and showing a frame this run reuses unchanged."""
        if not (self.keep_frames and stored.get("keep_frames")):
            return set()
        listed = {r.get("index"): r for r in stored.get("frames", []) if isinstance(r, dict)}
        return {
            layout.frame_png(self.sku, r["index"]) for r in reused if _same_frame(listed.get(r["index"]), r)
        }


def _is_frame_png(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name[:5].isdigit() and name.endswith(".png")


def _same_frame(stored: dict | None, record: dict) -> bool | None:
    """Whether a stored manifest record shows the same frame as `record`; None if it is not comparable
    (no record, or one made with other settings)."""
    if stored is None or stored.get("fingerprint") != record["fingerprint"]:
        return None
    return stored.get("sha256") == record["sha256"]


def _shared_checkpoint(
    store: ObjectStore, sku: str, plan: Plan, fingerprints: Fingerprints
) -> tuple[World, int, list[dict]] | None:
    """The world after the last call this plan shares with the stored checkpoint's, that call's index (-1:
    the hero image alone) and the calls' records (seeds). A crash resumes after the last finished call; a
    changed path after the last call it did not change."""
    try:
        checkpoint = Checkpoint.from_png(store.read_bytes(layout.world_checkpoint(sku)))
        # world fingerprints are chained: the plans share every call up to the last one that matches
        calls = min(checkpoint.last_call + 1, len(plan.calls))
        shared = [c for c in range(-1, calls) if checkpoint.worlds[c + 1] == fingerprints.world(c)]
        if not shared:
            return None
        checkpoint.world.rewind(shared[-1])
        return checkpoint.world.moved_to(plan.bounds), shared[-1], checkpoint.calls[: shared[-1] + 1]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, zlib.error):
        return None  # unreadable checkpoint: rebuild the world from the hero image


def _new_manifest(sku: str, fingerprint: str, path: CameraPath, plan: Plan, settings: FrameSettings) -> dict:
    calls = [{**c.to_json(), "seed": step_seed(settings.seed, c.first_frame)} for c in plan.calls]
    return {
        "version": VERSION,
        "sku": sku,
        "fingerprint": fingerprint,
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
        "model_size": settings.model_size,
        "max_window": settings.max_window,
        "keep_frames": False,
        "calls": calls,
        "frames": [],
    }
