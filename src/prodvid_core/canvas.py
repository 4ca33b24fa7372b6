"""The `expanded_canvas` step: a product photo, normalized and placed once on a white output-sized canvas.

This is where the product reference is made, so it is the only step allowed to touch the product's
pixels, and it does so at most once: the photo is turned upright (EXIF), reduced to 8-bit RGB (or RGBA
when it has real transparency), cropped around the product and, only when the product does not fit,
resized once with Lanczos. When it fits, the product pixels are copied unchanged. The exact transform is
recorded in `Placement`, so every later step (and a test) can map canvas pixels back to the photo.

The canvas has the output size (`formats`: `square` 1080x1080 by default, any even `WxH`); where the product
sits on it is the placement (`anchor`, `fill`, `margin`, described in `formats`).

Example:
    >>> from prodvid_core.sample import sample_photo_bytes
    >>> canvas = expand(sample_photo_bytes(), sku="DEMO-1", size=(512, 512))
    >>> canvas.image.size, canvas.placement.scale, canvas.placement.canvas_box
    ((512, 512), 0.5333333333333333, (137, 95, 376, 468))
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from prodvid_core.errors import InvalidInputError, validate_sku
from prodvid_core.formats import ANCHORS, DEFAULT_FORMAT, PRESETS, check_anchor, check_fill, check_margin
from prodvid_core.mask import foreground

__all__ = [
    "MAX_PIXELS",
    "MIN_SIDE",
    "MIN_PRODUCT_PX",
    "ANCHORS",
    "Placement",
    "Canvas",
    "load_photo",
    "expand",
    "photo_warnings",
]

MAX_PIXELS = 64 * 1024 * 1024  # 8192 x 8192; bigger declared sizes are refused before decoding
MIN_SIDE = 16
MIN_PRODUCT_PX = 32  # a placed product smaller than this on a side is barely visible: a warning
_FORMATS = ("PNG", "JPEG", "WEBP")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)
_WHITE = (255, 255, 255)
_FLOOR = 0.9  # anchors "bottom" and "*-third": the product's bottom edge rests at 90% of the canvas height
_THIRDS = {"left-third": 1 / 3, "right-third": 2 / 3}  # the vertical line a third's product is centred on
_BLEED = 3  # px a Lanczos reduction may spread a product's edge: kept clear on top of a `margin` above 0
_MIN_WHITE_BORDER = 0.25  # at least this share of the photo's edge must be background

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Placement:
    """Where the photo went: `source_box` of the upright photo became `canvas_box` of the canvas.

    The mapping is exactly "crop `source_box`, resize it to the size of `canvas_box` with Lanczos (skipped
    when `scale` == 1), paste at `canvas_box`'s corner". `scale` is the factor that chose that size; the
    box sizes are that factor rounded to whole pixels. Boxes are (left, top, right, bottom), right and
    bottom exclusive, like PIL's.
    """

    source_box: Box
    canvas_box: Box
    scale: float
    canvas_size: tuple[int, int]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for the boxes), the placement part of `expanded_canvas/<SKU>.json`."""
        return {
            "source_box": list(self.source_box),
            "canvas_box": list(self.canvas_box),
            "scale": self.scale,
            "canvas_size": list(self.canvas_size),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | str | bytes) -> Placement:
        """Read a placement back from `to_json`'s dict (or its JSON text); extra keys are ignored."""
        if isinstance(data, str | bytes):
            data = json.loads(data)
        try:
            return cls(
                source_box=_int_tuple(data["source_box"], 4),
                canvas_box=_int_tuple(data["canvas_box"], 4),
                scale=float(data["scale"]),
                canvas_size=_int_tuple(data["canvas_size"], 2),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a placement: {exc!r} in {data!r}") from exc

    def to_canvas(self, x: float, y: float) -> tuple[float, float]:
        """Map a point of the upright photo to canvas coordinates."""
        (sl, st, sr, sb), (cl, ct, cr, cb) = self.source_box, self.canvas_box
        return cl + (x - sl) * (cr - cl) / (sr - sl), ct + (y - st) * (cb - ct) / (sb - st)


@dataclass
class Canvas:
    """The `expanded_canvas` asset: the image, how the photo was placed on it, and which photo it was.

    `image` is RGB, product on exact white. When the photo had real transparency it is RGBA: RGB is the
    product composited on white (exact white where alpha < 128) and A is the placed alpha, 0 outside.
    """

    image: Image.Image
    placement: Placement
    source_sha256: str

    def metadata(self) -> dict[str, Any]:
        """The JSON sidecar `expanded_canvas/<SKU>.json`: placement, source checksum, size and mode."""
        return {
            **self.placement.to_json(),
            "source_sha256": self.source_sha256,
            "size": list(self.image.size),
            "mode": self.image.mode,
        }


def load_photo(data: bytes, *, sku: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode a product photo into an upright 8-bit RGB image, or RGBA if it has real transparency.

    Accepts PNG, JPEG and WebP in any mode PIL reads (palette, grey, 16-bit, CMYK, bilevel, with or
    without alpha). The declared size is checked before decoding (a small file can declare gigapixels),
    and the pixels are decoded here in full, so a truncated file fails now with a clear message rather
    than later in the pipeline. Every problem is an `InvalidInputError` naming the SKU.
    """
    validate_sku(sku)
    if not data:
        raise InvalidInputError(f"SKU {sku}: the photo is empty (0 bytes); upload a PNG, JPEG or WebP file.")
    image = _decode(data, sku=sku, max_pixels=max_pixels)
    try:
        image = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as exc:
        raise InvalidInputError(
            f"SKU {sku}: the photo's EXIF orientation cannot be applied ({exc}); re-export the photo."
        ) from exc
    return _to_8bit(image)


def expand(
    photo: bytes,
    *,
    sku: str,
    size: int | tuple[int, int] = PRESETS[DEFAULT_FORMAT],
    fill: float = 0.7,
    margin: float = 0.0,
    anchor: str = "bottom",
    border: float = 0.02,
    upscale: bool = False,
    tolerance: int = 24,
) -> Canvas:
    """Place the product of `photo` on a white canvas of `size`, touching its pixels at most once.

    The product (its `mask.foreground`, or alpha >= 128) is cropped with a border and, if its box is
    larger than `fill` of the canvas (or than the room `margin` leaves) in either direction, reduced once
    with Lanczos to fit; with `upscale` a smaller product is enlarged to fill, otherwise it keeps its own
    pixels (scale 1, copied unchanged). `anchor` says where it sits (`formats` describes each). Everything
    outside the product is exact white, so the canvas under the mask is the product reference of the core
    promise.

    Args:
        photo: the photo file's bytes (PNG, JPEG or WebP).
        sku: the product id, named in every error.
        size: canvas side, or (width, height): even sides (H.264 yuv420p), at least 64; usually a
            `formats.Format`'s `.size`.
        fill: the largest share of the canvas width and height the product's box may take, (0, 1].
        margin: the share of the canvas kept clear of the product on each side (of the width left and
            right, of the height above and below), [0, 0.4]; with a margin above 0 a reduced product keeps
            3 px more, room for the Lanczos kernel's spread.
        anchor: "bottom", "center", "left-third" or "right-third".
        border: photo border kept around the product box, as a share of its longer side (the Lanczos
            kernel always gets at least its own support).
        upscale: enlarge a product smaller than `fill` (one Lanczos resize) instead of keeping scale 1.
        tolerance: how far below 255 a channel may be and still count as the white background.

    Example:
        >>> photo = open("inbox/SKU-1.png", "rb").read()  # doctest: +SKIP
        >>> story = (1080, 1920)
        >>> canvas = expand(photo, sku="SKU-1", size=story, anchor="left-third", margin=0.1)  # doctest: +SKIP
    """
    # 1. Check the arguments before any decoding
    canvas_size = _check_args(size, fill=fill, margin=margin, border=border, anchor=anchor)
    # 2. Decode: upright, 8-bit, RGB or RGBA
    source = load_photo(photo, sku=sku)
    # 3. Find the product and its box
    product = _product_mask(source, sku=sku, tolerance=tolerance)
    # 4. Plan the one transform
    placement = _place(
        _bbox(product),
        source.size,
        canvas_size,
        fill=fill,
        margin=margin,
        border=border,
        anchor=anchor,
        upscale=upscale,
    )
    # 5. Paint the canvas
    if source.mode == "RGBA":
        image = _paint_rgba(source, placement)
    else:
        image = _paint_rgb(source, product, placement, tolerance=tolerance)
    return Canvas(image=image, placement=placement, source_sha256=hashlib.sha256(photo).hexdigest())


def photo_warnings(photo: bytes, placed: Canvas, *, sku: str) -> list[str]:
    """What is allowed but likely a mistake: an animated photo (its first frame is used), a product placed
    under `MIN_PRODUCT_PX` on a side (a tiny photo, or an extreme aspect such as 20000x20)."""
    out = []
    with Image.open(io.BytesIO(photo), formats=_FORMATS) as image:  # the header only; decoded before
        frames, kind, (width, height) = getattr(image, "n_frames", 1), image.format, image.size
    if frames > 1:
        out.append(f"SKU {sku}: the photo is an animated {kind} of {frames} frames; only the first is used.")
    left, top, right, bottom = placed.placement.canvas_box
    product_w, product_h = right - left, bottom - top
    if min(product_w, product_h) < MIN_PRODUCT_PX:
        aspect = max(width, height) / min(width, height)
        why = (
            f"the photo is {width}x{height} px, {aspect:.0f}:1 (crop it closer to the product)"
            if aspect >= 10
            else f"the photo is only {width}x{height} px (upload the full-size photo)"
        )
        canvas_w, canvas_h = placed.image.size
        out.append(
            f"SKU {sku}: the product is placed at {product_w}x{product_h} px on the {canvas_w}x{canvas_h} "
            f"canvas, under {MIN_PRODUCT_PX} px on a side: {why}."
        )
    return out


def _decode(data: bytes, *, sku: str, max_pixels: int) -> Image.Image:
    """Open, size-check and fully decode; every failure becomes an `InvalidInputError`."""
    try:
        with warnings.catch_warnings():  # our own limit is lower; PIL's warning would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.DecompressionBombError as exc:
        raise InvalidInputError(
            f"SKU {sku}: the photo declares an absurd size ({exc}); upload a normal photo."
        ) from exc
    except UnidentifiedImageError as exc:
        kind = _sniff(data)
        if kind:  # the right signature, but PIL could not read on (a bad chunk checksum, a broken header)
            raise InvalidInputError(
                f"SKU {sku}: the {kind} photo is damaged or corrupt: its header cannot be decoded "
                f"({len(data)} bytes); re-export it or upload it again."
            ) from exc
        raise InvalidInputError(
            f"SKU {sku}: the photo is not a PNG, JPEG or WebP image ({len(data)} bytes); upload one of those."
        ) from exc
    except _DECODE_ERRORS as exc:
        raise InvalidInputError(f"SKU {sku}: the photo cannot be read ({exc}); re-export it.") from exc
    _check_size(image.size, sku=sku, max_pixels=max_pixels)
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        raise InvalidInputError(
            f"SKU {sku}: the {image.format} photo is truncated or corrupt ({exc}); upload it again."
        ) from exc
    return image


def _sniff(data: bytes) -> str | None:
    """The format a file's signature claims (PNG, JPEG, WebP), whatever the rest holds."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _check_size(size: tuple[int, int], *, sku: str, max_pixels: int) -> None:
    """Refuse a photo too small to hold a product, or declaring more pixels than we will decode."""
    width, height = size
    if width * height > max_pixels:
        raise InvalidInputError(
            f"SKU {sku}: the photo is {width}x{height} ({width * height / 1e6:.1f} MP), more than the "
            f"{max_pixels / 1e6:.1f} MP limit; downscale it."
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidInputError(
            f"SKU {sku}: the photo is {width}x{height} pixels, smaller than {MIN_SIDE} px on a side; "
            "upload the full-size product photo."
        )


def _to_8bit(image: Image.Image) -> Image.Image:
    """8-bit RGB, or RGBA when some pixel is not fully opaque; 16-bit values are rounded, not clipped."""
    if image.mode.startswith("I"):  # 16-bit grey (I;16*, or I from older PNG readers)
        image = _grey16_to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            return rgba
    return image.convert("RGB")


def _grey16_to_8bit(image: Image.Image) -> Image.Image:
    """Scale 0..65535 to 0..255 (PIL's own convert clips at 255); a tRNS grey level becomes alpha 0."""
    values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
    grey = Image.fromarray(((values + 128) // 257).astype(np.uint8))
    key = image.info.get("transparency")
    if isinstance(key, int):
        grey = grey.convert("LA")
        grey.putalpha(Image.fromarray(np.where(values == key, 0, 255).astype(np.uint8)))
    return grey


def _check_args(
    size: int | tuple[int, int], *, fill: float, margin: float, border: float, anchor: str
) -> tuple[int, int]:
    """Validate `expand`'s options (programming or configuration errors: `ValueError`)."""
    width, height = (size, size) if isinstance(size, int) else tuple(size)
    if width % 2 or height % 2 or width < 64 or height < 64:
        raise ValueError(f"`size` sides have to be even and at least 64 but are {width} and {height}.")
    check_fill(fill)
    check_margin(margin)
    check_anchor(anchor)
    if not 0 <= border <= 0.5:
        raise ValueError(f"`border` has to be in [0, 0.5] but is {border}.")
    return int(width), int(height)


def _product_mask(source: Image.Image, *, sku: str, tolerance: int) -> np.ndarray:
    """The product's pixels (alpha >= 128, or `foreground`), refusing an empty or background-less photo."""
    if source.mode == "RGBA":
        product = np.asarray(source.getchannel("A")) >= 128
    else:
        product = foreground(source, tolerance=tolerance)
    if not product.any():
        raise InvalidInputError(
            f"SKU {sku}: no product found: the photo is all white (or fully transparent); "
            "upload a photo of the product on a white background."
        )
    edge = np.concatenate([product[0], product[-1], product[1:-1, 0], product[1:-1, -1]])
    white = 1 - float(edge.mean())
    if white < _MIN_WHITE_BORDER:
        raise InvalidInputError(
            f"SKU {sku}: the photo is not on a white background: only {100 * white:.0f}% of its edge is "
            f"white (channels >= {255 - tolerance}) or transparent, need {100 * _MIN_WHITE_BORDER:.0f}%; "
            "use a photo of the product on white or with transparency."
        )
    return product


def _bbox(product: np.ndarray) -> Box:
    """The tight box (left, top, right, bottom) of the True pixels."""
    rows, cols = np.flatnonzero(product.any(axis=1)), np.flatnonzero(product.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _place(
    box: Box,
    source_size: tuple[int, int],
    canvas_size: tuple[int, int],
    *,
    fill: float,
    margin: float,
    border: float,
    anchor: str,
    upscale: bool,
) -> Placement:
    """Choose the scale, the crop (box plus a border that fits both photo and canvas) and its position."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    canvas_w, canvas_h = canvas_size
    # 1. The scale: within `fill` and within the room `margin` leaves; 1 (no resampling) when it fits
    clear_x, clear_y = math.ceil(margin * canvas_w), math.ceil(margin * canvas_h)

    def fit() -> float:
        room_w, room_h = canvas_w - 2 * clear_x, canvas_h - 2 * clear_y
        scale = min(fill * canvas_w / width, fill * canvas_h / height, room_w / width, room_h / height)
        return scale if upscale else min(scale, 1.0)

    scale = fit()
    if margin > 0 and scale != 1.0:  # resampled: keep clear the pixels Lanczos spreads the edge over too
        clear_x, clear_y = clear_x + _BLEED, clear_y + _BLEED
        scale = fit()
    # 2. Where the product's own box goes (float): the anchor's spot, moved inside the margin if needed
    product_w, product_h = width * scale, height * scale
    x = _THIRDS[anchor] * canvas_w - product_w / 2 if anchor in _THIRDS else (canvas_w - product_w) / 2
    y = (canvas_h - product_h) / 2 if anchor == "center" else _FLOOR * canvas_h - product_h
    x = min(max(x, clear_x), canvas_w - clear_x - product_w)
    y = min(max(y, clear_y), canvas_h - clear_y - product_h)
    # 3. The border in photo pixels: at least the Lanczos support, never past the photo or the canvas
    #    (1 px slack)
    pad = max(math.ceil(border * max(width, height)), math.ceil(3 / min(scale, 1.0)) + 1)
    rooms = (x, y, canvas_w - x - product_w, canvas_h - y - product_h)
    limits = (left, top, source_size[0] - right, source_size[1] - bottom)
    pl, pt, pr, pb = (
        max(0, min(pad, limit, math.floor(room / scale) - 1))
        for room, limit in zip(rooms, limits, strict=True)
    )
    source_box = (left - pl, top - pt, right + pr, bottom + pb)
    out_w = max(1, round((source_box[2] - source_box[0]) * scale))
    out_h = max(1, round((source_box[3] - source_box[1]) * scale))
    at_x = min(max(0, round(x - pl * scale)), canvas_w - out_w)
    at_y = min(max(0, round(y - pt * scale)), canvas_h - out_h)
    return Placement(source_box, (at_x, at_y, at_x + out_w, at_y + out_h), scale, canvas_size)


def _resized(crop: Image.Image, placement: Placement) -> Image.Image:
    """The crop at its canvas size: itself when scale is 1 (no resampling), else one Lanczos resize."""
    left, top, right, bottom = placement.canvas_box
    if placement.scale == 1.0:
        return crop
    return crop.resize((right - left, bottom - top), Image.Resampling.LANCZOS)


def _paint_rgb(
    source: Image.Image, product: np.ndarray, placement: Placement, *, tolerance: int
) -> Image.Image:
    """White-out the photo's background in the crop, resize, paste; then white-out the Lanczos ringing."""
    sl, st, sr, sb = placement.source_box
    crop = np.asarray(source.crop(placement.source_box))
    cleaned = Image.fromarray(np.where(product[st:sb, sl:sr, None], crop, np.uint8(255)))
    canvas = Image.new("RGB", placement.canvas_size, _WHITE)
    canvas.paste(_resized(cleaned, placement), placement.canvas_box[:2])
    pixels = np.asarray(canvas)
    keep = foreground(canvas, tolerance=tolerance)
    return Image.fromarray(np.where(keep[..., None], pixels, np.uint8(255)))


def _paint_rgba(source: Image.Image, placement: Placement) -> Image.Image:
    """Resize the RGBA crop (PIL premultiplies), composite it on white, keep its alpha as the 4th band."""
    placed = _resized(source.crop(placement.source_box), placement)
    on_white = Image.alpha_composite(Image.new("RGBA", placed.size, (*_WHITE, 255)), placed)
    canvas = Image.new("RGBA", placement.canvas_size, (*_WHITE, 0))
    canvas.paste(on_white.convert("RGB"), placement.canvas_box[:2])
    alpha = Image.new("L", placement.canvas_size, 0)
    alpha.paste(placed.getchannel("A"), placement.canvas_box[:2])
    canvas.putalpha(alpha)
    pixels = np.asarray(canvas).copy()
    pixels[pixels[..., 3] < 128, :3] = 255  # exact white wherever the mask says background
    return Image.fromarray(pixels)


def _int_tuple(values: Any, length: int) -> tuple[int, ...]:
    """`values` as a tuple of `length` ints (JSON gives lists)."""
    if len(values) != length or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"expected {length} integers, got {values!r}")
    return tuple(values)
