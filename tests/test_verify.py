"""`verify.product_diff`, the definition of "the product is exact" that the checks and the tests share."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from prodvid_core.verify import ProductDiff, product_diff

H, W = 12, 16


def canvas_and_mask() -> tuple[np.ndarray, np.ndarray]:
    """A noisy 16x12 canvas with a 6x5 product at x 4-9, y 3-7, plus one stray product pixel at (12, 9)."""
    canvas = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[3:8, 4:10] = 255
    mask[9, 12] = 255
    return canvas, mask


def shifted(canvas: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """A frame whose pixel p + (dx, dy) shows the canvas's pixel p; fresh content where nothing moved in."""
    frame = np.full_like(canvas, 7)
    src = canvas[max(0, -dy) : H - max(0, dy), max(0, -dx) : W - max(0, dx)]
    frame[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return frame


def test_an_untouched_image_is_exact_whatever_its_background() -> None:
    canvas, mask = canvas_and_mask()
    hero = canvas.copy()
    hero[mask == 0] = 0  # the scene painted over the background
    assert product_diff(canvas, mask, hero) == ProductDiff(visible=31, differing=0, first=None)
    assert product_diff(canvas, mask, hero).exact


def test_a_one_pixel_tamper_is_found_with_its_coordinate() -> None:
    canvas, mask = canvas_and_mask()
    for x, y in [(4, 3), (9, 7), (6, 5), (12, 9)]:
        hero = canvas.copy()
        hero[y, x, 2] ^= 1  # the least visible change there is
        diff = product_diff(canvas, mask, hero)
        assert (diff.visible, diff.differing, diff.first, diff.exact) == (31, 1, (x, y), False)


def test_the_first_differing_pixel_is_the_first_in_row_order() -> None:
    canvas, mask = canvas_and_mask()
    hero = canvas.copy()
    hero[6, 5] = 255 - hero[6, 5]
    hero[4, 8] = 255 - hero[4, 8]
    hero[4, 9] = 255 - hero[4, 9]
    assert product_diff(canvas, mask, hero) == ProductDiff(visible=31, differing=3, first=(8, 4))


def test_pil_images_in_any_mode_compare_as_rgb() -> None:
    canvas, mask = canvas_and_mask()
    rgba = Image.fromarray(np.dstack([canvas, np.full((H, W), 200, np.uint8)]), "RGBA")
    hero = canvas.copy()
    hero[5, 5, 0] ^= 4
    diff = product_diff(rgba, Image.fromarray(mask), Image.fromarray(hero))
    assert (diff.differing, diff.first) == (1, (5, 5))


@pytest.mark.parametrize("offset", [(3, 2), (-2, 1), (0, -3)])
def test_a_shifted_frame_is_compared_at_its_offset(offset: tuple[int, int]) -> None:
    canvas, mask = canvas_and_mask()
    frame = shifted(canvas, *offset)
    assert product_diff(canvas, mask, frame, offset=offset).exact
    assert not product_diff(canvas, mask, frame).exact  # unshifted, the product is not where it was

    x, y = 6 + offset[0], 4 + offset[1]  # the product's pixel (6, 4), moved
    frame[y, x, 1] ^= 1
    diff = product_diff(canvas, mask, frame, offset=list(offset))  # a manifest's offset is a JSON list
    assert (diff.differing, diff.first) == (1, (x, y))


def test_a_product_partly_out_of_frame_is_checked_where_visible() -> None:
    canvas, mask = canvas_and_mask()
    # moved left by 7: of the product's columns x 4-9 only 7-9 stay (at 0-2), and the stray pixel (at 5, 9)
    frame = shifted(canvas, -7, 0)
    diff = product_diff(canvas, mask, frame, offset=(-7, 0))
    assert diff == ProductDiff(visible=3 * 5 + 1, differing=0, first=None)
    frame[3, 0] ^= 255  # the product's pixel (7, 3), now at the frame's left edge
    assert product_diff(canvas, mask, frame, offset=(-7, 0)).first == (0, 3)
    # moved down by 6: only the product's top 3 rows stay (at y 9-11); the stray pixel leaves
    diff = product_diff(canvas, mask, shifted(canvas, 0, 6), offset=(0, 6))
    assert diff == ProductDiff(visible=3 * 6, differing=0, first=None)


def test_a_product_wholly_out_of_frame_has_nothing_visible() -> None:
    canvas, mask = canvas_and_mask()
    diff = product_diff(canvas, mask, np.zeros_like(canvas), offset=(W, 0))
    assert diff == ProductDiff(
        visible=0, differing=0, first=None
    )  # callers that expect it in view check visible


def test_mismatched_inputs_are_errors() -> None:
    canvas, mask = canvas_and_mask()
    with pytest.raises(ValueError, match=r"`product_mask` must be the size of `reference` \(16x12\)"):
        product_diff(canvas, mask[:-1], canvas)
    with pytest.raises(ValueError, match=r"`image` must be an RGB image .* \(12, 16\)"):
        product_diff(canvas, mask, mask)
