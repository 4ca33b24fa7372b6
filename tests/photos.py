"""Test photos as file bytes, made with PIL and numpy (no network, no Dagster), good ones and bad ones.

`GOOD` and `BAD` map a name to a maker so tests can be parametrized over all of them; `LABELS` gives the
pure-white label's box (in the upright photo) for the photos that have one.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from prodvid_core.sample import sample_label_box, sample_product

SMALL = (240, 340)  # a product that fits a 512 canvas at fill 0.7: placed at scale 1
TALL = (300, 900)
WIDE = (900, 300)
LARGE = (600, 800)
HUGE = (4000, 3000)
DUST = ((40, 40), (560, 60), (30, 700), (550, 760))  # dust specks of `noisy_jpeg`, far from the product


def _encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# --- good photos ---------------------------------------------------------------------------------------


def labelled() -> bytes:
    """A small bottle whose pure-white label is enclosed by the body; fits the canvas as is."""
    return _encode(sample_product("bottle", SMALL))


def labelled_large() -> bytes:
    """The same bottle at 600x800: its product must be scaled down."""
    return _encode(sample_product("bottle", LARGE))


def antialiased() -> bytes:
    """A dark disc and a thin diagonal strap, drawn at 4x and box-reduced: soft grey edges, 1 px strap."""
    big = Image.new("RGB", (1200, 1200), (255, 255, 255))
    pen = ImageDraw.Draw(big)
    pen.ellipse((300, 400, 900, 1000), fill=(90, 20, 30))
    pen.line((880, 560, 1100, 160), fill=(20, 20, 20), width=4)
    return _encode(big.reduce(4))


def transparent() -> bytes:
    """An RGBA cut-out: alpha 0 around the product, anti-aliased alpha on its edge."""
    return _encode(sample_product("bottle", (300, 420), transparent=True))


def noisy_jpeg() -> bytes:
    """A JPEG (quality 85) whose background is near-white noise, with four 3x3 dust specks."""
    pixels = np.asarray(sample_product("bottle", LARGE)).astype(np.int16)
    noise = np.random.default_rng(7).normal(0, 3, pixels.shape)
    background = pixels.min(axis=2, keepdims=True) == 255
    pixels = np.where(background, pixels - 4 + noise, pixels)
    for x, y in DUST:
        pixels[y : y + 3, x : x + 3] = 110
    return _encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG", quality=85)


def tall() -> bytes:
    """A tall thin bottle: its height decides the scale."""
    return _encode(sample_product("bottle", TALL))


def wide() -> bytes:
    """A wide jar: its width decides the scale."""
    return _encode(sample_product("jar", WIDE))


def huge() -> bytes:
    """A 4000x3000 photo, far larger than the canvas."""
    return _encode(sample_product("bottle", HUGE), compress_level=1)


def exif_rotated(orientation: int = 6) -> bytes:
    """A JPEG stored sideways with an EXIF orientation tag (6 or 8); upright it is the tall bottle."""
    upright = sample_product("bottle", TALL)
    stored = upright.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG (print workflows export these)."""
    return _encode(sample_product("bottle", SMALL).convert("CMYK"), "JPEG", quality=95)


def grey16_png() -> bytes:
    """A 16-bit greyscale PNG (mode I;16) with values far above 255, so clipping would be visible."""
    grey = np.asarray(sample_product("bottle", SMALL).convert("L")).astype(np.uint16) * 257
    grey[grey < 65535] += 100  # low-byte detail: rounding and truncation differ
    return _encode(Image.fromarray(grey))


def rgb16_png() -> bytes:
    """A 16-bit RGB PNG, written by hand (PIL cannot write one)."""
    pixels = np.asarray(sample_product("bottle", SMALL)).astype(np.uint16) * 257
    return _png(pixels, bit_depth=16, colour_type=2)


def palette_png() -> bytes:
    """A palette PNG whose background index is transparent (the white label is a different index)."""
    cutout = sample_product("bottle", SMALL, transparent=True)
    indexed = cutout.convert("RGB").quantize(colors=32, dither=Image.Dither.NONE)
    pixels = np.asarray(indexed).copy()
    pixels[np.asarray(cutout.getchannel("A")) == 0] = 255
    image = Image.fromarray(pixels, mode="P")
    palette = indexed.getpalette()
    image.putpalette(palette + [0] * (768 - len(palette)))  # all 256 entries, so index 255 exists
    return _encode(image, transparency=255)


def grey_png() -> bytes:
    """An 8-bit greyscale PNG (mode L)."""
    return _encode(sample_product("bottle", SMALL).convert("L"))


def bilevel_png() -> bytes:
    """A 1-bit PNG (mode 1), thresholded without dithering."""
    return _encode(sample_product("bottle", SMALL).convert("L").convert("1", dither=Image.Dither.NONE))


def grey_alpha_png() -> bytes:
    """A grey + alpha PNG (mode LA) with real transparency."""
    return _encode(sample_product("bottle", SMALL, transparent=True).convert("LA"))


def webp() -> bytes:
    """A lossy WebP."""
    return _encode(sample_product("bottle", SMALL), "WEBP", quality=90)


def opaque_rgba_png() -> bytes:
    """An RGBA PNG whose alpha is 255 everywhere: no real transparency, so it is treated as RGB."""
    return _encode(sample_product("bottle", SMALL).convert("RGBA"))


# --- bad photos ----------------------------------------------------------------------------------------


def not_an_image() -> bytes:
    return b"this is a text file, not a photo\n" * 10


def empty() -> bytes:
    return b""


def truncated_png() -> bytes:
    data = labelled()
    return data[: len(data) // 2]


def truncated_jpeg() -> bytes:
    data = _encode(sample_product("bottle", SMALL), "JPEG", quality=90)
    return data[: len(data) // 2]


def gif() -> bytes:
    """A real image in a format prodvid does not take."""
    return _encode(sample_product("bottle", SMALL), "GIF")


def all_white() -> bytes:
    return _encode(Image.new("RGB", (300, 300), (255, 255, 255)))


def fully_transparent() -> bytes:
    return _encode(Image.new("RGBA", (300, 300), (0, 0, 0, 0)))


def one_pixel() -> bytes:
    return _encode(Image.new("RGB", (1, 1), (0, 0, 0)))


def too_small() -> bytes:
    return _encode(sample_product("bottle", (32, 32)).resize((12, 12)))


def not_on_white() -> bytes:
    """A full-bleed photo: no white background to find a product on."""
    ramp = np.linspace(40, 200, 300, dtype=np.uint8)
    return _encode(Image.fromarray(np.dstack([np.tile(ramp, (300, 1))] * 3)))


def bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 16x16 PNG whose header declares `width` x `height`: tiny file, absurd size."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), (255, 255, 255))))
    ihdr = bytearray(data[12:29])  # chunk type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def moderate_bomb() -> bytes:
    """9000x9000 = 81 MP: under PIL's own warning limit (89 MP) but over prodvid's 64 MiP."""
    return bomb(9000, 9000)


def _png(pixels: np.ndarray, *, bit_depth: int, colour_type: int) -> bytes:
    """A minimal PNG (filter 0 on every row) from a big-endian-able array."""
    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2" if bit_depth == 16 else np.uint8).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


GOOD: dict[str, Callable[[], bytes]] = {
    "labelled": labelled,
    "labelled_large": labelled_large,
    "antialiased": antialiased,
    "transparent": transparent,
    "noisy_jpeg": noisy_jpeg,
    "tall": tall,
    "wide": wide,
    "huge": huge,
    "exif_rotated_6": lambda: exif_rotated(6),
    "exif_rotated_8": lambda: exif_rotated(8),
    "cmyk_jpeg": cmyk_jpeg,
    "grey16_png": grey16_png,
    "rgb16_png": rgb16_png,
    "palette_png": palette_png,
    "grey_png": grey_png,
    "bilevel_png": bilevel_png,
    "grey_alpha_png": grey_alpha_png,
    "webp": webp,
    "opaque_rgba_png": opaque_rgba_png,
}

BAD: dict[str, Callable[[], bytes]] = {
    "not_an_image": not_an_image,
    "empty": empty,
    "truncated_png": truncated_png,
    "truncated_jpeg": truncated_jpeg,
    "gif": gif,
    "all_white": all_white,
    "fully_transparent": fully_transparent,
    "one_pixel": one_pixel,
    "too_small": too_small,
    "not_on_white": not_on_white,
    "bomb": bomb,
    "moderate_bomb": moderate_bomb,
}

LABELS: dict[str, tuple[int, int, int, int]] = {
    "labelled": sample_label_box("bottle", SMALL),
    "labelled_large": sample_label_box("bottle", LARGE),
    "noisy_jpeg": sample_label_box("bottle", LARGE),
    "tall": sample_label_box("bottle", TALL),
    "wide": sample_label_box("jar", WIDE),
    "huge": sample_label_box("bottle", HUGE),
    "exif_rotated_6": sample_label_box("bottle", TALL),
    "exif_rotated_8": sample_label_box("bottle", TALL),
    "cmyk_jpeg": sample_label_box("bottle", SMALL),
    "grey16_png": sample_label_box("bottle", SMALL),
    "rgb16_png": sample_label_box("bottle", SMALL),
    "grey_png": sample_label_box("bottle", SMALL),
    "webp": sample_label_box("bottle", SMALL),
    "opaque_rgba_png": sample_label_box("bottle", SMALL),
    "transparent": sample_label_box("bottle", (300, 420)),
    "palette_png": sample_label_box("bottle", SMALL),
    "grey_alpha_png": sample_label_box("bottle", SMALL),
    "bilevel_png": sample_label_box("bottle", SMALL),
}


def labelled_box(size: int = 256) -> tuple[Image.Image, Image.Image]:
    """A red box with a pure-white label inside it, on white: canvas and product mask."""
    img = np.full((size, size, 3), 255, np.uint8)
    m = np.zeros((size, size), np.uint8)
    s = size // 256
    img[120 * s : 230 * s, 90 * s : 170 * s] = (200, 30, 30)
    m[120 * s : 230 * s, 90 * s : 170 * s] = 255
    img[150 * s : 190 * s, 100 * s : 160 * s] = 255
    return Image.fromarray(img), Image.fromarray(m)
