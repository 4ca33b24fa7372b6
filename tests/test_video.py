import imageio_ffmpeg
import numpy as np
import pytest

from prodvid_core import video


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
