"""The plan of diffusion calls for a video: which calls paint which part of the world canvas.

The scene is a world canvas that grows as the camera moves; frame k is the window of it at the camera's
position. A pixel is painted once, by the first call that needs it, and never repainted. The plan is a pure
function of the camera path and the settings, so a resumed run makes exactly the calls an uninterrupted run
would make, with the same windows and seeds.

World coordinates: frame 0 covers `[0, W) × [0, H)`. A content offset `(ox, oy)` means the camera window of
that frame starts at `(-ox, -oy)`. With lookahead, everything is aligned to the VAE's 8-px latent grid, so
the painted area is always a union of whole latent cells and the model never paints a sliver narrower than
one cell (the original method's 5-px strips leave a seam every frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prodvid_core.camera import CameraPath

__all__ = ["Box", "Call", "Plan", "plan_calls", "GRID", "MIN_BAND"]

GRID = 8
MIN_BAND = 64

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

    def frame_box(self, k: int) -> Box:
        ox, oy = self.offsets[k]
        w, h = self.frame_size
        return (-ox, -oy, -ox + w, -oy + h)


def _floor(v: int, cell: int = GRID) -> int:
    return v // cell * cell


def _ceil(v: int, cell: int = GRID) -> int:
    return -(-v // cell) * cell


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _align(box: Box, cell: int = GRID) -> Box:
    return (_floor(box[0], cell), _floor(box[1], cell), _ceil(box[2], cell), _ceil(box[3], cell))


def _size(box: Box) -> tuple[int, int]:
    return box[2] - box[0], box[3] - box[1]


class _Cells:
    """The painted mask at cell resolution (a latent cell, or a pixel for the original method), over a
    generous fixed extent around all frames."""

    def __init__(self, extent: Box, cell: int):
        self.extent, self.cell = extent, cell
        w, h = _size(extent)
        self.painted = np.zeros((h // cell, w // cell), dtype=bool)

    def _slice(self, box: Box) -> tuple[slice, slice]:
        x0, y0, c = self.extent[0], self.extent[1], self.cell
        return (
            slice((box[1] - y0) // c, _ceil(box[3] - y0, c) // c),
            slice((box[0] - x0) // c, _ceil(box[2] - x0, c) // c),
        )

    def view(self, box: Box) -> np.ndarray:
        return self.painted[self._slice(_align(box, self.cell))]

    def paint(self, box: Box) -> None:
        self.painted[self._slice(box)] = True

    def covered(self, box: Box) -> bool:
        return bool(self.view(box).all())


def _gaps(view: np.ndarray) -> tuple[int, int, int, int]:
    """Width, in cells, of the unpainted strip along each side (left, top, right, bottom) of a window.

    Measured as the distance from that side to the nearest painted cell, over the rows or columns that hold
    any painted cell; 0 means the painted area touches that side.
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


def _widen_bands(window: Box, cells: _Cells, max_window: int) -> Box:
    """Push each side whose new strip is thinner than MIN_BAND outward until the strip is MIN_BAND wide,
    as far as `max_window` allows, so the model paints bands with enough room for a coherent scene."""
    min_cells = MIN_BAND // GRID
    x0, y0, x1, y1 = window
    gaps = _gaps(cells.view(window))
    if 0 < gaps[0] < min_cells:
        x0 -= min(GRID * (min_cells - gaps[0]), max(0, max_window - (x1 - x0)))
    if 0 < gaps[2] < min_cells:
        x1 += min(GRID * (min_cells - gaps[2]), max(0, max_window - (x1 - x0)))
    if 0 < gaps[1] < min_cells:
        y0 -= min(GRID * (min_cells - gaps[1]), max(0, max_window - (y1 - y0)))
    if 0 < gaps[3] < min_cells:
        y1 += min(GRID * (min_cells - gaps[3]), max(0, max_window - (y1 - y0)))
    return (x0, y0, x1, y1)


def plan_calls(
    path: CameraPath, frame_size: tuple[int, int], *, lookahead: int = 128, max_window: int = 768
) -> Plan:
    """Plan the diffusion calls that paint every frame of `path`.

    Args:
        path: the camera path.
        frame_size: `(width, height)` of a frame, multiples of 8.
        lookahead: how far (pixels of camera travel) one call paints ahead of the first frame it serves.
            0 is the original method: one call per frame that shows anything new, its window that frame,
            painting just the exposed strip. Above 0, calls serve every frame within `lookahead` px of
            travel, windows and bands sit on the 8-px latent grid, and bands are at least 64 px wide.
        max_window: the largest side of a call's window (the model's comfortable size, 768 for SD-class).
    """
    w, h = frame_size
    if w % GRID or h % GRID:
        raise ValueError(f"`frame_size` has to be divisible by {GRID} but is {w}x{h}.")
    if lookahead < 0:
        raise ValueError(f"`lookahead` has to be 0 or more but is {lookahead}.")
    if max(w, h) > max_window:
        raise ValueError(f"`max_window` ({max_window}) has to be at least the frame size {w}x{h}.")
    offsets = path.offsets()
    boxes = [(-ox, -oy, -ox + w, -oy + h) for ox, oy in offsets]
    frame_extent = _align(boxes[0])
    for b in boxes:
        frame_extent = _union(frame_extent, _align(b))
    pad = max_window
    extent = (frame_extent[0] - pad, frame_extent[1] - pad, frame_extent[2] + pad, frame_extent[3] + pad)
    # The original method (lookahead 0) paints exactly each frame's exposed strip, so it tracks pixels.
    cells = _Cells(extent, GRID if lookahead else 1)
    cells.paint(boxes[0])
    bounds = boxes[0]
    calls: list[Call] = []
    call_of_frame = [-1]
    for k in range(1, len(boxes)):
        if cells.covered(boxes[k]):
            call_of_frame.append(call_of_frame[-1] if calls else -1)
            continue
        window = _call_window(k, boxes, offsets, cells, lookahead, max_window)
        cells.paint(window)
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
    )


def _call_window(
    k: int, boxes: list[Box], offsets: list[tuple[int, int]], cells: _Cells, lookahead: int, max_window: int
) -> Box:
    """The window of a call that starts at frame k: the bounding box of the frames it serves."""
    if lookahead == 0:
        return boxes[k]
    window = _align(boxes[k])
    start = offsets[k - 1]
    for j in range(k + 1, len(boxes)):
        travel = max(abs(offsets[j][0] - start[0]), abs(offsets[j][1] - start[1]))
        grown = _align(_union(window, boxes[j]))
        if travel > lookahead or max(_size(grown)) > max_window:
            break
        window = grown
    return _widen_bands(window, cells, max_window)


def _attach_frames(calls: list[Call], call_of_frame: list[int]) -> list[Call]:
    """Record on each call every frame that becomes fully painted with it (not just the first)."""
    served: dict[int, list[int]] = {c.index: [] for c in calls}
    for frame, call in enumerate(call_of_frame):
        if call >= 0:
            served[call].append(frame)
    return [Call(index=c.index, window=c.window, frames=tuple(served[c.index])) for c in calls]
