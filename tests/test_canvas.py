"""canvas.load_photo and canvas.expand: normalization, one exact transform, exact white, clear errors.

Exactness is array equality (difference 0): the canvas under the mask is the product reference of the
whole pipeline, so a one-level drift here would be a broken promise everywhere downstream.
"""

from __future__ import annotations

import hashlib
import io
import json
from functools import cache

import numpy as np
import pytest
from PIL import Image, ImageOps

import photos
from prodvid_core.canvas import Canvas, Placement, expand, load_photo
from prodvid_core.errors import InvalidInputError, InvalidSkuError
from prodvid_core.formats import ANCHORS, PRESETS, parse_format
from prodvid_core.mask import foreground, segment
from prodvid_core.sample import SAMPLE_KINDS, sample_label_box, sample_photo_bytes, sample_product

SKU = "SKU-42.b"
GOOD = sorted(photos.GOOD)
SCALE_ONE = [
    "labelled",
    "antialiased",
    "transparent",
    "cmyk_jpeg",
    "grey16_png",
    "rgb16_png",
    "palette_png",
    "grey_png",
    "bilevel_png",
    "grey_alpha_png",
    "webp",
    "opaque_rgba_png",
]  # products that fit 512
LOSSY = {"noisy_jpeg", "exif_rotated_6", "exif_rotated_8", "cmyk_jpeg", "webp"}
FAILS_TO_LOAD = {
    "not_an_image",
    "empty",
    "truncated_png",
    "truncated_jpeg",
    "gif",
    "one_pixel",
    "too_small",
    "bomb",
    "moderate_bomb",
}  # the rest decode fine and fail when the product is looked for


@cache
def _photo(name: str) -> bytes:
    return (photos.GOOD | photos.BAD)[name]()


@cache
def _expanded(name: str, **options) -> tuple[Canvas, np.ndarray]:
    """`expand` on a 512 px canvas unless `size` says otherwise (the tests below were designed at 512)."""
    canvas = expand(_photo(name), sku=SKU, **{"size": 512, **options})
    return canvas, np.asarray(segment(canvas.image, sku=SKU)) == 255


def _crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = box
    return array[top:bottom, left:right]


def _expected_crop(source: Image.Image, placement: Placement) -> tuple[np.ndarray, np.ndarray | None]:
    """Recompute what `canvas_box` must hold: the source crop (background whitened, or composited on white
    for RGBA), resized with Lanczos to the box unless the scale is 1. Returns (RGB, alpha or None)."""
    left, top, right, bottom = placement.canvas_box
    crop = source.crop(placement.source_box)
    if source.mode != "RGBA":
        product = _crop(foreground(source), placement.source_box)
        crop = Image.fromarray(np.where(product[..., None], np.asarray(crop), np.uint8(255)))
    if placement.scale != 1:
        crop = crop.resize((right - left, bottom - top), Image.Resampling.LANCZOS)
    if source.mode != "RGBA":
        return np.asarray(crop), None
    on_white = Image.alpha_composite(Image.new("RGBA", crop.size, (255, 255, 255, 255)), crop)
    return np.asarray(on_white.convert("RGB")), np.asarray(crop.getchannel("A"))


# --- every good photo -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_canvas_has_the_size_and_a_product_with_background_around_it(name):
    canvas, mask = _expanded(name)
    assert canvas.image.size == (512, 512) == canvas.placement.canvas_size
    assert canvas.image.mode == ("RGBA" if load_photo(_photo(name), sku=SKU).mode == "RGBA" else "RGB")
    assert 0.02 < mask.mean() < 0.5


@pytest.mark.parametrize("name", GOOD)
def test_everything_outside_the_product_is_exact_white(name):
    canvas, mask = _expanded(name)
    pixels = np.asarray(canvas.image)
    assert (pixels[~mask][:, :3] == 255).all()
    outside = np.ones_like(mask)
    left, top, right, bottom = canvas.placement.canvas_box
    outside[top:bottom, left:right] = False
    assert not mask[outside].any()
    if canvas.image.mode == "RGBA":
        assert (pixels[outside][:, 3] == 0).all()


@pytest.mark.parametrize("name", GOOD)
def test_canvas_box_holds_the_source_box_exactly(name):
    canvas, mask = _expanded(name)
    source = load_photo(_photo(name), sku=SKU)
    rgb, alpha = _expected_crop(source, canvas.placement)
    pixels = _crop(np.asarray(canvas.image), canvas.placement.canvas_box)
    inside = _crop(mask, canvas.placement.canvas_box)
    assert np.array_equal(pixels[inside][:, :3], rgb[inside])
    if alpha is not None:
        assert np.array_equal(pixels[..., 3], alpha)


@pytest.mark.parametrize("name", SCALE_ONE)
def test_at_scale_one_product_pixels_are_the_photo_pixels(name):
    canvas, mask = _expanded(name)
    placement = canvas.placement
    source = load_photo(_photo(name), sku=SKU)
    assert placement.scale == 1.0
    (sl, st, sr, sb), (cl, ct, cr, cb) = placement.source_box, placement.canvas_box
    assert (sr - sl, sb - st) == (cr - cl, cb - ct)
    canvas_pixels = _crop(np.asarray(canvas.image), placement.canvas_box)
    source_pixels = _crop(np.asarray(source), placement.source_box)
    inside = _crop(mask, placement.canvas_box)
    if source.mode == "RGBA":
        assert np.array_equal(inside, source_pixels[..., 3] >= 128)
        opaque = source_pixels[..., 3] == 255
        assert np.array_equal(canvas_pixels[opaque], source_pixels[opaque])
    else:
        assert np.array_equal(inside, _crop(foreground(source), placement.source_box))
        assert np.array_equal(canvas_pixels[inside], source_pixels[inside])


@pytest.mark.parametrize("name", sorted(photos.LABELS))
def test_white_label_stays_product(name):
    canvas, mask = _expanded(name)
    left, top = canvas.placement.to_canvas(*photos.LABELS[name][:2])
    right, bottom = canvas.placement.to_canvas(*photos.LABELS[name][2:])
    box = (int(left) + 4, int(top) + 4, int(right) - 4, int(bottom) - 4)  # clear of Lanczos ringing
    assert box[2] - box[0] > 10 and box[3] - box[1] > 10
    label = _crop(np.asarray(canvas.image)[..., :3], box)
    assert _crop(mask, box).all()
    assert (label >= 231).all()
    if name not in LOSSY:
        assert (label == 255).all()


@pytest.mark.parametrize("name", GOOD)
def test_product_is_centred_resting_low_and_within_fill(name):
    canvas, mask = _expanded(name)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert abs((cols[0] + cols[-1] + 1) / 2 - 256) <= 1.5
    assert abs(rows[-1] + 1 - 0.9 * 512) <= 3
    assert max(cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]) <= 0.7 * 512 + 2  # partial edge pixels
    if canvas.placement.scale < 1:
        assert max(cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]) >= 0.7 * 512 - 3


# --- particular photos ----------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_photo_comes_out_upright(orientation):
    data = photos.exif_rotated(orientation)
    stored = Image.open(io.BytesIO(data))
    assert stored.size == (900, 300)  # stored sideways
    upright = load_photo(data, sku=SKU)
    assert upright.size == (300, 900)
    assert np.array_equal(np.asarray(upright), np.asarray(ImageOps.exif_transpose(stored).convert("RGB")))
    reference = np.asarray(sample_product("bottle", photos.TALL)).astype(int)
    assert np.abs(np.asarray(upright).astype(int) - reference).mean() < 2  # not upside down or mirrored
    _, mask = _expanded(f"exif_rotated_{orientation}")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert rows[-1] - rows[0] > 2 * (cols[-1] - cols[0])


@pytest.mark.parametrize("name", ["transparent", "palette_png", "grey_alpha_png"])
def test_real_transparency_gives_an_rgba_canvas_whose_alpha_is_the_mask(name):
    canvas, mask = _expanded(name)
    alpha = np.asarray(canvas.image)[..., 3]
    assert canvas.image.mode == "RGBA"
    assert np.array_equal(mask, alpha >= 128)
    if name != "palette_png":  # a palette's tRNS is one transparent index: binary alpha
        assert set(np.unique(alpha)) - {0, 255}, "anti-aliased alpha is kept, not thresholded"


def test_jpeg_noise_and_dust_leave_no_specks():
    canvas, mask = _expanded("noisy_jpeg")
    left, top = canvas.placement.to_canvas(90, 64)  # the drawn product's box
    right, bottom = canvas.placement.to_canvas(510, 736)
    outside = np.ones_like(mask)
    outside[int(top) - 2 : int(bottom) + 3, int(left) - 2 : int(right) + 3] = False
    assert not mask[outside].any()
    source = foreground(load_photo(_photo("noisy_jpeg"), sku=SKU))
    assert not any(source[y - 2 : y + 5, x - 2 : x + 5].any() for x, y in photos.DUST)


def test_huge_photo_is_scaled_down_once():
    canvas, _ = _expanded("huge")
    product_width, product_height = 0.7 * 4000, 0.84 * 3000  # the drawn bottle's box
    assert canvas.placement.scale == pytest.approx(0.7 * 512 / max(product_width, product_height), rel=1e-3)


def test_16_bit_grey_is_rounded_not_clipped():
    data = _photo("grey16_png")
    raw = np.asarray(Image.open(io.BytesIO(data))).astype(np.int64)
    expected = (raw + 128) // 257
    loaded = np.asarray(load_photo(data, sku=SKU))
    assert np.array_equal(loaded, np.repeat(expected[..., None], 3, axis=2))
    assert not np.array_equal(loaded[..., 0], np.asarray(Image.open(io.BytesIO(data)).convert("L")))


def test_16_bit_rgb_keeps_the_colours():
    loaded = load_photo(_photo("rgb16_png"), sku=SKU)
    assert loaded.mode == "RGB"
    assert np.array_equal(np.asarray(loaded), np.asarray(sample_product("bottle", photos.SMALL)))


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("cmyk_jpeg", "RGB"),
        ("grey_png", "RGB"),
        ("bilevel_png", "RGB"),
        ("palette_png", "RGBA"),
        ("grey_alpha_png", "RGBA"),
        ("opaque_rgba_png", "RGB"),
        ("webp", "RGB"),
        ("transparent", "RGBA"),
    ],
)
def test_modes_become_8_bit_rgb_or_rgba(name, mode):
    data = _photo(name)
    loaded = load_photo(data, sku=SKU)
    assert loaded.mode == mode
    assert np.array_equal(np.asarray(loaded), np.asarray(Image.open(io.BytesIO(data)).convert(mode)))


# --- options --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tall", "wide", "labelled"])
def test_non_square_canvas_and_center_anchor(name):
    canvas, mask = _expanded(name, size=(768, 512), anchor="center")
    assert canvas.image.size == (768, 512)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert abs((cols[0] + cols[-1] + 1) / 2 - 384) <= 1.5
    assert abs((rows[0] + rows[-1] + 1) / 2 - 256) <= 1.5
    rgb, _ = _expected_crop(load_photo(_photo(name), sku=SKU), canvas.placement)
    inside = _crop(mask, canvas.placement.canvas_box)
    assert np.array_equal(_crop(np.asarray(canvas.image), canvas.placement.canvas_box)[inside], rgb[inside])


@pytest.mark.parametrize("name", ["labelled", "transparent"])
def test_upscale_enlarges_a_small_product_once(name):
    canvas, mask = _expanded(name, upscale=True)
    assert canvas.placement.scale > 1
    rgb, alpha = _expected_crop(load_photo(_photo(name), sku=SKU), canvas.placement)
    pixels = _crop(np.asarray(canvas.image), canvas.placement.canvas_box)
    inside = _crop(mask, canvas.placement.canvas_box)
    assert np.array_equal(pixels[inside][:, :3], rgb[inside])
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows[-1] + 1 - rows[0] >= 0.7 * 512 - 3


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"size": 501}, "`size` sides have to be even and at least 64 but are 501 and 501"),
        ({"size": (512, 301)}, "301"),
        ({"size": 32}, "32"),
        ({"fill": 0}, "`fill` has to be in (0, 1] but is 0"),
        ({"fill": 1.5}, "`fill` has to be in (0, 1] but is 1.5"),
        ({"margin": -0.1}, "`margin` has to be in [0, 0.4] but is -0.1"),
        ({"margin": 0.5}, "`margin` has to be in [0, 0.4] but is 0.5"),
        ({"border": 0.6}, "`border` has to be in [0, 0.5] but is 0.6"),
        ({"anchor": "top"}, "`anchor` has to be one of bottom, center, left-third, right-third but is 'top'"),
    ],
)
def test_bad_options_are_value_errors_naming_the_value(options, words):
    with pytest.raises(ValueError) as info:
        expand(_photo("labelled"), sku=SKU, **options)
    assert words in str(info.value)


def test_fill_and_border_shape_the_placement():
    small, _ = _expanded("labelled_large", fill=0.4, border=0.1)
    big, _ = _expanded("labelled_large")
    assert small.placement.scale < big.placement.scale
    width = small.placement.source_box[2] - small.placement.source_box[0]
    assert width >= 420 + 2 * 67  # product 420 px wide plus 10% of its 672 px height each side


# --- formats and placement ------------------------------------------------------------------------------

FORMATS = [*PRESETS, "1000x562"]  # the presets and an odd one: even sides, not multiples of 8


def _product_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["labelled", "huge"])
def test_each_anchor_at_each_format_places_the_product_exactly_where_it_says(name, fmt, anchor):
    width, height = parse_format(fmt).size
    canvas, mask = _expanded(name, size=(width, height), anchor=anchor)
    assert canvas.image.size == (width, height) == canvas.placement.canvas_size
    # the product is the photo's, copied unchanged when it fits (scale 1), else resized exactly once
    source = load_photo(_photo(name), sku=SKU)
    rgb, _ = _expected_crop(source, canvas.placement)
    pixels = _crop(np.asarray(canvas.image), canvas.placement.canvas_box)
    inside = _crop(mask, canvas.placement.canvas_box)
    assert np.array_equal(pixels[inside], rgb[inside])
    assert (np.asarray(canvas.image)[~mask] == 255).all()
    if name == "labelled":
        assert canvas.placement.scale == 1.0  # 240x340 fits 0.7 of every format's shorter side
        box = canvas.placement.source_box
        assert np.array_equal(pixels[inside], np.asarray(source.crop(box))[inside])
    # where the anchor puts it: within 1.5 px of its line, inside the canvas
    left, top, right, bottom = _product_box(mask)
    product = _product_box(np.asarray(segment(source, sku=SKU)) == 255)
    scale = canvas.placement.scale
    assert right - left <= 0.7 * width + 3 and bottom - top <= 0.7 * height + 3
    centre_x = {"left-third": width / 3, "right-third": 2 * width / 3}.get(anchor, width / 2)
    centre_x = min(max(centre_x, (right - left) / 2), width - (right - left) / 2)  # moved inwards
    assert abs((left + right) / 2 - centre_x) <= 1.5 + scale, (left, right, centre_x)
    if anchor == "center":
        assert abs((top + bottom) / 2 - height / 2) <= 1.5 + scale
    else:
        assert abs(bottom - 0.9 * height) <= 1.5 + scale
    assert (product[2] - product[0]) * scale == pytest.approx(right - left, abs=3)


@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize(
    ("name", "fmt", "margin"),
    [
        ("labelled", "story", 0.2),
        ("huge", "story", 0.15),
        ("tall", "1000x562", 0.1),
        ("wide", "landscape", 0.4),
    ],
)
def test_the_margin_stays_clear_of_the_product(name, fmt, margin, anchor):
    width, height = parse_format(fmt).size
    canvas, mask = _expanded(name, size=(width, height), anchor=anchor, margin=margin, fill=1.0)
    left, top, right, bottom = _product_box(mask)
    clear_x, clear_y = -(-margin * width // 1), -(-margin * height // 1)  # ceil
    assert left >= clear_x and right <= width - clear_x, (left, right, clear_x)
    assert top >= clear_y and bottom <= height - clear_y, (top, bottom, clear_y)
    if name == "labelled":  # fits the room the margin leaves: still copied unchanged
        assert canvas.placement.scale == 1.0
    else:  # reduced to the room (fill 1 would allow more), not further
        room = min((width - 2 * clear_x) / (right - left), (height - 2 * clear_y) / (bottom - top))
        assert 1.0 <= room <= 1.1


def test_margin_zero_and_the_old_defaults_give_the_placement_of_before():
    """The 512 px placement the sample photo always had (canvas.py's example): margin 0 changes nothing."""
    from prodvid_core.sample import sample_photo_bytes

    canvas = expand(sample_photo_bytes(), sku="DEMO-1", size=(512, 512), margin=0.0, anchor="bottom")
    assert (canvas.placement.scale, canvas.placement.canvas_box) == (0.5333333333333333, (137, 95, 376, 468))


# --- metadata, determinism, errors ----------------------------------------------------------------------


def test_metadata_is_json_and_round_trips():
    canvas, _ = _expanded("labelled_large")
    data = _photo("labelled_large")
    meta = json.loads(json.dumps(canvas.metadata()))
    assert meta["source_sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["size"] == [512, 512] and meta["mode"] == "RGB"
    assert Placement.from_json(meta) == canvas.placement
    assert Placement.from_json(json.dumps(canvas.placement.to_json())) == canvas.placement
    with pytest.raises(ValueError, match="placement"):
        Placement.from_json({**meta, "source_box": [0, 0, 1]})


def test_to_canvas_maps_the_box_corners():
    placement = _expanded("labelled_large")[0].placement
    assert placement.to_canvas(*placement.source_box[:2]) == tuple(placement.canvas_box[:2])
    assert placement.to_canvas(*placement.source_box[2:]) == tuple(placement.canvas_box[2:])


def test_expand_is_deterministic_and_survives_a_png_round_trip():
    first = expand(_photo("labelled_large"), sku=SKU)
    second = expand(_photo("labelled_large"), sku=SKU)
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    buffer = io.BytesIO()
    first.image.save(buffer, format="PNG")
    stored = Image.open(io.BytesIO(buffer.getvalue()))
    assert np.array_equal(np.asarray(segment(stored, sku=SKU)), np.asarray(segment(first.image, sku=SKU)))


@pytest.mark.parametrize("name", sorted(photos.BAD))
def test_bad_photos_raise_invalid_input_naming_the_sku(name):
    with pytest.raises(InvalidInputError) as error:
        expand(_photo(name), sku=SKU)
    assert SKU in str(error.value)
    if name in FAILS_TO_LOAD:
        with pytest.raises(InvalidInputError, match=SKU):
            load_photo(_photo(name), sku=SKU)


@pytest.mark.parametrize("name", sorted(photos.BAD))
def test_bad_photo_messages_say_what_is_wrong(name):
    words = {
        "not_an_image": "not a PNG",
        "empty": "empty",
        "truncated_png": "truncated",
        "truncated_jpeg": "truncated",
        "gif": "not a PNG",
        "all_white": "no product",
        "fully_transparent": "no product",
        "one_pixel": "1x1",
        "too_small": "12x12",
        "not_on_white": "white background",
        "bomb": "size",
        "moderate_bomb": "9000x9000",
    }
    with pytest.raises(InvalidInputError, match=words[name]):
        expand(_photo(name), sku=SKU)


def test_unsafe_sku_is_refused():
    with pytest.raises(InvalidSkuError):
        expand(_photo("labelled"), sku="a/b")


# --- sample ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_sample_is_deterministic_with_a_pure_white_label_and_background(kind):
    assert sample_photo_bytes(kind) == sample_photo_bytes(kind)
    pixels = np.asarray(sample_product(kind))
    left, top, right, bottom = sample_label_box(kind)
    assert (pixels[top:bottom, left:right] == 255).all()
    assert (pixels[:10] == 255).all() and (pixels[-10:] == 255).all()
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # shading and anti-aliasing


def test_sample_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        sample_product("teapot")
