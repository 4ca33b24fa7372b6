import pytest

from prodvid_core.brief import parse_brief
from prodvid_core.errors import InvalidBriefError, InvalidSkuError, validate_sku


def test_a_full_brief_parses_and_builds_its_camera():
    brief = parse_brief(
        b'{"prompt": "on a beach", "negative_prompt": "text", "seed": 7, "camera": {"path": "seed"},'
        b' "num_frames": 11, "fps": 12}',
        sku="SKU-1",
    )
    assert (brief.prompt, brief.negative_prompt, brief.seed) == ("on a beach", "text", 7)
    path = brief.camera_path("SKU-1", (512, 512))
    assert (path.num_frames, path.fps) == (11, 12)


def test_format_placement_and_seconds():
    brief = parse_brief(
        {"prompt": "x", "format": " Story", "anchor": "left-third", "fill": 1, "margin": 0.1, "seconds": 2},
        sku="SKU-1",
    )
    assert (brief.format, brief.anchor, brief.fill, brief.margin, brief.seconds) == (
        "story", "left-third", 1.0, 0.1, 2.0,
    )  # fmt: skip
    assert brief.camera_path("SKU-1", (1080, 1920)).num_frames == 49  # 2 s at 24 fps, plus frame 0
    assert parse_brief({"prompt": "x", "format": "1000x562"}, sku="A").format == "1000x562"


def test_a_brief_without_the_new_fields_keeps_its_checksum():
    """Run keys are `<SKU>:<checksum>`: a brief written before formats existed must not run again."""
    data = {
        "prompt": "x",
        "seed": 1,
        "camera": {"path": "pan", "distance": [-40, -16]},
        "num_frames": 6,
        "fps": 6,
    }
    assert parse_brief(data, sku="A").checksum() == "df20ab13376c6619"  # as computed before this change


def test_checksum_follows_content():
    a = parse_brief({"prompt": "x", "seed": 1}, sku="A")
    assert a.checksum() == parse_brief({"seed": 1, "prompt": "x"}, sku="A").checksum()
    assert a.checksum() != parse_brief({"prompt": "x", "seed": 2}, sku="A").checksum()


@pytest.mark.parametrize(
    "data, words",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ({"promt": "typo"}, "'promt'"),
        ({"prompt": 3}, "'prompt' must be str"),
        ({"prompt": "x", "seed": "7"}, "'seed' must be int"),
        ({"prompt": "x", "seed": True}, "'seed' must be int"),
        ({"prompt": "x", "seed": -1}, "'seed'"),
        ({"prompt": "  "}, "'prompt'"),
        ({}, "'prompt'"),
        ({"prompt": "x", "fps": 0}, "'fps'"),
        ({"prompt": "x", "num_frames": 5000}, "'num_frames'"),
        ({"prompt": "x", "camera": {"path": "zoom"}}, "camera.path"),
        ({"prompt": "x", "format": "tiktok"}, "brief field 'format': `format` has to be one of square"),
        ({"prompt": "x", "format": "1081x1920"}, "but is '1081x1920'"),
        ({"prompt": "x", "format": 1080}, "'format' must be str, got int"),
        ({"prompt": "x", "anchor": "top"}, "brief field 'anchor': `anchor` has to be one of bottom, center"),
        ({"prompt": "x", "fill": 0}, "brief field 'fill': `fill` has to be in (0, 1] but is 0"),
        ({"prompt": "x", "fill": "big"}, "'fill' must be a number, got str"),
        ({"prompt": "x", "margin": 0.5}, "brief field 'margin': `margin` has to be in [0, 0.4] but is 0.5"),
        ({"prompt": "x", "seconds": 2, "num_frames": 49}, "'seconds' or as 'num_frames', not both"),
        ({"prompt": "x", "seconds": -1}, "'seconds' must be above 0"),
        ({"prompt": "x", "seconds": 100, "fps": 60}, "'seconds' gives 6001 frames at 60 fps"),
    ],
)
def test_bad_briefs_name_the_sku_and_field(data, words):
    with pytest.raises(InvalidBriefError) as err:
        parse_brief(data, sku="BAD-1")
    assert "BAD-1" in str(err.value) and words in str(err.value)


@pytest.mark.parametrize(
    "sku", ["a/b", "..", "a..b", "../etc", "has space", "a,b", "x" * 65, "", "-lead", ".hidden"]
)
def test_unsafe_sku_ids_are_rejected(sku):
    with pytest.raises(InvalidSkuError, match="not a valid id"):
        validate_sku(sku)


@pytest.mark.parametrize("sku", ["A", "SKU-123_b.v2", "9" * 64])
def test_safe_sku_ids_pass(sku):
    assert validate_sku(sku) == sku
