"""A crash at the exact moments the random SIGKILLs of `test_crash_cli.py` rarely hit: a process that dies
just before one chosen write leaves a store `crashcheck.store_problems` finds consistent (that the same run
again stores what an uninterrupted run stores, the harness checks). The death is a `BaseException` the
store raises instead of writing, so nothing after it runs, as with SIGKILL."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
from PIL import Image

from crashcheck import store_problems
from prodvid_core import artifacts, layout
from prodvid_core.brief import parse_brief
from prodvid_core.hero import HeroResult
from prodvid_core.run import Settings, generate_sku
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore

SKU = "POINT-1"
SETTINGS = Settings(format="128x96", steps=2, device="cpu", lookahead=16).with_preset("tiny")
PHOTO = sample_photo_bytes(size=(300, 400))


class Died(BaseException):
    """The process died here (not an `Exception`: nothing may catch it and go on)."""


class DiesBefore(LocalStore):
    """A local store whose process dies just before writing `key` (or deleting it, with `delete`)."""

    def __init__(self, root, key: str, *, delete: bool = False):
        super().__init__(root)
        self.key, self.on_delete = key, delete

    def write_bytes(self, key: str, data: bytes) -> None:
        if key == self.key and not self.on_delete:
            raise Died(key)
        super().write_bytes(key, data)

    def _delete(self, key: str) -> None:
        if key == self.key and self.on_delete:
            raise Died(key)
        super()._delete(key)


def _brief(seed: int):
    camera = {"path": "pan", "distance": [-0.5, 0]}
    return parse_brief(
        {"prompt": "a bottle on a table", "seed": seed, "num_frames": 4, "camera": camera}, sku=SKU
    )


def _run(store: LocalStore, seed: int = 5, keep_frames: bool = False) -> None:
    generate_sku(store, SKU, PHOTO, _brief(seed), replace(SETTINGS, keep_frames=keep_frames))


def test_the_hero_sidecar_holds_no_wall_clock_time(tmp_path):
    """Two runs that paint the same hero image store the same bytes (a crash before the sidecar is written
    makes the re-run paint it again)."""
    hero = HeroResult(Image.new("RGB", (8, 8)), "m", "p", "", 1, 2, 7.5, attempts=1, seconds=0.25)
    stored = []
    for n, seconds in enumerate((0.25, 9.5)):
        store = LocalStore(tmp_path / str(n))
        artifacts.save_hero(store, SKU, replace(hero, seconds=seconds))
        stored.append(store.read_bytes(layout.hero_json(SKU)))
    assert stored[0] == stored[1]


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A store holding an earlier run of the SKU: seed 6, frame PNGs kept."""
    root = tmp_path_factory.mktemp("points") / "earlier"
    _run(LocalStore(root), seed=6, keep_frames=True)
    return root


@pytest.mark.parametrize(
    ("key", "delete"),
    [
        (layout.hero_json(SKU), False),  # the new hero PNG is stored, the old sidecar is not replaced yet
        (layout.video_json(SKU), False),  # the same for the video
        (layout.frame_png(SKU, 3), True),  # the old frame PNGs are being deleted, the old manifest lists them
    ],
)
def test_a_crash_over_an_earlier_run_leaves_a_consistent_store(key, delete, earlier, tmp_path):
    shutil.copytree(earlier, tmp_path / "store")
    with pytest.raises(Died):
        _run(DiesBefore(tmp_path / "store", key, delete=delete))
    assert store_problems(tmp_path / "store") == []
