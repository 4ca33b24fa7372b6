"""The GPU never waits for the store: background writers store what the caller would have, in order."""

from __future__ import annotations

import threading

import pytest

from prodvid_core.background import Writer
from prodvid_core.brief import parse_brief
from prodvid_core.run import Settings, generate_many
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore

SETTINGS = Settings(size=128, steps=1, lookahead=16).with_preset("tiny")


def test_a_writer_keeps_order_and_stops_after_a_failed_job():
    done, caller = [], threading.get_ident()

    def job(name: str) -> None:
        assert threading.get_ident() != caller  # on the writer's thread, not the caller's
        if name == "manifest-1":
            raise OSError("the store went away")
        done.append(name)

    writer = Writer("test", backlog=8)
    for name in ("world-0", "manifest-0", "world-1", "manifest-1", "world-2", "manifest-2"):
        writer.submit(job, name)
    with pytest.raises(OSError, match="went away"):
        writer.drain()
    writer.close()
    assert done == ["world-0", "manifest-0", "world-1"]  # nothing after the failed write


def test_overlapped_writes_store_the_same_bytes_and_report_gpu_idle(tiny_pipe, tmp_path):
    photo = sample_photo_bytes(size=(300, 400))
    inputs = {
        f"O-{i}": (photo, parse_brief({"prompt": "a cup", "seed": i, "num_frames": 6}, sku=f"O-{i}"))
        for i in range(2)
    }
    stores = {overlap: LocalStore(tmp_path / str(overlap)) for overlap in (False, True)}
    results = {
        overlap: generate_many(stores[overlap], inputs, SETTINGS, overlap=overlap) for overlap in stores
    }
    keys = stores[False].list()
    assert stores[True].list() == keys and any(k.endswith(".mp4") for k in keys)
    for key in keys:
        assert stores[True].read_bytes(key) == stores[False].read_bytes(key), key
    for result in results[True].values():
        assert result.frames.calls_made >= 1 and 0 < result.frames.gpu_idle_seconds < result.frames.seconds
        assert not result.video_reused and result.video.frame_count == 6
