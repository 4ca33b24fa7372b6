import pytest

from prodvid_core import camera
from prodvid_core.errors import InvalidBriefError


def test_seed_path_is_the_original_method():
    path = camera.seed()
    assert path.fps == 10
    assert path.shifts == ((5, 10),) * 10 + ((10, 5),) * 10
    assert path.num_frames == 21
    assert path.offsets()[-1] == (150, 150)


@pytest.mark.parametrize(
    "path",
    [
        camera.pan((-301, 17), num_frames=150, fps=30),
        camera.pan((-301, 17), num_frames=150, fps=30, ease=True),
        camera.polyline([(0, 0), (-100.3, 0), (-100.3, -50.7)], num_frames=97),
        camera.arc(123.4, 77, num_frames=61),
        camera.drift(),
    ],
)
def test_smooth_paths_are_whole_pixels_without_drift(path):
    offsets = path.offsets()
    assert all(isinstance(c, int) for s in path.shifts for c in s)
    # Cumulative rounding: the last offset is the rounded end point, never off by accumulated error.
    assert offsets[0] == (0, 0)
    assert len(offsets) == path.num_frames


def test_pan_ends_exactly_at_its_distance():
    path = camera.pan((-301, 17), num_frames=150, fps=30)
    assert path.offsets()[-1] == (-301, 17)
    assert max(abs(dx) for dx, _ in path.shifts) <= 3


def test_eased_move_starts_and_stops_slowly():
    path = camera.pan((-200, 0), num_frames=60, ease=True)
    speeds = [abs(dx) for dx, _ in path.shifts]
    assert speeds[0] <= 1 and speeds[-1] <= 1
    assert max(speeds) >= 4


def test_arc_bends():
    offsets = camera.arc(100, 90, num_frames=50, ease=False).offsets()
    assert offsets[-1] == (100, 100)
    assert offsets[25][0] > 50  # a straight line would be at ~50


def test_from_spec_builds_each_path_and_overrides_frames_and_fps():
    assert camera.from_spec(None, sku="A").num_frames == 48
    assert camera.from_spec({"path": "seed"}, sku="A").fps == 10
    assert camera.from_spec({"path": "seed"}, sku="A", num_frames=5).shifts == ((5, 10),) * 4
    p = camera.from_spec({"path": "pan", "distance": [-90, 0]}, sku="A", num_frames=31, fps=30)
    assert (p.num_frames, p.fps, p.offsets()[-1]) == (31, 30, (-90, 0))
    p = camera.from_spec({"path": "shifts", "shifts": [[1, 2], [3, 4]]}, sku="A")
    assert p.shifts == ((1, 2), (3, 4))
    p = camera.from_spec({"path": "polyline", "points": [[0, 0], [-40, 0], [-40, -40]]}, sku="A")
    assert p.offsets()[-1] == (-40, -40)


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"path": "zoom"}, "camera.path"),
        ({"path": "pan", "speed": 3}, "camera.speed"),
        ({"path": "pan", "distance": "far"}, "camera.distance"),
        ({"path": "arc", "radius": True}, "camera.radius"),
        ({"path": "shifts", "shifts": [[1.5, 0]]}, "whole pixels"),
        ({"path": "shifts", "shifts": [[1]]}, "pairs"),
        ({"path": "polyline", "points": [[0, 0]]}, "two points"),
    ],
)
def test_bad_specs_name_the_sku_and_field(spec, words):
    with pytest.raises(InvalidBriefError) as err:
        camera.from_spec(spec, sku="SKU-9")
    assert "SKU-9" in str(err.value) and words in str(err.value)
