"""Fingerprints: what decides each frame's pixels, hashed, so a change invalidates only from the first frame
it affects.

The world after call c depends on the settings, the hero image and calls 0..c (windows and first frames,
which fix the seeds); frame k depends on the world after the call that completes it and on its own offset.
So extending a path, or changing its end, keeps every frame painted before the first call that differs. The
frame rate only times the frames and is left out, as are settings that never change a pixel.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from prodvid_core.encoding import sha256
from prodvid_core.plan import Plan

if TYPE_CHECKING:
    from prodvid_core.frames import FrameSettings

__all__ = ["Fingerprints", "VERSION"]

VERSION = 3  # 2: frames rendered from the world, sha256 of raw RGB pixels; 3: calls painted in buckets
NOT_PIXELS = ("max_retries",)  # FrameSettings fields that never change a pixel


class Fingerprints:
    """The fingerprints of one video's worlds (after each call), frames and the whole video."""

    def __init__(self, settings: FrameSettings, plan: Plan, hero_sha256: str):
        spec = {k: v for k, v in asdict(settings).items() if k not in NOT_PIXELS}
        spec.update(size=list(plan.frame_size), hero=hero_sha256, v=VERSION)
        self._worlds = [sha256(json.dumps(spec, sort_keys=True).encode())]  # [c + 1]: after call c
        for call in plan.calls:
            self._worlds.append(sha256(f"{self._worlds[-1]}|{call.window}|{call.first_frame}".encode()))
        self.frames = [
            sha256(f"{self._worlds[c + 1]}|{offset}".encode())
            for c, offset in zip(plan.call_of_frame, plan.offsets, strict=True)
        ]

    def world(self, call: int) -> str:
        """The world after `call` (-1: the hero image alone)."""
        return self._worlds[call + 1]

    def worlds_through(self, call: int) -> list[str]:
        """The worlds after the hero image and calls 0..`call`, as a checkpoint records them."""
        return self._worlds[: call + 2]

    @property
    def video(self) -> str:
        return sha256("|".join(self.frames).encode())
