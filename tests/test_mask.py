"""mask.foreground and mask.segment: border flood fill, enclosed white stays product, specks, errors."""

from __future__ import annotations

import io
from collections import deque

import numpy as np
import pytest
from PIL import Image, ImageDraw

import photos
from prodvid_core.errors import InvalidInputError, InvalidSkuError
from prodvid_core.mask import foreground, segment
from prodvid_core.sample import sample_label_box, sample_product

SKU = "MASK-7"


def _reference(pixels: np.ndarray, tolerance: int, min_pixels: int) -> np.ndarray:
    """The definition, pixel by pixel: near-white 4-connected to the border is background; then drop
    8-connected product components smaller than `min_pixels`."""
    white = (pixels if pixels.ndim == 2 else pixels.min(axis=2)) >= 255 - tolerance
    height, width = white.shape
    background = np.zeros_like(white)
    queue = deque((y, x) for y in range(height) for x in (0, width - 1))
    queue.extend((y, x) for y in (0, height - 1) for x in range(width))
    while queue:
        y, x = queue.popleft()
        if 0 <= y < height and 0 <= x < width and white[y, x] and not background[y, x]:
            background[y, x] = True
            queue.extend(((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)))
    product, seen = ~background, np.zeros_like(white)
    for start in zip(*np.nonzero(product), strict=True):
        if seen[start]:
            continue
        seen[start], component, queue = True, [start], deque([start])
        while queue:
            y, x = queue.popleft()
            for yy in (y - 1, y, y + 1):
                for xx in (x - 1, x, x + 1):
                    if 0 <= yy < height and 0 <= xx < width and product[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        component.append((yy, xx))
                        queue.append((yy, xx))
        if len(component) < min_pixels:
            for point in component:
                product[point] = False
    return product


def _bits_image(bits: np.ndarray) -> Image.Image:
    """Black where `bits`, white elsewhere."""
    return Image.fromarray(np.where(bits, np.uint8(0), np.uint8(255))).convert("RGB")


def test_enclosed_white_label_is_product():
    image = sample_product("bottle", photos.SMALL)
    left, top, right, bottom = sample_label_box("bottle", photos.SMALL)
    product = foreground(image)
    assert (np.asarray(image)[top:bottom, left:right] == 255).all()  # a global threshold would drop it
    assert product[top:bottom, left:right].all()
    assert not product[:5, :].any() and not product[:, :5].any()


@pytest.mark.parametrize("size", [(60, 80), (120, 160), (90, 40)])
def test_matches_pixel_by_pixel_reference_on_samples(size):
    image = sample_product("bottle" if size[1] > size[0] else "jar", size)
    expected = _reference(np.asarray(image), 24, 1)
    assert np.array_equal(foreground(image), expected)


@pytest.mark.parametrize("seed", range(25))
def test_matches_pixel_by_pixel_reference_on_random_pixels(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(16, 48, 2)
    pixels = np.where(rng.random((height, width)) < rng.uniform(0.05, 0.7), 0, 255).astype(np.uint8)
    pixels = np.clip(pixels.astype(int) + rng.integers(-40, 1, pixels.shape), 0, 255).astype(np.uint8)
    min_area = float(rng.choice([0.0, 0.003, 0.01]))
    min_pixels = max(1, int(np.ceil(min_area * height * width)))
    got = foreground(Image.fromarray(pixels), min_area=min_area)
    assert np.array_equal(got, _reference(pixels, 24, min_pixels))


def test_tolerance_sets_what_counts_as_white():
    pixels = np.full((64, 64, 3), 240, np.uint8)
    pixels[20:40, 20:40] = 30
    image = Image.fromarray(pixels)
    assert foreground(image, tolerance=24).sum() == 400
    assert foreground(image, tolerance=10).all()  # 240 is not white at tolerance 10
    with pytest.raises(ValueError, match="tolerance"):
        foreground(image, tolerance=300)


def test_white_leaks_through_a_gap_but_not_through_a_diagonal_join():
    ring = np.zeros((40, 40), bool)
    ring[10, 10:30] = ring[29, 10:30] = ring[10:30, 10] = ring[10:30, 29] = True
    ring[10, 20] = False  # a 1-px gap: the inside is connected to the border
    assert not foreground(_bits_image(ring), min_area=0)[20, 20]
    diamond = Image.new("RGB", (41, 41), (255, 255, 255))
    ImageDraw.Draw(diamond).polygon([(20, 2), (38, 20), (20, 38), (2, 20)], outline=(0, 0, 0))
    inside = foreground(diamond, min_area=0)
    assert inside[20, 20] and inside[10:30, 20].all()  # diagonal-only joins still enclose


def test_dust_is_dropped_and_a_thin_diagonal_strap_is_kept():
    bits = np.zeros((100, 100), bool)
    bits[30:70, 30:70] = True
    for y, x in [(5, 5), (90, 10), (10, 90)]:
        bits[y : y + 2, x : x + 2] = True  # 4-px dust
    strap = [(80 + i, 40 + i) for i in range(15)]  # 8-connected only, 15 px
    for point in strap:
        bits[point] = True
    product = foreground(_bits_image(bits), min_area=1e-3)  # 10 px
    assert product[30:70, 30:70].all()
    assert not product[:20, :20].any() and not product[85:, :20].any() and not product[:20, 85:].any()
    assert all(product[point] for point in strap)


def test_noisy_jpeg_background_and_dust_are_not_product():
    image = Image.open(io.BytesIO(photos.noisy_jpeg())).convert("RGB")
    product = foreground(image)
    outside = np.ones_like(product)
    outside[62:738, 88:512] = False  # the drawn product: x 90..510, y 64..736, plus 2 px
    assert product.any() and not product[outside].any()
    left, top, right, bottom = sample_label_box("bottle", photos.LARGE)
    assert product[top:bottom, left:right].all()


def test_segment_is_the_foreground_as_an_l_image():
    image = sample_product("bottle", photos.SMALL)
    mask = segment(image, sku=SKU)
    assert mask.mode == "L" and mask.size == image.size
    values = np.asarray(mask)
    assert set(np.unique(values)) == {0, 255}
    assert np.array_equal(values == 255, foreground(image))


def test_segment_of_rgba_uses_the_alpha_even_where_the_product_is_white():
    alpha = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(alpha).ellipse((10, 10, 50, 50), fill=255)
    alpha.paste(100, (10, 10, 20, 20))  # partly transparent: below 128
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    image.putalpha(alpha)
    mask = np.asarray(segment(image, sku=SKU))
    assert np.array_equal(mask == 255, np.asarray(alpha) >= 128)


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (Image.new("RGB", (64, 64), (255, 255, 255)), "no product"),
        (Image.new("RGB", (64, 64), (10, 10, 10)), "background"),
        (Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "no product"),
        (Image.new("RGBA", (64, 64), (0, 0, 0, 200)), "background"),
    ],
)
def test_segment_refuses_no_product_and_no_background(image, words):
    with pytest.raises(InvalidInputError, match=words) as error:
        segment(image, sku=SKU)
    assert SKU in str(error.value)


def test_segment_min_background_is_configurable():
    pixels = np.full((100, 100, 3), 255, np.uint8)
    pixels[5:95, 5:95] = 0  # 19% background
    assert segment(Image.fromarray(pixels), sku=SKU, min_background=0.1)
    with pytest.raises(InvalidInputError, match="19.0% background"):
        segment(Image.fromarray(pixels), sku=SKU, min_background=0.2)


def test_segment_rejects_an_unsafe_sku():
    with pytest.raises(InvalidSkuError):
        segment(sample_product("bottle", photos.SMALL), sku="../etc")
