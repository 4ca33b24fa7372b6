"""Output formats and product placement: the size of everything a SKU produces, and where its product sits.

A format is the *output* size: canvas, mask, hero image, frames and video all have it (README, "Two
resolutions"). Publishing channels want a handful of shapes, so four are named; any other is `WxH`:

| name | size | for |
|---|---|---|
| `square` | 1080x1080 | product pages, feeds (1:1) |
| `portrait` | 1080x1350 | feeds (4:5) |
| `story` | 1080x1920 | Reels, TikTok, Shorts (9:16) |
| `landscape` | 1920x1080 | banners, YouTube (16:9) |

`WxH` sides have to be even (H.264 in yuv420p halves the colour planes), 64 to 3840 px.

Placement says where the product goes on that canvas (`canvas.expand` applies it):
- `anchor`: `bottom` (centred, resting on a floor at 90% of the height), `center` (the middle of the
  canvas), `left-third` / `right-third` (centred on the vertical line at 1/3 or 2/3 of the width, resting on
  the floor like `bottom`; moved inwards just enough when the product would cross the margin);
- `fill`: the largest share of the canvas width and height the product may take (0, 1];
- `margin`: the share of the canvas kept clear of the product on every side, of the width left and right
  and of the height above and below, [0, 0.4]: with `story` and `margin` 0.15 the product stays out of the
  top and bottom 288 px where a feed draws its captions and buttons.

A SKU's `Framing` comes from its brief, then the run's settings (`run.framing`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "PRESETS",
    "DEFAULT_FORMAT",
    "MIN_SIDE",
    "MAX_SIDE",
    "ANCHORS",
    "MAX_MARGIN",
    "Format",
    "Framing",
    "parse_format",
    "check_anchor",
    "check_fill",
    "check_margin",
]

PRESETS: dict[str, tuple[int, int]] = {
    "square": (1080, 1080),
    "portrait": (1080, 1350),
    "story": (1080, 1920),
    "landscape": (1920, 1080),
}
DEFAULT_FORMAT = "square"
MIN_SIDE, MAX_SIDE = 64, 3840
ANCHORS = ("bottom", "center", "left-third", "right-third")
MAX_MARGIN = 0.4  # a margin of 0.5 would leave no room for the product
_WXH = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")


@dataclass(frozen=True)
class Format:
    """An output size with its name: a preset's (`story`) or its own `WxH` (`256x448`)."""

    name: str
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL sizes are."""
        return self.width, self.height


@dataclass(frozen=True)
class Framing:
    """A SKU's output format and where its product sits on it: everything `canvas.expand` needs to know."""

    format: Format
    anchor: str = "bottom"
    fill: float = 0.7
    margin: float = 0.0

    @property
    def size(self) -> tuple[int, int]:
        return self.format.size


def parse_format(value: str | Format) -> Format:
    """The `Format` a preset name or a `WxH` string names; a `Format` is returned as it is.

    Raises:
        ValueError: naming what was expected and what was given, for the caller to wrap with the SKU or
            setting it came from.

    Example:
        >>> parse_format("story").size, parse_format("256x448")
        ((1080, 1920), Format(name='256x448', width=256, height=448))
    """
    if isinstance(value, Format):
        return value
    expected = (
        f"one of {', '.join(PRESETS)} or WxH with even sides from {MIN_SIDE} to {MAX_SIDE} (e.g. 1080x1350)"
    )
    if not isinstance(value, str):
        raise ValueError(f"`format` has to be {expected} but is {value!r}.")
    name = value.strip().lower()
    if name in PRESETS:
        return Format(name, *PRESETS[name])
    match = _WXH.match(name)
    if match is None:
        raise ValueError(f"`format` has to be {expected} but is {value!r}.")
    width, height = int(match[1]), int(match[2])
    for side in (width, height):
        if side % 2 or not MIN_SIDE <= side <= MAX_SIDE:
            raise ValueError(f"`format` has to be {expected} but is {value!r} (side {side}).")
    return Format(f"{width}x{height}", width, height)


def check_anchor(anchor: str) -> str:
    """`anchor` if it is one of `ANCHORS`, else a ValueError saying which are."""
    if anchor not in ANCHORS:
        raise ValueError(f"`anchor` has to be one of {', '.join(ANCHORS)} but is {anchor!r}.")
    return anchor


def check_fill(fill: float) -> float:
    """`fill` if it is in (0, 1], else a ValueError."""
    if isinstance(fill, bool) or not isinstance(fill, int | float) or not 0 < fill <= 1:
        raise ValueError(f"`fill` has to be in (0, 1] but is {fill!r}.")
    return float(fill)


def check_margin(margin: float) -> float:
    """`margin` if it is in [0, MAX_MARGIN], else a ValueError."""
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin <= MAX_MARGIN:
        raise ValueError(f"`margin` has to be in [0, {MAX_MARGIN}] but is {margin!r}.")
    return float(margin)
