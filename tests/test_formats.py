"""Output formats: the presets, any even WxH, and clear refusals naming what was expected."""

import pytest

from prodvid_core.formats import (
    Format,
    check_anchor,
    check_fill,
    check_margin,
    parse_format,
)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("square", (1080, 1080)),
        ("portrait", (1080, 1350)),
        ("story", (1080, 1920)),
        ("landscape", (1920, 1080)),
        (" Story ", (1080, 1920)),
        ("256x448", (256, 448)),
        ("1000X562", (1000, 562)),
        ("64x3840", (64, 3840)),
    ],
)
def test_presets_and_wxh(value, size):
    fmt = parse_format(value)
    assert fmt.size == (fmt.width, fmt.height) == size
    assert parse_format(fmt) is fmt
    assert parse_format(fmt.name) == fmt


@pytest.mark.parametrize(
    "value", ["tiktok", "1081x1920", "1080x1921", "62x64", "64x3842", "1080", "x", "", 512]
)
def test_anything_else_is_refused_saying_what_is_expected(value):
    with pytest.raises(ValueError) as info:
        parse_format(value)
    message = str(info.value)
    assert message.startswith("`format` has to be one of square, portrait, story, landscape or WxH")
    assert f"but is {value!r}" in message


def test_placement_checks():
    assert check_anchor("left-third") == "left-third"
    assert (check_fill(1), check_margin(0)) == (1.0, 0.0)
    with pytest.raises(ValueError, match="`anchor` has to be one of bottom, center, left-third, right-third"):
        check_anchor("top")
    with pytest.raises(ValueError, match=r"`fill` has to be in \(0, 1\] but is True"):
        check_fill(True)
    with pytest.raises(ValueError, match=r"`margin` has to be in \[0, 0.4\] but is 0.41"):
        check_margin(0.41)


def test_format_is_a_plain_value():
    assert Format("story", 1080, 1920) == parse_format("story")
