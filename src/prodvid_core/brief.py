"""The brief: what a catalog team says about a SKU's scene, as `inbox/<SKU>.json`.

`{"prompt": str, "negative_prompt"?: str, "seed"?: int, "camera"?: {...}, "num_frames"?: int, "fps"?: int,
"seconds"?: number, "format"?: str, "anchor"?: str, "fill"?: number, "margin"?: number}`.

`seconds` is the video's length, an alternative to `num_frames` (`round(seconds * fps) + 1` frames, the
first being the hero image). `format`, `anchor`, `fill` and `margin` say the output size and where the
product sits (`formats`); left out, they come from the run's settings. Anything unknown, ill-typed or out of
range is an error naming the SKU and the field: a typo such as `"promt"` must not silently produce a video of
the wrong scene for thousands of SKUs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from prodvid_core import camera, formats
from prodvid_core.errors import InvalidBriefError, validate_sku

__all__ = ["Brief", "decode_brief", "parse_brief"]

_NUMBER = (int, float)
_TYPES: dict[str, type | tuple[type, ...]] = {
    "prompt": str,
    "negative_prompt": str,
    "seed": int,
    "camera": dict,
    "num_frames": int,
    "fps": int,
    "seconds": _NUMBER,
    "format": str,
    "anchor": str,
    "fill": _NUMBER,
    "margin": _NUMBER,
}
# How each placement field is checked (a ValueError saying what was expected and what was given).
_PLACEMENT_CHECKS = {
    "format": formats.parse_format,
    "anchor": formats.check_anchor,
    "fill": formats.check_fill,
    "margin": formats.check_margin,
}


@dataclass(frozen=True)
class Brief:
    """A validated brief."""

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    camera: dict = field(default_factory=lambda: dict(camera.DEFAULT_CAMERA))
    num_frames: int | None = None
    fps: int | None = None
    seconds: float | None = None
    format: str | None = None
    anchor: str | None = None
    fill: float | None = None
    margin: float | None = None

    def to_json(self) -> dict:
        """The fields that are set: a brief without the newer fields keeps its JSON, and its checksum."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def checksum(self) -> str:
        """Identifies the brief's content, e.g. in run keys: a changed brief gets a new run."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    def camera_path(self, sku: str, frame_size: tuple[int, int]) -> camera.CameraPath:
        """The camera path for frames of `frame_size` (width, height), the SKU's output size: fractions of
        the frame and built-in paths are scaled to it (`camera`)."""
        return camera.from_spec(
            self.camera,
            sku=sku,
            frame_size=frame_size,
            num_frames=self.num_frames,
            fps=self.fps,
            seconds=self.seconds,
        )


def decode_brief(data: bytes | str, *, sku: str, what: str = "the brief") -> dict:
    """The JSON object of a brief, not yet validated; `what` names it in errors (e.g. `inbox/<SKU>.json`)."""
    try:
        decoded = json.loads(data)
    except ValueError as e:
        raise InvalidBriefError(f"SKU {sku}: {what} is not valid JSON ({e}).") from None
    if not isinstance(decoded, dict):
        raise InvalidBriefError(f"SKU {sku}: {what} must be a JSON object, got {type(decoded).__name__}.")
    return decoded


def parse_brief(data: bytes | str | dict, *, sku: str, require_prompt: bool = True) -> Brief:
    """Validate a brief (JSON text or an already parsed dict) for `sku`; with `require_prompt=False` a
    missing prompt is allowed (and is "")."""
    validate_sku(sku)
    if isinstance(data, bytes | str):
        data = decode_brief(data, sku=sku)
    if not isinstance(data, dict):
        raise InvalidBriefError(f"SKU {sku}: the brief must be a JSON object, got {type(data).__name__}.")
    for key, value in data.items():
        expected = _TYPES.get(key)
        if expected is None:
            raise InvalidBriefError(
                f"SKU {sku}: unknown field {key!r} in the brief (allowed: {', '.join(_TYPES)})."
            )
        if not isinstance(value, expected) or isinstance(value, bool):
            want = "a number" if expected is _NUMBER else expected.__name__
            raise InvalidBriefError(
                f"SKU {sku}: brief field {key!r} must be {want}, got {type(value).__name__}."
            )
    if require_prompt and not data.get("prompt", "").strip():
        raise InvalidBriefError(f"SKU {sku}: the brief needs a non-empty 'prompt'.")
    if data.get("seed", 0) < 0:
        raise InvalidBriefError(f"SKU {sku}: brief field 'seed' must be 0 or more, got {data['seed']}.")
    for key, low, high in (("num_frames", 1, 2000), ("fps", 1, 60)):
        if key in data and not low <= data[key] <= high:
            raise InvalidBriefError(f"SKU {sku}: brief field {key!r} must be {low}-{high}, got {data[key]}.")
    for key, check in _PLACEMENT_CHECKS.items():
        if key in data:
            try:
                check(data[key])
            except ValueError as e:
                raise InvalidBriefError(f"SKU {sku}: brief field {key!r}: {e}") from None
    data = {k: float(v) if _TYPES[k] is _NUMBER else v for k, v in data.items()}
    if "format" in data:
        data["format"] = formats.parse_format(data["format"]).name  # " Story " is "story"
    brief = Brief(**{"prompt": "", **data})
    # the camera spec and the length are checked now, not deep inside a run (at any size: only the pixel
    # counts depend on it)
    frames = brief.camera_path(sku, formats.parse_format(brief.format or formats.DEFAULT_FORMAT).size)
    if brief.seconds is not None and frames.num_frames > 2000:
        raise InvalidBriefError(
            f"SKU {sku}: brief field 'seconds' gives {frames.num_frames} frames at {frames.fps} fps; "
            "at most 2000 are allowed."
        )
    return brief
