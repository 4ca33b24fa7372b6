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
    path = brief.camera_path("SKU-1")
    assert (path.num_frames, path.fps) == (11, 12)


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
