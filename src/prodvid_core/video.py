"""The video: frames encoded as an H.264 MP4 that browsers play, then decoded again to prove it.

imageio-ffmpeg's wheel carries its own ffmpeg, so no system package is needed. yuv420p with even sides and
`+faststart` is what every browser and catalog CDN accepts. The container says its frame count is `inf`, so
the result is verified by decoding and counting.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from prodvid_core.errors import GenerationError

__all__ = ["VideoResult", "encode", "probe"]

CODEC = "libx264"


@dataclass
class VideoResult:
    """The MP4's bytes and what a decoder sees in them (the JSON sidecar)."""

    data: bytes
    fps: int
    frame_count: int
    size: tuple[int, int]
    codec: str = "h264"
    pix_fmt: str = "yuv420p"

    def metadata(self) -> dict:
        return {
            "fps": self.fps,
            "frame_count": self.frame_count,
            "size": list(self.size),
            "codec": self.codec,
            "pix_fmt": self.pix_fmt,
            "bytes": len(self.data),
        }


def _decode(data: bytes) -> tuple[dict, int]:
    """Decode an MP4 fully: the stream's metadata and the frames counted."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "video.mp4"
        path.write_bytes(data)
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        count = sum(1 for _ in reader)
    return meta, count


def probe(data: bytes) -> tuple[int, float, tuple[int, int]]:
    """Decode an MP4 fully: (frames counted, fps, (width, height))."""
    meta, count = _decode(data)
    return count, float(meta["fps"]), tuple(meta["size"])


def encode(frames: Iterable[np.ndarray], *, fps: int, sku: str = "", quality: int = 8) -> VideoResult:
    """Encode uint8 H×W×3 frames at `fps` as H.264 MP4 and verify the result by decoding it.

    Example:
        >>> result = video.encode(frames.load_frames(store, "MUG-1"), fps=24)
        >>> Path("mug.mp4").write_bytes(result.data)
    """
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise GenerationError(f"SKU {sku}: no frames to encode.")
    height, width = first.shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"frames have to have even sides for yuv420p but are {width}x{height}.")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "video.mp4")
        writer = imageio_ffmpeg.write_frames(
            path, (width, height), fps=fps, codec=CODEC, quality=quality, macro_block_size=2,
            pix_fmt_out="yuv420p", output_params=["-movflags", "+faststart"],
        )  # fmt: skip
        writer.send(None)
        count = 0
        for frame in itertools.chain([first], it):
            if frame.shape[:2] != (height, width):
                writer.close()
                raise ValueError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, not {width}x{height}.")
            writer.send(np.ascontiguousarray(frame))
            count += 1
        writer.close()
        data = Path(path).read_bytes()
    meta, decoded = _decode(data)
    seen = (decoded, round(meta["fps"]), tuple(meta["size"]), meta["codec"], meta["pix_fmt"].split("(")[0])
    if seen != (count, fps, (width, height), "h264", "yuv420p"):
        raise GenerationError(
            f"SKU {sku}: the encoded video decodes to {seen} (frames, fps, size, codec, pixel format) "
            f"but {count} frames at {fps} fps, {width}x{height}, h264, yuv420p were written."
        )
    return VideoResult(data=data, fps=fps, frame_count=count, size=(width, height))
