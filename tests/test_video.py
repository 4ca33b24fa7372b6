import imageio_ffmpeg
import numpy as np
import pytest

from prodvid_core import layout, video
from prodvid_core.brief import parse_brief
from prodvid_core.run import Settings, generate_sku
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore


def _frames(n, w=96, h=64):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("n, fps", [(1, 24), (21, 10), (48, 24), (150, 30)])
def test_mp4_decodes_to_the_frames_written(n, fps, tmp_path):
    result = video.encode(_frames(n), fps=fps, sku="V")
    assert (result.frame_count, result.fps, result.size) == (n, fps, (96, 64))
    path = tmp_path / "v.mp4"
    path.write_bytes(result.data)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    decoded = list(reader)
    assert len(decoded) == n
    assert (meta["codec"], meta["pix_fmt"].split("(")[0], meta["fps"], meta["size"]) == (
        "h264",
        "yuv420p",
        fps,
        (96, 64),
    )
    assert video.probe(result.data) == (n, float(fps), (96, 64))
    assert result.data[4:8] == b"ftyp"
    # faststart: the index (moov) comes before the media data, so browsers start playing at once
    assert result.data.index(b"moov") < result.data.index(b"mdat")


def test_decoded_frames_look_like_the_input(tmp_path):
    frames = [np.full((64, 64, 3), v, np.uint8) for v in (0, 128, 255)]
    path = tmp_path / "v.mp4"
    path.write_bytes(video.encode(frames, fps=8).data)
    decoded = [np.frombuffer(b, np.uint8) for b in list(imageio_ffmpeg.read_frames(str(path)))[1:]]
    means = [float(d.mean()) for d in decoded]
    assert means[0] < 20 and 110 < means[1] < 145 and means[2] > 235


def test_odd_sides_and_mismatched_frames_are_refused():
    with pytest.raises(ValueError, match="even"):
        video.encode(_frames(2, w=95), fps=24)
    with pytest.raises(ValueError, match="frame 1"):
        video.encode([np.zeros((64, 64, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)], fps=24)


def test_the_video_is_reused_only_for_the_same_frames_and_rate(tiny_pipe, tmp_path):
    store, photo = LocalStore(tmp_path), sample_photo_bytes(size=(300, 400))
    settings = Settings(size=256, steps=2, device="cpu").with_preset("tiny")
    brief = {"prompt": "a bottle on a table", "num_frames": 6, "fps": 12}
    first = generate_sku(store, "V-1", photo, parse_brief(brief, sku="V-1"), settings)
    again = generate_sku(store, "V-1", photo, parse_brief(brief, sku="V-1"), settings)
    assert not first.video_reused and again.video_reused and again.video.data == first.video.data

    # another frame rate: the same frames, encoded again
    faster = generate_sku(store, "V-1", photo, parse_brief({**brief, "fps": 24}, sku="V-1"), settings)
    assert not faster.video_reused and faster.frames.calls_made == 0
    assert video.probe(faster.video.data)[1] == 24

    # a damaged MP4 is encoded again, never handed on
    store.write_bytes(layout.video_mp4("V-1"), faster.video.data[:-100])
    repaired = generate_sku(store, "V-1", photo, parse_brief({**brief, "fps": 24}, sku="V-1"), settings)
    assert not repaired.video_reused and store.read_bytes(layout.video_mp4("V-1")) == faster.video.data
