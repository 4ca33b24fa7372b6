"""Checks several test files make on rendered frames, written once (like `photos`, a plain helper module)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def assert_overlaps_agree(frames: Iterable[np.ndarray], records: list[dict]) -> int:
    """Consecutive frames agree exactly (difference 0) where they overlap: frame k shows frame k-1's pixel
    q at q + shift (its manifest record's `shift`). Returns how many frames were compared."""
    previous, count = None, 0
    for frame, record in zip(frames, records, strict=True):
        if previous is not None:
            dx, dy = record["shift"]
            h, w = frame.shape[:2]
            assert abs(dx) < w and abs(dy) < h, (record["index"], record["shift"])  # they do overlap
            now = frame[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
            before = previous[max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)]
            assert now.size > 0 and np.array_equal(now, before), f"frame {record['index']} changed an overlap"
        previous, count = frame, count + 1
    return count
