"""The brief: what a catalog team says about a SKU's scene, as `inbox/<SKU>.json`.

`{"prompt": str, "negative_prompt"?: str, "seed"?: int, "camera"?: {...}, "num_frames"?: int, "fps"?: int,
"seconds"?: number, "format"?: str, "anchor"?: str, "fill"?: number, "margin"?: number}`.

`seconds` is the video's length, an alternative to `num_frames` (`round(seconds * fps) + 1` frames, the
first being the hero image). `format`, `anchor`, `fill` and `margin` say the output size and where the
product sits (`formats`); left out, they come from the run's settings. Anything unknown, ill-typed or out of
range is an error naming the SKU and the field: a typo such as `"promt"` must not silently produce a video of
the wrong scene for thousands of SKUs.

Limits, so that a mistake is answered at once: a brief file holds at most `MAX_BRIEF_BYTES` (64 KiB) of
UTF-8 JSON (a byte-order mark, as some Windows editors write, is allowed), a prompt at most
`MAX_PROMPT_CHARS`, and every number is finite (`1e400`, `NaN` and `Infinity` are refused, naming the
field). A prompt longer than the text encoder reads (77 CLIP tokens, 75 of them words) is a warning
(`prompt_warnings`), not an error: the model ignores the rest.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field

from prodvid_core import camera, formats
from prodvid_core.errors import InvalidBriefError, validate_sku

__all__ = [
    "Brief",
    "decode_brief",
    "parse_brief",
    "prompt_warnings",
    "MAX_BRIEF_BYTES",
    "MAX_PROMPT_CHARS",
    "TEXT_TOKENS",
]

MAX_BRIEF_BYTES = 64 * 1024  # a real brief is a few hundred bytes; this leaves room for long polylines
MAX_PROMPT_CHARS = 2000  # far past what any text encoder reads (TEXT_TOKENS), short enough for a manifest
TEXT_TOKENS = 75  # CLIP reads 77 tokens, the first and last being its start and end markers
MAX_SEED = 2**63 - 1  # what Dagster config, JSON readers and databases keep exactly

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
    """The JSON object of a brief, not yet validated; `what` names it in errors (e.g. `inbox/<SKU>.json`).

    The size is checked before anything is parsed, and bytes are UTF-8 with or without a byte-order mark.
    """
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_BRIEF_BYTES:
        raise InvalidBriefError(
            f"SKU {sku}: {what} is {size} bytes; a brief may hold at most {MAX_BRIEF_BYTES} bytes "
            f"({MAX_BRIEF_BYTES // 1024} KiB)."
        )
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InvalidBriefError(
                f"SKU {sku}: {what} is not UTF-8 text ({e.reason} at byte {e.start})."
            ) from None
    try:
        decoded = json.loads(data.removeprefix("\ufeff"))
    except (ValueError, RecursionError) as e:
        raise InvalidBriefError(f"SKU {sku}: {what} is not valid JSON ({_first_line(e)}).") from None
    if not isinstance(decoded, dict):
        raise InvalidBriefError(
            f"SKU {sku}: {what} must be a JSON object {{...}}, got {_json_kind(decoded)}."
        )
    return decoded


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


def _json_kind(value) -> str:
    """What a JSON value is, in JSON's words (an array, not a list)."""
    names = {list: "an array", str: "a string", bool: "true/false", type(None): "null", dict: "an object"}
    return names.get(type(value), "a number")


def _non_finite(value, where: str) -> tuple[str, float] | None:
    """The first number under `value` that is not finite (1e400, NaN, Infinity), with its path."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, value
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        found = _non_finite(child, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")
        if found:
            return found
    return None


# CLIP's pre-tokenizer splits text into words, single digits and runs of punctuation; each piece is at
# least one BPE token, so counting them gives a lower bound of the tokens without loading a tokenizer.
_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


def estimate_tokens(text: str) -> int:
    """A lower bound of the CLIP tokens of `text` (pieces of CLIP's pre-tokenizer; a rare word is more
    tokens). Cheap: loading a tokenizer would need transformers, seconds before a request is checked."""
    return len(_PIECES.findall(text.lower()))


def prompt_warnings(brief: Brief, *, sku: str) -> list[str]:
    """Warnings for prompts longer than the text encoder reads: it ignores what comes after."""
    out = []
    for name in ("prompt", "negative_prompt"):
        tokens = estimate_tokens(getattr(brief, name))
        if tokens > TEXT_TOKENS:
            out.append(
                f"SKU {sku}: brief field {name!r} is at least {tokens} tokens; the text encoder reads "
                f"{TEXT_TOKENS} (77 with its start and end markers) and ignores the rest."
            )
    return out


def parse_brief(data: bytes | str | dict, *, sku: str, require_prompt: bool = True) -> Brief:
    """Validate a brief (JSON text or an already parsed dict) for `sku`; with `require_prompt=False` a
    missing prompt is allowed (and is "")."""
    validate_sku(sku)
    if isinstance(data, bytes | str):
        data = decode_brief(data, sku=sku)
    if not isinstance(data, dict):
        raise InvalidBriefError(
            f"SKU {sku}: the brief must be a JSON object {{...}}, got {_json_kind(data)}."
        )
    bad_number = _non_finite(data, "brief")
    if bad_number:
        raise InvalidBriefError(
            f"SKU {sku}: {bad_number[0].removeprefix('brief.')} must be a finite number, got {bad_number[1]} "
            "(1e400 overflows to infinity; NaN and Infinity are not JSON numbers)."
        )
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
    for key in ("prompt", "negative_prompt"):
        if len(data.get(key, "")) > MAX_PROMPT_CHARS:
            raise InvalidBriefError(
                f"SKU {sku}: brief field {key!r} is {len(data[key])} characters; at most {MAX_PROMPT_CHARS} "
                f"are allowed (the text encoder reads about {TEXT_TOKENS} words)."
            )
    if not 0 <= data.get("seed", 0) <= MAX_SEED:
        raise InvalidBriefError(f"SKU {sku}: brief field 'seed' must be 0 to {MAX_SEED}, got {data['seed']}.")
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
