"""The IO manager: each asset's value as the files of the storage layout (PNG, MP4, JSON), never pickles.

Every prodvid asset's value is a `dict` keyed by SKU, one entry per partition the step covers: one for a
normal run, many for a single-run backfill. The IO manager stores and loads each entry through
`prodvid_core.artifacts`, so the files are the same ones the CLI writes:

| asset | value per SKU | files |
|---|---|---|
| `expanded_canvas` | `canvas.Canvas` | `expanded_canvas/<SKU>.png` + `.json` |
| `mask` | PIL image, mode L | `mask/<SKU>.png` |
| `hero_image` | `hero.HeroResult` | `hero_image/<SKU>.png` + `.json` (written by `run.make_heroes`) |
| `frames` | `frames.FrameSet` | `frames/<SKU>/world.png` + `manifest.json` (after each call) |
| `video` | `video.VideoResult` | `video/<SKU>.mp4` + `.json` (written by `run.make_video`) |

Frames are rendered from the world and manifest where they are needed; `00000.png …` are stored too only
with `keep_frames`, and then `FrameSet.keys` lists them. The hero image, the frames and the video are
stored by the core as they are made (that is what lets a re-run reuse them); for those three the IO manager
only confirms the files are there (`FrameSet.keys`).
"""

import contextlib
from collections.abc import Callable, Iterator

import dagster as dg

from prodvid_core import artifacts, layout
from prodvid_core.errors import ProdvidError
from prodvid_core.frames import FrameSet, load_frame_set
from prodvid_core.storage import ObjectStore
from prodvid_dagster.resources import StoreResource

__all__ = ["ObjectStoreIOManager"]


def _require(store: ObjectStore, sku: str, keys: list[str]) -> None:
    missing = [k for k in keys if not store.exists(k)]
    if missing:
        raise FileNotFoundError(f"SKU {sku}: expected the core to have stored {', '.join(missing)}.")


def _confirm_hero(store: ObjectStore, sku: str, _value) -> None:
    _require(store, sku, [layout.hero_png(sku), layout.hero_json(sku)])


def _confirm_video(store: ObjectStore, sku: str, _value) -> None:
    _require(store, sku, [layout.video_mp4(sku), layout.video_json(sku)])


def _confirm_frames(store: ObjectStore, sku: str, value: FrameSet) -> None:
    stored = set(store.list(layout.frames_prefix(sku)))  # one listing, not a request per frame
    missing = [k for k in (layout.frames_manifest(sku), *value.keys) if k not in stored]
    if missing:
        raise FileNotFoundError(f"SKU {sku}: expected the core to have stored {', '.join(missing[:5])}.")


_SAVE: dict[str, Callable[[ObjectStore, str, object], object]] = {
    "expanded_canvas": artifacts.save_canvas,
    "mask": artifacts.save_mask,
    "hero_image": _confirm_hero,
    "frames": _confirm_frames,
    "video": _confirm_video,
}
_LOAD: dict[str, Callable[[ObjectStore, str], object]] = {
    "expanded_canvas": artifacts.load_canvas,
    "mask": artifacts.load_mask,
    "hero_image": artifacts.load_hero,
    "frames": load_frame_set,
    "video": artifacts.load_video,
}


def _asset_name(context: dg.OutputContext | dg.InputContext) -> str:
    name = context.asset_key.path[-1]
    if name not in _LOAD:
        raise dg.DagsterInvariantViolationError(
            f"ObjectStoreIOManager has no file layout for asset {name!r}."
        )
    if not context.has_asset_partitions:
        raise dg.DagsterInvariantViolationError(
            f"ObjectStoreIOManager stores SKU partitions; {name!r} has none."
        )
    return name


@contextlib.contextmanager
def _one_line() -> Iterator[None]:
    """A store that fails (once botocore's retries are spent) fails the step with its one line, which names
    the SKU and the object's key, rather than under Dagster's "Error occurred while handling output"."""
    try:
        yield
    except ProdvidError as e:
        raise dg.Failure(description=str(e)) from None  # the line says all (see assets._user_errors)


class ObjectStoreIOManager(dg.ConfigurableIOManager):
    """Stores and loads prodvid's assets as files in the object store (see the module docstring)."""

    store: dg.ResourceDependency[StoreResource]

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        name = _asset_name(context)
        skus = list(context.asset_partition_keys)
        if not isinstance(obj, dict) or sorted(obj) != sorted(skus):
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise dg.DagsterInvariantViolationError(
                f"Asset {name!r} must return a dict keyed by the step's SKUs {sorted(skus)}, got {got}."
            )
        store = self.store.open()
        with _one_line():
            for sku in skus:
                _SAVE[name](store, sku, obj[sku])

    def load_input(self, context: dg.InputContext) -> dict:
        name = _asset_name(context)
        store = self.store.open()
        with _one_line():
            return {sku: _LOAD[name](store, sku) for sku in context.asset_partition_keys}
