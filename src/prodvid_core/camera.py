"""Camera paths: how the picture moves from one frame to the next.

A path is a list of whole-pixel shifts `(dx, dy)`, one per frame after the first: frame k's content is frame
k-1's moved right by dx and down by dy. Smooth paths (pans, polylines, arcs, eased moves) are sampled as
real-valued camera positions and their *cumulative* position is rounded, so rounding never drifts and no
frame is ever resampled — resampling would alter product pixels.

A path is chosen in a brief as `"camera": {"path": NAME, ...}`; `from_spec` validates it.

Paths look the same in every output format. `from_spec` builds a path for a frame size (the SKU's format):
- distances in a brief (pan `distance`, polyline `points`, arc `radius`) are fractions of the frame when
  their absolute value is at most 1 (x of the frame width, y of its height, an arc's radius of the shorter
  side) and pixels when larger: `"distance": [-0.1, -0.05]` moves the content by a tenth of the width and
  a twentieth of the height in any format, `"distance": [-120, 0]` by 120 px. (So a 1 px move is written
  as a fraction: 1 / width.) `shifts` are always whole pixels.
- the built-in paths (`drift`, `seed`, and the defaults of `pan` and `arc`) were designed on a 512x512
  frame and are scaled to the frame per axis (positions scaled, then rounded cumulatively); at 512x512
  they are exactly what they always were.

Bounds, derived from the frame: every number of a spec is finite; no frame moves more than one frame side
(`MAX_STEP`: a bigger jump is a cut, not a camera move); and the world the frames show is at most
`MAX_WORLD` frame sides across in each direction. The world canvas and the plan's painted mask are that
big, so this is what keeps a mistyped distance (`1e9`) from allocating tens of gigabytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from prodvid_core.errors import InvalidBriefError

__all__ = [
    "CameraPath",
    "PATHS",
    "DEFAULT_CAMERA",
    "DESIGN_SIZE",
    "seed",
    "drift",
    "pan",
    "polyline",
    "arc",
    "from_positions",
    "from_shifts",
    "from_spec",
    "parse_spec",
    "check_bounds",
    "MAX_FRAMES",
    "MAX_STEP",
    "MAX_WORLD",
]

Shift = tuple[int, int]
Size = tuple[int, int]

DEFAULT_CAMERA: dict = {"path": "drift"}
DESIGN_SIZE: Size = (512, 512)  # the frame the built-in paths were designed on
DEFAULT_FPS = 24
MAX_FRAMES = 2000  # frames in a video, counting the hero image
MAX_FPS = 60
MAX_STEP = 1  # frame sides a single frame may move, per axis
MAX_WORLD = 4  # frame sides the world (every frame's window together) may span, per axis


@dataclass(frozen=True)
class CameraPath:
    """Per-frame shifts and the frame rate they were designed for."""

    shifts: tuple[Shift, ...]
    fps: int

    @property
    def num_frames(self) -> int:
        """Frames in the video, counting frame 0 (the hero image)."""
        return len(self.shifts) + 1

    def offsets(self) -> list[Shift]:
        """Cumulative shift since frame 0: frame k's pixel at p + offset shows frame 0's pixel p."""
        x = y = 0
        out = [(0, 0)]
        for dx, dy in self.shifts:
            x, y = x + dx, y + dy
            out.append((x, y))
        return out

    def to_json(self) -> dict:
        return {"fps": self.fps, "shifts": [list(s) for s in self.shifts]}


def _ease(t: float) -> float:
    """Smoothstep ease-in/out: zero speed at both ends, so a move starts and stops gently."""
    return t * t * (3.0 - 2.0 * t)


def from_positions(positions: Sequence[tuple[float, float]], fps: int) -> CameraPath:
    """Turn real-valued content offsets (one per frame, frame 0 first) into whole-pixel shifts.

    Each position is rounded on its own and shifts are differences of rounded positions, so the error never
    exceeds half a pixel however long the path is.
    """
    rounded = [(round(x), round(y)) for x, y in positions]
    x0, y0 = rounded[0]
    rounded = [(x - x0, y - y0) for x, y in rounded]
    shifts = tuple((b[0] - a[0], b[1] - a[1]) for a, b in zip(rounded, rounded[1:], strict=False))
    return CameraPath(shifts=shifts, fps=fps)


def from_shifts(shifts: Sequence[Sequence[int]], fps: int = 24) -> CameraPath:
    """A user's own list of per-frame shifts."""
    return CameraPath(shifts=tuple((int(dx), int(dy)) for dx, dy in shifts), fps=fps)


def _scaled(point: tuple[float, float], frame_size: Size) -> tuple[float, float]:
    """A point of a 512x512 design scaled to `frame_size`, per axis."""
    return point[0] * frame_size[0] / DESIGN_SIZE[0], point[1] * frame_size[1] / DESIGN_SIZE[1]


def seed(frame_size: Size = DESIGN_SIZE) -> CameraPath:
    """The original method's path: 10 frames of (5, 10), then 10 of (10, 5), at 10 fps (on a 512 px frame;
    scaled per axis to `frame_size`)."""
    designed = CameraPath(shifts=((5, 10),) * 10 + ((10, 5),) * 10, fps=10)
    if tuple(frame_size) == DESIGN_SIZE:
        return designed
    return from_positions([_scaled(p, frame_size) for p in designed.offsets()], designed.fps)


def polyline(
    points: Sequence[tuple[float, float]], *, num_frames: int = 48, fps: int = 24, ease: bool = True
) -> CameraPath:
    """Move the content through `points` (offsets in pixels, the first usually (0, 0)) at constant speed
    along the line, or eased in and out over the whole move."""
    pts = [(float(x), float(y)) for x, y in points]
    lengths = [math.dist(a, b) for a, b in zip(pts, pts[1:], strict=False)]
    total = sum(lengths)
    positions = []
    for i in range(num_frames):
        t = i / (num_frames - 1) if num_frames > 1 else 0.0
        d = (_ease(t) if ease else t) * total
        positions.append(_point_at(pts, lengths, d))
    return from_positions(positions, fps)


def _point_at(pts: list[tuple[float, float]], lengths: list[float], d: float) -> tuple[float, float]:
    for (a, b), length in zip(zip(pts, pts[1:], strict=False), lengths, strict=True):
        if d <= length or length == 0 and d <= 0:
            f = d / length if length else 0.0
            return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
        d -= length
    return pts[-1]


def pan(
    distance: tuple[float, float] = (-64, -32), *, num_frames: int = 48, fps: int = 24, ease: bool = False
) -> CameraPath:
    """A straight move of the content by `distance` pixels over the whole video."""
    return polyline([(0.0, 0.0), distance], num_frames=num_frames, fps=fps, ease=ease)


def drift(*, num_frames: int = 48, fps: int = 24, frame_size: Size = DESIGN_SIZE) -> CameraPath:
    """The default: a slow eased diagonal move (content up and left by 64 × 32 px of a 512 px frame, an
    eighth of the width and a sixteenth of the height) that keeps a product placed by `canvas.expand` in
    view for the whole video."""
    return pan(_scaled((-64, -32), frame_size), num_frames=num_frames, fps=fps, ease=True)


def arc(
    radius: float = 96, degrees: float = 90, *, num_frames: int = 48, fps: int = 24, ease: bool = True
) -> CameraPath:
    """Move the content along a circular arc starting at (0, 0), bending clockwise."""
    positions = []
    for i in range(num_frames):
        t = i / (num_frames - 1) if num_frames > 1 else 0.0
        a = math.radians(degrees) * (_ease(t) if ease else t)
        positions.append((radius * math.sin(a), radius * (1 - math.cos(a))))
    return from_positions(positions, fps)


PATHS = ("drift", "seed", "pan", "polyline", "arc", "shifts")

# Each path's optional brief fields and their types.
_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "drift": {},
    "seed": {},
    "pan": {"distance": list, "ease": bool},
    "polyline": {"points": list, "ease": bool},
    "arc": {"radius": (int, float), "degrees": (int, float), "ease": bool},
    "shifts": {"shifts": list},
}


def parse_spec(value: str, *, sku: str, what: str) -> dict:
    """A camera given as one string (the CLI's `--camera`, the Dagster run config's `camera`): a path name,
    or a JSON object as in a brief's `camera` field. The spec is checked by `from_spec`, at the SKU's format;
    `what` names where the string came from in the error."""
    if not value.lstrip().startswith(("{", "[")):
        return {"path": value.strip()}
    try:
        spec = json.loads(value)
    except (ValueError, RecursionError) as e:
        raise InvalidBriefError(
            f"SKU {sku}: {what} is neither a path name ({', '.join(PATHS)}) nor a JSON object: {e}."
        ) from None
    if not isinstance(spec, dict):
        raise InvalidBriefError(
            f"SKU {sku}: {what} must be a path name or a JSON object {{...}}, got an array."
        )
    return spec


def from_spec(
    spec: dict | None,
    *,
    sku: str,
    frame_size: Size,
    num_frames: int | None = None,
    fps: int | None = None,
    seconds: float | None = None,
) -> CameraPath:
    """Build the path a brief asks for, e.g. `{"path": "pan", "distance": [-0.1, 0], "ease": true}`, for
    frames of `frame_size` (width, height): fractions and built-in paths are scaled to it.

    `num_frames`, `fps` and `seconds` (top-level brief fields) override the path's own; `seconds` gives
    `round(seconds * fps) + 1` frames (the path's own fps when `fps` is not given), so it cannot come with
    `num_frames`. Unknown paths and ill-typed fields raise `InvalidBriefError` naming the SKU and the field.
    """
    width, height = frame_size
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"`frame_size` has to be (width, height) in whole pixels but is {frame_size!r}.")
    spec = dict(DEFAULT_CAMERA if spec is None else spec)
    name = spec.pop("path", None)
    if name not in _FIELDS:
        raise InvalidBriefError(f"SKU {sku}: camera.path must be one of {', '.join(PATHS)}, got {name!r}.")
    for key, value in spec.items():
        expected = _FIELDS[name].get(key)
        if expected is None:
            allowed = ", ".join(["path", *_FIELDS[name]])
            raise InvalidBriefError(
                f"SKU {sku}: unknown field camera.{key} for path {name!r} (allowed: {allowed})."
            )
        if not isinstance(value, expected) or isinstance(value, bool) and expected is not bool:
            raise InvalidBriefError(f"SKU {sku}: camera.{key} has the wrong type ({type(value).__name__}).")
        bad = _non_finite(value)
        if bad is not None:
            raise InvalidBriefError(
                f"SKU {sku}: camera.{key} must hold finite numbers, got {bad} "
                "(1e400 overflows to infinity; NaN and Infinity are not numbers)."
            )
    for key, value, high in (("num_frames", num_frames, MAX_FRAMES), ("fps", fps, MAX_FPS)):
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high
        ):
            raise InvalidBriefError(f"SKU {sku}: {key!r} must be a whole number, 1 to {high}, got {value!r}.")
    if seconds is not None:
        if num_frames is not None:
            raise InvalidBriefError(
                f"SKU {sku}: give the video's length as 'seconds' or as 'num_frames', not both "
                f"(got {seconds} s and {num_frames} frames)."
            )
        if not (isinstance(seconds, int | float) and 0 < seconds <= 600):
            raise InvalidBriefError(f"SKU {sku}: 'seconds' must be above 0 and at most 600, got {seconds}.")
        rate = fps or (10 if name == "seed" else DEFAULT_FPS)
        num_frames = round(seconds * rate) + 1
        if num_frames > MAX_FRAMES:
            raise InvalidBriefError(
                f"SKU {sku}: brief field 'seconds' gives {num_frames} frames at {rate} fps; at most "
                f"{MAX_FRAMES} are allowed."
            )
    kwargs: dict = {k: v for k, v in (("num_frames", num_frames), ("fps", fps)) if v is not None}
    try:
        path = _build(name, spec, kwargs, (width, height))
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidBriefError(f"SKU {sku}: camera {name!r} is ill-formed: {e}") from None
    if fps is not None and path.fps != fps:
        path = CameraPath(shifts=path.shifts, fps=fps)
    if path.num_frames > MAX_FRAMES:
        raise InvalidBriefError(
            f"SKU {sku}: the camera path gives {path.num_frames} frames; at most {MAX_FRAMES} are allowed."
        )
    check_bounds(path, frame_size, sku=sku, field=_MAIN_FIELD[name])
    return path


# The spec field a path's size comes from, named when the path is out of bounds.
_MAIN_FIELD = {
    "drift": "path", "seed": "path", "pan": "distance", "polyline": "points", "arc": "radius",
    "shifts": "shifts",
}  # fmt: skip


def check_bounds(path: CameraPath, frame_size: Size, *, sku: str, field: str = "path") -> None:
    """Refuse a path that jumps more than `MAX_STEP` frame sides in one frame, or whose frames together span
    more than `MAX_WORLD` frame sides in a direction: the world canvas and the plan's mask are that big."""
    width, height = frame_size
    axes = (("x", width, 0, "widths"), ("y", height, 1, "heights"))
    for axis, side, index, sides in axes:
        positions = [o[index] for o in path.offsets()]
        span = max(positions) - min(positions) + side
        if span > MAX_WORLD * side:
            raise InvalidBriefError(
                f"SKU {sku}: camera.{field} makes the frames span {span} px along {axis}; at most "
                f"{MAX_WORLD * side} px ({MAX_WORLD} frame {sides}) are allowed at {width}x{height} "
                "(a distance above 1 is pixels, up to 1 a fraction of the frame)."
            )
    for axis, side, index, sides in axes:
        step = max((abs(s[index]) for s in path.shifts), default=0)
        if step > MAX_STEP * side:
            raise InvalidBriefError(
                f"SKU {sku}: camera.{field} moves the content {step} px along {axis} in one frame; at most "
                f"{MAX_STEP * side} px (one frame's {sides[:-1]}) is allowed at {width}x{height}: give a "
                "shorter move or more frames."
            )


def _non_finite(value) -> float | None:
    """The first number in `value` (a number, or lists of them) that is not finite."""
    if isinstance(value, float) and not math.isfinite(value):
        return value
    if isinstance(value, list | tuple):
        for item in value:
            bad = _non_finite(item)
            if bad is not None:
                return bad
    return None


def _pairs(value: list, field: str) -> list[tuple[float, float]]:
    if not all(isinstance(p, list | tuple) and len(p) == 2 for p in value):
        raise ValueError(f"camera.{field} must be a list of [x, y] pairs")
    pairs = [(p[0], p[1]) for p in value]
    if not all(isinstance(c, int | float) and not isinstance(c, bool) for p in pairs for c in p):
        raise ValueError(f"camera.{field} must hold numbers")
    return pairs


def _px(value: float, side: int) -> float:
    """A brief's distance in pixels: a fraction of `side` when its absolute value is at most 1."""
    return value * side if abs(value) <= 1 else float(value)


def _build(name: str, spec: dict, kwargs: dict, frame_size: Size) -> CameraPath:
    width, height = frame_size

    def points(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(_px(x, width), _px(y, height)) for x, y in pairs]

    if name == "seed":
        path = seed(frame_size)
        if "num_frames" in kwargs:
            path = CameraPath(shifts=path.shifts[: max(kwargs["num_frames"] - 1, 0)], fps=path.fps)
        return path
    if name == "drift":
        return drift(frame_size=frame_size, **kwargs)
    if name == "pan":
        distance = points(_pairs([spec.get("distance", [-0.125, -0.0625])], "distance"))[0]
        return pan(distance, ease=spec.get("ease", False), **kwargs)
    if name == "polyline":
        pairs = _pairs(spec.get("points", []), "points")
        if len(pairs) < 2:
            raise ValueError("camera.points needs at least two points")
        return polyline(points(pairs), ease=spec.get("ease", True), **kwargs)
    if name == "arc":
        radius = _px(spec.get("radius", 0.1875), min(width, height))
        return arc(radius, spec.get("degrees", 90), ease=spec.get("ease", True), **kwargs)
    shifts = _pairs(spec.get("shifts", []), "shifts")
    if not all(float(c).is_integer() for p in shifts for c in p):
        raise ValueError("camera.shifts must be whole pixels")
    path = from_shifts(shifts, fps=kwargs.get("fps", DEFAULT_FPS))
    if "num_frames" in kwargs and kwargs["num_frames"] != path.num_frames:
        raise ValueError(
            f"num_frames is {kwargs['num_frames']} but camera.shifts gives {path.num_frames} frames"
        )
    return path
