"""Property-based tests: arbitrary JSON-ish briefs, camera specs and settings either parse or raise a
`ProdvidError`, never another exception, and every camera path that parses respects the bounds.

Small example counts by default (CI); more with `PRODVID_HYPOTHESIS=full` (1,000 per test), e.g.
`PRODVID_HYPOTHESIS=full pytest tests/test_properties.py -q`.
"""

from __future__ import annotations

import contextlib
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prodvid_core import camera, formats
from prodvid_core.brief import decode_brief, parse_brief
from prodvid_core.errors import ProdvidError
from prodvid_core.settings import Settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile(
    "full", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("PRODVID_HYPOTHESIS", "ci"))

NUMBERS = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, -0.125, 1e9, -1e9, 1e400, 2**63, 10**30]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20))
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
PAIRS = st.lists(st.one_of(st.lists(NUMBERS, min_size=2, max_size=2), JSONISH), max_size=8)
CAMERA = st.one_of(
    st.fixed_dictionaries(
        {"path": st.sampled_from([*camera.PATHS, "zoom"])},
        optional={
            "distance": st.one_of(st.lists(NUMBERS, min_size=2, max_size=2), JSONISH),
            "points": PAIRS,
            "shifts": PAIRS,
            "radius": NUMBERS,
            "degrees": NUMBERS,
            "ease": st.one_of(st.booleans(), JSONISH),
        },
    ),
    st.dictionaries(st.text(max_size=8), JSONISH, max_size=4),
)
BRIEF_FIELDS = {
    "prompt": st.one_of(st.text(max_size=200), JSONISH),
    "negative_prompt": st.one_of(st.text(max_size=50), JSONISH),
    "seed": NUMBERS,
    "camera": st.one_of(CAMERA, JSONISH),
    "num_frames": NUMBERS,
    "fps": NUMBERS,
    "seconds": NUMBERS,
    "format": st.one_of(st.sampled_from([*formats.PRESETS, "256x256", "1x1", "100000x2"]), JSONISH),
    "anchor": st.one_of(st.sampled_from(formats.ANCHORS), JSONISH),
    "fill": NUMBERS,
    "margin": NUMBERS,
}
BRIEFS = st.one_of(
    st.fixed_dictionaries({}, optional=BRIEF_FIELDS),
    st.dictionaries(st.text(max_size=10), JSONISH, max_size=4),
    JSONISH,
)
FRAME = st.sampled_from([(64, 64), (256, 448), (512, 512), (1080, 1920), (3840, 2160)])


def _assert_bounded(path: camera.CameraPath, frame: tuple[int, int]) -> None:
    assert 1 <= path.num_frames <= camera.MAX_FRAMES
    for index, side in enumerate(frame):
        positions = [offset[index] for offset in path.offsets()]
        assert max(positions) - min(positions) + side <= camera.MAX_WORLD * side
        assert all(abs(shift[index]) <= camera.MAX_STEP * side for shift in path.shifts)


@given(BRIEFS)
def test_a_brief_parses_or_is_a_prodvid_error(data):
    try:
        brief = parse_brief(data, sku="P-1")
    except ProdvidError:
        return
    frame = formats.parse_format(brief.format or formats.DEFAULT_FORMAT).size
    _assert_bounded(brief.camera_path("P-1", frame), frame)


@given(st.one_of(st.binary(max_size=200), BRIEFS.map(lambda d: json.dumps(d).encode())))
def test_brief_bytes_decode_or_are_a_prodvid_error(data):
    for candidate in (data, b"\xef\xbb\xbf" + data):
        with contextlib.suppress(ProdvidError):
            assert isinstance(decode_brief(candidate, sku="P-1"), dict)


@given(CAMERA, FRAME, st.one_of(st.none(), NUMBERS), st.one_of(st.none(), NUMBERS))
def test_a_camera_spec_builds_a_bounded_path_or_is_a_prodvid_error(spec, frame, num_frames, fps):
    try:
        path = camera.from_spec(spec, sku="P-1", frame_size=frame, num_frames=num_frames, fps=fps)
    except ProdvidError:
        return
    _assert_bounded(path, frame)


SETTING_VALUES = st.one_of(
    SCALARS, st.sampled_from(["tiny", "cuda", "cpu", "auto", "euler", "float16", "story"])
)
SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        name: SETTING_VALUES
        for name in (
            "hero_model",
            "frames_model",
            "device",
            "dtype",
            "scheduler",
            "format",
            "size",
            "anchor",
            "fill",
            "margin",
            "steps",
            "guidance",
            "lookahead",
            "max_window",
            "model_size",
            "batch_size",
            "keep_frames",
        )
    },  # fmt: skip
)


@given(SETTINGS)
def test_settings_are_valid_or_a_prodvid_error(values):
    try:
        made = Settings(**values)
    except ProdvidError:
        return
    formats.parse_format(made.format)  # what a run reads first


ENV = st.dictionaries(
    st.sampled_from(["STEPS", "GUIDANCE", "SIZE", "FORMAT", "SCHEDULER", "DEVICE", "KEEP_FRAMES", "PRESET"]),
    st.one_of(st.text(max_size=12), st.sampled_from(["1", "0", "nan", "inf", "-5", "1e9", "tiny", "cuda"])),
    max_size=4,
)


@given(ENV)
def test_settings_from_env_are_valid_or_a_prodvid_error(env):
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(f"PRODVID_{name}", value.replace("\x00", ""))
        with contextlib.suppress(ProdvidError):
            Settings.from_env()
