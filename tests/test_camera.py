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


S512 = (512, 512)


def test_from_spec_builds_each_path_and_overrides_frames_and_fps():
    assert camera.from_spec(None, sku="A", frame_size=S512).num_frames == 48
    assert camera.from_spec({"path": "seed"}, sku="A", frame_size=S512).fps == 10
    assert camera.from_spec({"path": "seed"}, sku="A", frame_size=S512, num_frames=5).shifts == ((5, 10),) * 4
    spec = {"path": "pan", "distance": [-90, 0]}
    p = camera.from_spec(spec, sku="A", frame_size=S512, num_frames=31, fps=30)
    assert (p.num_frames, p.fps, p.offsets()[-1]) == (31, 30, (-90, 0))
    p = camera.from_spec({"path": "shifts", "shifts": [[1, 2], [3, 4]]}, sku="A", frame_size=S512)
    assert p.shifts == ((1, 2), (3, 4))
    spec = {"path": "polyline", "points": [[0, 0], [-40, 0], [-40, -40]]}
    assert camera.from_spec(spec, sku="A", frame_size=S512).offsets()[-1] == (-40, -40)


# The paths as they were before frame sizes existed (designed at 512 px): a brief that names them, or leaves
# out a pan's distance or an arc's radius, gets exactly these at 512x512.
BEFORE = {
    "drift": camera.pan((-64, -32), ease=True),
    "seed": camera.CameraPath(shifts=((5, 10),) * 10 + ((10, 5),) * 10, fps=10),
    "pan": camera.pan((-64, -32)),
    "arc": camera.arc(96, 90),
}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_built_in_paths_at_512_are_what_they_always_were(name):
    assert camera.from_spec({"path": name}, sku="A", frame_size=S512) == BEFORE[name]
    assert camera.drift() == BEFORE["drift"] and camera.seed() == BEFORE["seed"]


@pytest.mark.parametrize("size", [(1080, 1920), (1920, 1080), (1000, 562), (256, 448)])
def test_built_in_paths_scale_per_axis_to_the_frame(size):
    w, h = size
    for name, end in (("seed", (150, 150)), ("drift", (-64, -32)), ("pan", (-64, -32))):
        path = camera.from_spec({"path": name}, sku="A", frame_size=size)
        assert path.num_frames == BEFORE[name].num_frames and path.fps == BEFORE[name].fps
        assert path.offsets()[-1] == (round(end[0] * w / 512), round(end[1] * h / 512)), name
        assert all(isinstance(c, int) for s in path.shifts for c in s)
    seed = camera.from_spec({"path": "seed"}, sku="A", frame_size=size).offsets()
    for k, (x, y) in enumerate(BEFORE["seed"].offsets()):  # cumulative rounding: never off by more than 0.5
        assert abs(seed[k][0] - x * w / 512) <= 0.5 and abs(seed[k][1] - y * h / 512) <= 0.5
    arc = camera.from_spec({"path": "arc", "ease": False}, sku="A", frame_size=size)
    assert arc.offsets()[-1] == (round(96 * min(size) / 512),) * 2


def test_distances_up_to_1_are_fractions_of_the_frame_larger_ones_pixels():
    spec = {"path": "pan", "distance": [-0.1, 0.05]}
    assert camera.from_spec(spec, sku="A", frame_size=(1000, 562)).offsets()[-1] == (-100, 28)
    assert camera.from_spec(spec, sku="A", frame_size=(1080, 1920)).offsets()[-1] == (-108, 96)
    spec = {"path": "pan", "distance": [-120, 1]}  # -120 px; 1 is the whole height
    assert camera.from_spec(spec, sku="A", frame_size=(1080, 1920)).offsets()[-1] == (-120, 1920)
    spec = {"path": "polyline", "points": [[0, 0], [-0.5, 0], [-0.5, -40]], "ease": False}
    assert camera.from_spec(spec, sku="A", frame_size=(256, 448)).offsets()[-1] == (-128, -40)
    spec = {"path": "arc", "radius": 0.25, "degrees": 90, "ease": False}
    assert camera.from_spec(spec, sku="A", frame_size=(1080, 1920)).offsets()[-1] == (270, 270)
    spec = {"path": "shifts", "shifts": [[1, 0], [0, 1]]}  # shifts are pixels, always
    assert camera.from_spec(spec, sku="A", frame_size=(1080, 1920)).shifts == ((1, 0), (0, 1))


def test_seconds_give_the_frame_count_at_the_frame_rate():
    assert camera.from_spec(None, sku="A", frame_size=S512, seconds=2).num_frames == 49  # 24 fps
    p = camera.from_spec(None, sku="A", frame_size=S512, seconds=2.5, fps=12)
    assert (p.num_frames, p.fps) == (31, 12)
    p = camera.from_spec({"path": "seed"}, sku="A", frame_size=S512, seconds=1)
    assert (p.num_frames, p.fps) == (11, 10)
    with pytest.raises(InvalidBriefError, match="SKU A: give the video's length as 'seconds' or as"):
        camera.from_spec(None, sku="A", frame_size=S512, seconds=2, num_frames=49)
    with pytest.raises(InvalidBriefError, match="'seconds' must be above 0"):
        camera.from_spec(None, sku="A", frame_size=S512, seconds=0)
    with pytest.raises(ValueError, match="`frame_size` has to be"):
        camera.from_spec(None, sku="A", frame_size=(0, 512))


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
        camera.from_spec(spec, sku="SKU-9", frame_size=S512)
    assert "SKU-9" in str(err.value) and words in str(err.value)
