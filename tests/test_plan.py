import numpy as np
import pytest

from prodvid_core import camera
from prodvid_core.plan import GRID, MIN_BAND, plan_calls

PATHS = {
    "seed": camera.seed(),
    "pan150": camera.from_shifts([(2, 1)] * 149, fps=30),
    "drift": camera.drift(),
    "arc": camera.arc(150, 120, num_frames=60),
    "back-and-forth": camera.polyline([(0, 0), (-120, 0), (0, 0), (0, -90)], num_frames=80, ease=False),
}


def _simulate(plan):
    """Replay the plan on a pixel grid: each frame must be fully painted once its call is done."""
    x0, y0, x1, y1 = plan.bounds
    painted = np.zeros((y1 - y0, x1 - x0), dtype=bool)

    def sl(box):
        return slice(box[1] - y0, box[3] - y0), slice(box[0] - x0, box[2] - x0)

    painted[sl(plan.frame_box(0))] = True
    done = -1
    for k in range(len(plan.offsets)):
        call = plan.call_of_frame[k]
        while done < call:
            done += 1
            window = plan.calls[done].window
            new = ~painted[sl(window)]
            assert new.any(), f"call {done} paints nothing new"
            yield done, window, new
            painted[sl(window)] = True
        assert painted[sl(plan.frame_box(k))].all(), f"frame {k} not painted when written"


@pytest.mark.parametrize("name", PATHS)
@pytest.mark.parametrize("lookahead", [64, 128, 256])
def test_calls_paint_aligned_bands_at_least_64_px(name, lookahead):
    plan = plan_calls(PATHS[name], (512, 512), lookahead=lookahead, max_window=768)
    assert plan.cell == GRID  # a 512 px frame at a 512 px model: output and model pixels agree
    for _, window, new in _simulate(plan):
        assert all(v % GRID == 0 for v in window), window
        assert max(window[2] - window[0], window[3] - window[1]) <= 768
        rows, cols = np.flatnonzero(new.any(axis=1)), np.flatnonzero(new.any(axis=0))
        # every new strip that starts at a side of the window is at least MIN_BAND thick there
        full_rows = np.flatnonzero(new.all(axis=1))
        full_cols = np.flatnonzero(new.all(axis=0))
        for strip in (full_rows, full_cols):
            if len(strip):
                runs = np.split(strip, np.flatnonzero(np.diff(strip) != 1) + 1)
                assert all(len(r) >= MIN_BAND for r in runs), (window, [len(r) for r in runs])
        assert len(rows) and len(cols)


@pytest.mark.parametrize("name", PATHS)
def test_lookahead_zero_is_one_call_per_moving_frame(name):
    path = PATHS[name]
    plan = plan_calls(path, (512, 512), lookahead=0)
    moving = sum(1 for s in path.shifts if s != (0, 0))
    assert len(plan.calls) <= moving
    for call in plan.calls:
        assert plan.frame_box(call.first_frame) == call.window
    list(_simulate(plan))
    if name in ("seed", "pan150"):
        assert len(plan.calls) == len(path.shifts)


def test_lookahead_makes_few_calls():
    assert len(plan_calls(PATHS["seed"], (512, 512), lookahead=128).calls) <= 3
    assert 3 <= len(plan_calls(PATHS["pan150"], (512, 512), lookahead=128).calls) <= 6
    assert len(plan_calls(PATHS["drift"], (512, 512)).calls) == 1


def test_plan_is_a_pure_function_of_path_and_settings():
    a = plan_calls(PATHS["arc"], (256, 256), native=256, lookahead=64, max_window=384)
    b = plan_calls(PATHS["arc"], (256, 256), native=256, lookahead=64, max_window=384)
    assert a == b
    assert a != plan_calls(PATHS["arc"], (256, 256), native=256, lookahead=128, max_window=384)
    assert a != plan_calls(PATHS["arc"], (256, 256), native=512, lookahead=64, max_window=384)


def _scaled(path: camera.CameraPath, factor: int) -> camera.CameraPath:
    return camera.from_shifts([(dx * factor, dy * factor) for dx, dy in path.shifts], fps=path.fps)


@pytest.mark.parametrize("name", PATHS)
@pytest.mark.parametrize("factor", [2, 3])
def test_the_same_calls_at_every_output_size(name, factor):
    """A frame `factor` times larger on a side, its path scaled alike: the model sees the same plan."""
    small = plan_calls(PATHS[name], (512, 512), native=512)
    large = plan_calls(_scaled(PATHS[name], factor), (512 * factor, 512 * factor), native=512)
    assert large.cell == GRID * factor
    assert [c.frames for c in large.calls] == [c.frames for c in small.calls]
    assert [tuple(v * factor for v in c.window) for c in small.calls] == [c.window for c in large.calls]


@pytest.mark.parametrize("size", [(1080, 1920), (1000, 562), (1920, 1080), (1080, 1350)])
@pytest.mark.parametrize("name", ["seed", "arc", "back-and-forth"])
def test_any_frame_size_is_painted_in_bands_of_64_model_px(size, name):
    """Frame sides that are not multiples of the grid: every frame is still fully painted when written,
    and every band is at least 64 model pixels wide at the scale of its own call."""
    factor = max(1, round((size[0] * size[1]) ** 0.5 / 512))
    plan = plan_calls(_scaled(PATHS[name], factor), size, native=512)
    for _, window, new in _simulate(plan):
        w, h = window[2] - window[0], window[3] - window[1]
        assert all(v % plan.cell == 0 for v in window), window
        assert max(w, h) <= max(768 * (size[0] * size[1]) ** 0.5 / 512, max(size) + plan.cell)
        band = MIN_BAND * (w * h) ** 0.5 / 512  # model pixels at this call's scale, in output pixels
        limit = 768 * (size[0] * size[1]) ** 0.5 / 512 - plan.cell  # a window this long cannot widen
        for strip, side in ((np.flatnonzero(new.all(axis=1)), h), (np.flatnonzero(new.all(axis=0)), w)):
            if len(strip) and side < limit:
                runs = np.split(strip, np.flatnonzero(np.diff(strip) != 1) + 1)
                assert all(len(r) >= band for r in runs), (window, [len(r) for r in runs], band)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="lookahead"):
        plan_calls(PATHS["seed"], (512, 512), lookahead=-1)
    with pytest.raises(ValueError, match="max_window"):
        plan_calls(PATHS["seed"], (512, 512), max_window=4)


@pytest.mark.parametrize("native", [512, 1024])
def test_the_default_window_leaves_room_to_look_ahead_at_every_model_size(native):
    """The default largest window is 1.5 native sides: an SDXL model (1024) paints ahead as an SD one does.
    A fixed 768 was smaller than one SDXL frame, which left one call per frame, as many as lookahead 0."""
    original = plan_calls(PATHS["seed"], (1080, 1080), native=native, lookahead=0)
    default = plan_calls(PATHS["seed"], (1080, 1080), native=native)
    assert len(default.calls) * 5 <= len(original.calls)
    assert default == plan_calls(PATHS["seed"], (1080, 1080), native=native, max_window=native * 3 // 2)
