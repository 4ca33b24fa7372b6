"""The brief: what a catalog team says about a SKU's scene, as `inbox/<SKU>.json`.

`{"prompt": str, "negative_prompt"?: str, "seed"?: int, "camera"?: {...}, "num_frames"?: int, "fps"?: int}`.
Anything unknown or ill-typed is an error naming the SKU and the field: a typo such as `"promt"` must not
silently produce a video of the wrong scene for thousands of SKUs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from prodvid_core import camera
from prodvid_core.errors import InvalidBriefError, validate_sku

__all__ = ["Brief", "decode_brief", "parse_brief"]

_TYPES: dict[str, type] = {
    "prompt": str,
    "negative_prompt": str,
    "seed": int,
    "camera": dict,
    "num_frames": int,
    "fps": int,
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

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def checksum(self) -> str:
        """Identifies the brief's content, e.g. in run keys: a changed brief gets a new run."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    def camera_path(self, sku: str) -> camera.CameraPath:
        return camera.from_spec(self.camera, sku=sku, num_frames=self.num_frames, fps=self.fps)


def decode_brief(data: bytes | str, *, sku: str, what: str = "the brief") -> dict:
    """The JSON object of a brief, not yet validated; `what` names it in errors (e.g. `inbox/<SKU>.json`)."""
    try:
        decoded = json.loads(data)
    except ValueError as e:
        raise InvalidBriefError(f"SKU {sku}: {what} is not valid JSON ({e}).") from None
    if not isinstance(decoded, dict):
        raise InvalidBriefError(f"SKU {sku}: {what} must be a JSON object, got {type(decoded).__name__}.")
    return decoded


def parse_brief(data: bytes | str | dict, *, sku: str) -> Brief:
    """Validate a brief (JSON text or an already parsed dict) for `sku`."""
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
            raise InvalidBriefError(
                f"SKU {sku}: brief field {key!r} must be {expected.__name__}, got {type(value).__name__}."
            )
    if not data.get("prompt", "").strip():
        raise InvalidBriefError(f"SKU {sku}: the brief needs a non-empty 'prompt'.")
    if data.get("seed", 0) < 0:
        raise InvalidBriefError(f"SKU {sku}: brief field 'seed' must be 0 or more, got {data['seed']}.")
    for key, low, high in (("num_frames", 1, 2000), ("fps", 1, 60)):
        if key in data and not low <= data[key] <= high:
            raise InvalidBriefError(f"SKU {sku}: brief field {key!r} must be {low}-{high}, got {data[key]}.")
    brief = Brief(**data)
    brief.camera_path(sku)  # validates the camera spec now, not deep inside a run
    return brief
