"""Sample product photos drawn with PIL alone, for the quickstart (`make demo`) and the tests.

A bottle or a jar on pure white: a shaded coloured body, a cap, and a pure-white label enclosed by the
body, the case a global white threshold gets wrong. Shapes are drawn at 4x (less for huge sizes) and
box-reduced, so edges are anti-aliased like a real photo's while flat areas (the white background, the
label) stay exactly 255.
Everything is deterministic: the same arguments give the same pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SAMPLE_KINDS", "sample_product", "sample_photo_bytes", "sample_label_box"]

SAMPLE_KINDS = ("bottle", "jar")
_BODY = (34, 110, 140)
_CAP = (40, 40, 46)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Shape:
    """Where each part goes, in output pixels (float); the drawing multiplies them by `ss`."""

    cap: tuple[float, float, float, float]
    neck: tuple[float, float, float, float]
    body: tuple[float, float, float, float]
    label: tuple[float, float, float, float]
    radius: float


def sample_product(
    kind: str = "bottle", size: tuple[int, int] = (600, 800), *, transparent: bool = False
) -> Image.Image:
    """Draw a sample product photo: mode RGB on pure white, or RGBA with anti-aliased alpha.

    The product fills the middle of the frame whatever `size` is, so a tall `size` gives a tall product
    and a wide one a wide product. With `transparent`, the RGB is the same drawing and the alpha is the
    product's coverage (0 outside, partial along the edges), like a cut-out photo.
    """
    shape = _shape(kind, size)
    ss = _supersampling(size)
    big = (size[0] * ss, size[1] * ss)
    colour = Image.new("RGB", big, (255, 255, 255))
    cover = Image.new("L", big, 0)
    _draw(colour, cover, shape, ss)
    image = colour.reduce(ss)
    if transparent:
        image.putalpha(cover.reduce(ss))
    return image


def sample_photo_bytes(
    kind: str = "bottle", fmt: str = "PNG", size: tuple[int, int] = (600, 800), *, quality: int = 92
) -> bytes:
    """The sample product encoded as PNG, JPEG or WEBP bytes (what would land in `inbox/`)."""
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt.upper() in ("JPEG", "WEBP") else {}
    sample_product(kind, size).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def sample_label_box(kind: str = "bottle", size: tuple[int, int] = (600, 800)) -> Box:
    """The inside of the pure-white label, in output pixels: every pixel of this box is (255, 255, 255)."""
    left, top, right, bottom = _shape(kind, size).label
    return (int(np.ceil(left)) + 1, int(np.ceil(top)) + 1, int(right) - 1, int(bottom) - 1)


def _shape(kind: str, size: tuple[int, int]) -> _Shape:
    """Lay the parts out inside the central 70% x 84% of the frame."""
    if kind not in SAMPLE_KINDS:
        raise ValueError(f"`kind` must be one of {SAMPLE_KINDS} but is {kind!r}.")
    width, height = size
    if width < 32 or height < 32:
        raise ValueError(f"`size` must be at least 32x32 but is {width}x{height}.")
    left, right, top, bottom = 0.15 * width, 0.85 * width, 0.08 * height, 0.92 * height
    span_w, span_h = right - left, bottom - top
    cap_h, neck_h, neck_w = (0.12, 0.10, 0.40) if kind == "bottle" else (0.16, 0.0, 0.92)
    cx = (left + right) / 2
    cap = (cx - neck_w * span_w / 2, top, cx + neck_w * span_w / 2, top + cap_h * span_h)
    inset = 0.08 * span_w * neck_w
    neck = (cap[0] + inset, cap[3], cap[2] - inset, cap[3] + neck_h * span_h)
    body = (left, neck[3], right, bottom)
    body_h = body[3] - body[1]
    label = (left + 0.14 * span_w, body[1] + 0.28 * body_h, right - 0.14 * span_w, body[1] + 0.72 * body_h)
    return _Shape(cap=cap, neck=neck, body=body, label=label, radius=0.12 * min(span_w, body_h))


def _supersampling(size: tuple[int, int]) -> int:
    """4x for photo-sized drawings, less for huge ones (a 4000 px photo at 4x would be 200 MP)."""
    return 4 if max(size) <= 1024 else 2 if max(size) <= 4096 else 1


def _draw(colour: Image.Image, cover: Image.Image, shape: _Shape, ss: int) -> None:
    """Paint the parts at `ss`x: shaded body and neck, cap, white label; `cover` gets the silhouette."""

    def scaled(box: tuple[float, float, float, float]) -> Box:
        return (round(box[0] * ss), round(box[1] * ss), round(box[2] * ss) - 1, round(box[3] * ss) - 1)

    silhouette = Image.new("L", colour.size, 0)
    pen = ImageDraw.Draw(silhouette)
    pen.rounded_rectangle(scaled(shape.body), radius=round(shape.radius * ss), fill=255)
    if shape.neck[3] > shape.neck[1]:
        pen.rectangle(scaled(shape.neck), fill=255)
    colour.paste(_shaded(colour.size, scaled(shape.body)), mask=silhouette)
    cap_radius = round(shape.radius * ss / 3)
    brush = ImageDraw.Draw(colour)
    brush.rounded_rectangle(scaled(shape.cap), radius=cap_radius, fill=_CAP)
    brush.rectangle(scaled(shape.label), fill=(255, 255, 255))
    pen.rounded_rectangle(scaled(shape.cap), radius=cap_radius, fill=255)
    cover.paste(silhouette)


def _shaded(size: tuple[int, int], body: Box) -> Image.Image:
    """The body colour with cylinder-like shading: dark at the sides, a highlight left of centre."""
    x = (np.arange(size[0], dtype=np.float64) - body[0]) / max(1, body[2] - body[0])
    cylinder = np.sin(np.clip(x, 0.0, 1.0) * np.pi) ** 0.6
    light = 0.70 + 0.45 * cylinder + 0.15 * np.exp(-(((x - 0.32) / 0.06) ** 2))
    row = np.clip(np.outer(light, _BODY), 0, 235).astype(np.uint8)
    return Image.fromarray(np.broadcast_to(row, (size[1], size[0], 3)).copy())
