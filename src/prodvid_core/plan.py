"""The plan of diffusion calls for a video: which calls paint which part of the world canvas.

The scene is a world canvas that grows as the camera moves; frame k is the window of it at the camera's
position. A pixel is painted once, by the first call that needs it, and never repainted. The plan is a pure
function of the camera path and the settings, so a resumed run makes exactly the calls an uninterrupted run
would make, with the same windows and seeds.

World coordinates are output pixels: frame 0 covers `[0, W) × [0, H)`. A content offset `(ox, oy)` means
the camera window of that frame starts at `(-ox, -oy)`. Every diffusion call paints its window at the
model's working size (`resample`), so the plan's own lengths are model pixels converted at the frame's
scale: `scale` output pixels per model pixel, where a frame resampled to the model's native area would
be. With lookahead, windows sit on a grid of about one latent cell at that scale (a step that tiles the
frame), bands are at least 64 model pixels wide at the scale of their own call, and a window is at most
`max_window` model pixels on a side (or one frame, if that is larger): the same plan, in the same number
of calls, at every output size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from prodvid_core.camera import CameraPath
from prodvid_core.errors import SettingsError

__all__ = [
    "Box",
    "Call",
    "Plan",
    "frame_box",
    "plan_calls",
    "check_extent",
    "default_window",
    "GRID",
    "MIN_BAND",
    "MAX_MASK_PIXELS",
]

GRID = 8  # model pixels of one latent cell
MIN_BAND = 64  # model pixels: a narrower band gives the model too little room for a coherent scene

MAX_MASK_PIXELS = 1024**3  # the painted mask is a byte a pixel: 1 GiB at most

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), world pixels


@dataclass(frozen=True)
class Call:
    """One diffusion call: paint the unpainted part of `window`; after it, `frames` are fully painted."""

    index: int
    window: Box
    frames: tuple[int, ...]

    @property
    def first_frame(self) -> int:
        return self.frames[0]

    def to_json(self) -> dict:
        return {"index": self.index, "window": list(self.window), "frames": list(self.frames)}


@dataclass(frozen=True)
class Plan:
    """Every call of a video in order, the frame windows and the world's extent."""

    frame_size: tuple[int, int]
    offsets: tuple[tuple[int, int], ...]
    calls: tuple[Call, ...]
    bounds: Box
    call_of_frame: tuple[int, ...] = field(repr=False)  # -1 for frames fully inside frame 0
    cell: int = 1  # output pixels of the grid windows are aligned to

    def frame_box(self, k: int) -> Box:
        return frame_box(self.offsets[k], self.frame_size)


def frame_box(offset: Iterable[int], size: Iterable[int]) -> Box:
    """The world window of a frame with content `offset` (x, y) and `size` (w, h)."""
    (ox, oy), (w, h) = offset, size
    return (-ox, -oy, -ox + w, -oy + h)


def _floor(v: int, cell: int) -> int:
    return v // cell * cell


def _ceil(v: int, cell: int) -> int:
    return -(-v // cell) * cell


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _align(box: Box, cell: int) -> Box:
    return (_floor(box[0], cell), _floor(box[1], cell), _ceil(box[2], cell), _ceil(box[3], cell))


def _size(box: Box) -> tuple[int, int]:
    return box[2] - box[0], box[3] - box[1]


class _Painted:
    """The painted mask, pixel for pixel, over a generous fixed extent around all frames.

    Pixels, not grid cells: a frame whose side is not a multiple of the grid leaves part of a cell
    painted, and a frame is ready only when every one of its pixels is.
    """

    def __init__(self, extent: Box):
        self.extent = extent
        w, h = _size(extent)
        self.mask = np.zeros((h, w), dtype=bool)

    def view(self, box: Box) -> np.ndarray:
        x0, y0 = self.extent[0], self.extent[1]
        return self.mask[box[1] - y0 : box[3] - y0, box[0] - x0 : box[2] - x0]

    def paint(self, box: Box) -> None:
        self.view(box)[:] = True

    def covered(self, box: Box) -> bool:
        return bool(self.view(box).all())


def _gaps(view: np.ndarray) -> tuple[int, int, int, int]:
    """Width, in pixels, of the unpainted strip along each side (left, top, right, bottom) of a window.

    Measured as the distance from that side to the nearest painted pixel, over the rows or columns that hold
    any painted pixel; 0 means the painted area touches that side.
    """
    rows = np.flatnonzero(view.any(axis=1))
    cols = np.flatnonzero(view.any(axis=0))
    if not len(rows):
        return (0, 0, 0, 0)
    left = int(view[rows].argmax(axis=1).min())
    right = int(view[rows][:, ::-1].argmax(axis=1).min())
    top = int(view[:, cols].argmax(axis=0).min())
    bottom = int(view[:, cols][::-1].argmax(axis=0).min())
    return (left, top, right, bottom)


@dataclass(frozen=True)
class _Geometry:
    """The plan's lengths in output pixels: model pixels converted at the frame's scale."""

    native: int  # the model's native side (model pixels)
    cell: int  # grid of windows (1: the original method, which tracks pixels)
    reach: int  # lookahead: camera travel one call serves
    limit: int  # the largest side of a window

    def band(self, window: Box) -> int:
        """MIN_BAND model pixels at the scale this window will be painted at, in whole cells."""
        scale = math.sqrt(window[2] - window[0]) * math.sqrt(window[3] - window[1]) / self.native
        return _ceil(math.ceil(MIN_BAND * scale), self.cell)


def _widen_bands(window: Box, painted: _Painted, geo: _Geometry) -> Box:
    """Push each side whose new strip is thinner than a band outward until the strip is a band wide, as
    far as the window's size limit allows. Widening a window lowers its scale, so it is repeated until the
    bands hold at the final window's scale."""
    for _ in range(4):
        band, (x0, y0, x1, y1) = geo.band(window), window
        gaps = _gaps(painted.view(window))
        room_x, room_y = max(0, geo.limit - (x1 - x0)), max(0, geo.limit - (y1 - y0))
        if 0 < gaps[0] < band:
            x0 -= min(_ceil(band - gaps[0], geo.cell), room_x)
        room_x = max(0, geo.limit - (x1 - x0))
        if 0 < gaps[2] < band:
            x1 += min(_ceil(band - gaps[2], geo.cell), _floor(room_x, geo.cell))
        if 0 < gaps[1] < band:
            y0 -= min(_ceil(band - gaps[1], geo.cell), room_y)
        room_y = max(0, geo.limit - (y1 - y0))
        if 0 < gaps[3] < band:
            y1 += min(_ceil(band - gaps[3], geo.cell), _floor(room_y, geo.cell))
        if (x0, y0, x1, y1) == window:
            break
        window = (x0, y0, x1, y1)
    return window


def plan_calls(
    path: CameraPath,
    frame_size: tuple[int, int],
    *,
    native: int = 512,
    lookahead: int = 128,
    max_window: int | None = None,
) -> Plan:
    """Plan the diffusion calls that paint every frame of `path`.

    Args:
        path: the camera path.
        frame_size: `(width, height)` of a frame, output pixels.
        native: the side of the model's native square (512 for SD 1.5/2 inpainting, 1024 for SDXL).
        lookahead: how far (model pixels of camera travel) one call paints ahead of the first frame it
            serves. 0 is the original method: one call per frame that shows anything new, its window that
            frame, painting just the exposed strip. Above 0, calls serve every frame within `lookahead` of
            travel, windows sit on the latent grid and bands are at least 64 model pixels wide.
        max_window: the largest side of a call's window in model pixels; a window always holds at least one
            frame. None: `default_window(native)`, 1.5 × the native side (768 for SD 1.5/2, 1536 for SDXL).
    """
    w, h = frame_size
    if w < 1 or h < 1 or native < GRID:
        raise ValueError(f"`frame_size` and `native` have to be positive but are {w}x{h} and {native}.")
    if lookahead < 0:
        raise ValueError(f"`lookahead` has to be 0 or more but is {lookahead}.")
    max_window = max_window or default_window(native)
    if max_window < GRID:
        raise ValueError(f"`max_window` has to be at least {GRID} but is {max_window}.")
    scale, cell, limit, extent = _extent(path, frame_size, native, lookahead, max_window)
    check_extent(path, frame_size, native=native, lookahead=lookahead, max_window=max_window)
    geo = _Geometry(native=native, cell=cell, reach=round(lookahead * scale), limit=limit)
    offsets = path.offsets()
    boxes = [(-ox, -oy, -ox + w, -oy + h) for ox, oy in offsets]
    painted = _Painted(extent)
    painted.paint(boxes[0])
    bounds = boxes[0]
    calls: list[Call] = []
    call_of_frame = [-1]
    for k in range(1, len(boxes)):
        if painted.covered(boxes[k]):
            call_of_frame.append(call_of_frame[-1] if calls else -1)
            continue
        window = _call_window(k, boxes, offsets, painted, geo, lookahead > 0)
        painted.paint(window)
        bounds = _union(bounds, window)
        calls.append(Call(index=len(calls), window=window, frames=(k,)))
        call_of_frame.append(len(calls) - 1)
    calls = _attach_frames(calls, call_of_frame)
    return Plan(
        frame_size=(w, h),
        offsets=tuple(offsets),
        calls=tuple(calls),
        bounds=bounds,
        call_of_frame=tuple(call_of_frame),
        cell=cell,
    )


def default_window(native: int) -> int:
    """The largest window side a call paints when none is set: 1.5 × the model's native side, so a call
    holds a frame (one native area) and a lookahead band beside it at every model size; a fixed 768 was
    smaller than one frame of an SDXL model (1024), which left it no lookahead: one call per frame."""
    return round(1.5 * native)


def _extent(
    path: CameraPath, frame_size: tuple[int, int], native: int, lookahead: int, max_window: int
) -> tuple[float, int, int, Box]:
    """The plan's scale, grid cell, window limit and the painted mask's extent (every frame, aligned to the
    grid, plus a window's reach on every side)."""
    w, h = frame_size
    scale = math.sqrt(w * h) / native  # output pixels per model pixel, a frame at the native area
    cell = _grid(w, h, round(GRID * scale)) if lookahead else 1
    limit = max(_floor(round(max_window * scale), cell), _ceil(max(w, h), cell))
    frame_extent = _align((0, 0, w, h), cell)
    for ox, oy in path.offsets():
        frame_extent = _union(frame_extent, _align((-ox, -oy, -ox + w, -oy + h), cell))
    pad = _ceil(limit, cell)
    extent = (frame_extent[0] - pad, frame_extent[1] - pad, frame_extent[2] + pad, frame_extent[3] + pad)
    return scale, cell, limit, extent


def check_extent(
    path: CameraPath,
    frame_size: tuple[int, int],
    *,
    native: int = 512,
    lookahead: int = 128,
    max_window: int | None = None,
    sku: str | None = None,
) -> None:
    """Refuse a plan whose painted mask would hold more than `MAX_MASK_PIXELS`: a camera path at the edge of
    its bounds together with a large `max_window` at a small model size (`model_size`) on a large format.
    Cheap (no mask is made), so a request is checked with it before anything is written."""
    max_window = max_window or default_window(native)
    extent = _extent(path, frame_size, native, lookahead, max_window)[3]
    width, height = _size(extent)
    if width * height > MAX_MASK_PIXELS:
        raise SettingsError(
            f"{f'SKU {sku}: ' if sku else ''}the plan of calls for {frame_size[0]}x{frame_size[1]} frames "
            f"would cover {width}x{height} px ({width * height // 10**6} MP, at most "
            f"{MAX_MASK_PIXELS // 10**6} MP): lower `max_window` ({max_window}), raise `model_size` "
            f"({native}) or shorten the camera path."
        )


def _grid(w: int, h: int, target: int) -> int:
    """The largest grid step up to `target` that tiles the frame exactly: then frame 0 is whole cells and no
    window has to paint a sliver left over between frame 0's edge and the next grid line."""
    common = math.gcd(w, h)
    return max(d for d in range(1, max(1, target) + 1) if common % d == 0)


def _call_window(
    k: int,
    boxes: list[Box],
    offsets: list[tuple[int, int]],
    painted: _Painted,
    geo: _Geometry,
    ahead: bool,
) -> Box:
    """The window of a call that starts at frame k: the bounding box of the frames it serves."""
    if not ahead:
        return boxes[k]
    window = _align(boxes[k], geo.cell)
    start = offsets[k - 1]
    for j in range(k + 1, len(boxes)):
        travel = max(abs(offsets[j][0] - start[0]), abs(offsets[j][1] - start[1]))
        grown = _align(_union(window, boxes[j]), geo.cell)
        if travel > geo.reach or max(_size(grown)) > geo.limit:
            break
        window = grown
    return _widen_bands(window, painted, geo)


def _attach_frames(calls: list[Call], call_of_frame: list[int]) -> list[Call]:
    """Record on each call every frame that becomes fully painted with it (not just the first)."""
    served: dict[int, list[int]] = {c.index: [] for c in calls}
    for frame, call in enumerate(call_of_frame):
        if call >= 0:
            served[call].append(frame)
    return [Call(index=c.index, window=c.window, frames=tuple(served[c.index])) for c in calls]
