"""What a SIGKILL may leave in a local store, checked (a plain helper module, like `checks`): the CLI and the
Dagster crash harnesses (`test_crash_cli.py`, `dagster/test_dg_crash.py`) ask the same questions after
every kill.

1. No partial object under a final name: every file whose name does not start with `.` is complete (a PNG
   loads whole, a JSON parses, an MP4 decodes with imageio-ffmpeg). Files named `.<name>.<random>.tmp` are
   the temp files of writes cut short: the store's listing never shows them.
2. The objects agree: every frame the manifest lists renders from the stored world with its sha256 (the
   project's own `load_frames`), a kept frame PNG shows the frame listed, and each sidecar's sha256 is the
   one of the file it describes.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from prodvid_core import layout
from prodvid_core.encoding import sha256
from prodvid_core.manifest import frame_sha256, read_manifest
from prodvid_core.render import load_frames
from prodvid_core.storage import LocalStore
from prodvid_core.video import probe

__all__ = ["SEED", "final_files", "temp_files", "store_problems", "phase", "log_trial"]

SEED = int(os.environ.get("PRODVID_CRASH_SEED", "9"))  # every trial's kill moment is drawn from it


def final_files(root: Path) -> dict[str, bytes]:
    """Every file under a final name (no `.` at the start of its name), by key, with its bytes."""
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def temp_files(root: Path) -> list[str]:
    """The temp files interrupted writes left (`.`-names), by key."""
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*") if p.is_file())


def _whole(key: str, data: bytes) -> str | None:
    """Why the object under `key` is not complete, or None if it is."""
    try:
        if key.endswith(".png"):
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        elif key.endswith(".json"):
            json.loads(data)
        elif key.endswith(".mp4"):
            count, _, _ = probe(data)
            if count < 1:
                return "decodes to no frame"
        else:
            return "is no kind of object prodvid writes"
    except Exception as e:  # any failure to read back is the finding
        return f"does not read back: {type(e).__name__}: {e}"
    return None


def _sidecar_problems(files: dict[str, bytes], sidecar: str, described: str) -> list[str]:
    if sidecar not in files:
        return []
    if described not in files:
        return [f"{sidecar} describes {described}, which is not stored"]
    meta = json.loads(files[sidecar])
    if meta.get("sha256") != sha256(files[described]):
        return [f"{sidecar}'s sha256 is not the one of {described}"]
    return []


def _frames_problems(store: LocalStore, files: dict[str, bytes], sku: str) -> list[str]:
    manifest = read_manifest(store, sku)
    if manifest is None:
        return []
    try:
        rendered = list(load_frames(store, sku, manifest))  # each checked against its sha256
    except Exception as e:
        return [f"SKU {sku}: the manifest's frames do not render from the world: {e}"]
    problems = []
    if len(rendered) != len(manifest["frames"]):
        problems.append(f"SKU {sku}: {len(rendered)} frames rendered, {len(manifest['frames'])} listed")
    if [r["index"] for r in manifest["frames"]] != list(range(len(manifest["frames"]))):
        problems.append(f"SKU {sku}: the manifest's frames are not 0..n-1")
    for record in manifest["frames"] if manifest.get("keep_frames") else []:
        key = layout.frame_png(sku, record["index"])
        if key not in files:
            problems.append(f"{key} is listed (keep_frames) but not stored")
            continue
        pixels = np.asarray(Image.open(io.BytesIO(files[key])).convert("RGB"))
        if frame_sha256(pixels) != record["sha256"]:
            problems.append(f"{key} does not show the frame its manifest lists")
    return problems


def store_problems(root: Path) -> list[str]:
    """Everything wrong with the store at `root` after a kill (checks 1 and 2 above); [] when consistent."""
    store, files = LocalStore(root), final_files(root)
    problems = [f"{key} {why}" for key, data in files.items() if (why := _whole(key, data))]
    listed = set(store.list())
    problems += [f"{key} (a temp file) is listed by the store" for key in temp_files(root) if key in listed]
    if problems:
        return problems  # the agreement checks below assume whole objects
    skus = {key.split("/")[1].removesuffix(".png") for key in files if key.startswith("expanded_canvas/")}
    skus |= {key.split("/")[1] for key in files if key.startswith("frames/")}
    for sku in sorted(skus):
        problems += _sidecar_problems(files, layout.canvas_json(sku), layout.canvas_png(sku))
        problems += _sidecar_problems(files, layout.hero_json(sku), layout.hero_png(sku))
        problems += _sidecar_problems(files, layout.video_json(sku), layout.video_mp4(sku))
        problems += _frames_problems(store, files, sku)
    return problems


def phase(root: Path, sku: str, since: float) -> str:
    """What the killed run was doing, from what it had written since `since` (`time.time()` at its start;
    every write is a new file moved into place, so its mtime is the write's time)."""
    written = {
        p.relative_to(root).as_posix()
        for p in (root.rglob("*") if root.is_dir() else [])
        if p.is_file() and not p.name.startswith(".") and p.stat().st_mtime >= since
    } - {key for key in final_files(root) if key.startswith("inbox/")}
    manifest = read_manifest(LocalStore(root), sku) if layout.frames_manifest(sku) in written else None
    if layout.video_json(sku) in written:
        return "exit"
    if layout.video_mp4(sku) in written:
        return "video sidecar"
    if manifest is not None and len(manifest["frames"]) == manifest["num_frames"]:
        return "video"
    if manifest is not None:
        return f"frames {len(manifest['frames'])}/{manifest['num_frames']}"
    if layout.world_checkpoint(sku) in written or layout.hero_json(sku) in written:
        return "frames 0"
    if layout.hero_png(sku) in written:
        return "hero sidecar"
    if layout.mask_png(sku) in written:
        return "hero"
    return "canvas" if written else "start"


def log_trial(record: dict) -> None:
    """Append a trial's record to `PRODVID_CRASH_LOG` (one JSON line), if set: the figures come from it."""
    if path := os.environ.get("PRODVID_CRASH_LOG"):
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def summary(lines: list[dict]) -> str:
    """The figures of a `PRODVID_CRASH_LOG` file: trials, kills by phase, objects lost or corrupted."""
    killed = [r for r in lines if r["killed"]]
    phases: dict[str, int] = {}
    for r in killed:
        where = r["phase"].split(" ")[0] if r["phase"].startswith("frames") else r["phase"]
        if r.get("step"):
            where = f"{r['step']} step, {where}"
        phases[where] = phases.get(where, 0) + 1
    checks = ("problems_after_kill", "problems_after_rerun", "problems_after_retry", "differing")
    bad = [r for r in lines if any(r.get(c) for c in checks) or "differing" not in r]  # or never compared
    seconds = sorted(r["seconds"] for r in lines)
    median = seconds[len(seconds) // 2]
    aims = Counter(r.get("aim", "-") for r in lines)
    return "\n".join(
        [
            f"trials: {len(lines)}, killed mid-run: {len(killed)} (the others had finished: exit)",
            "aimed at: " + ", ".join(f"{k} {v}" for k, v in sorted(aims.items())),
            "kills by phase: " + ", ".join(f"{k} {v}" for k, v in sorted(phases.items())),
            f"temp files left by killed writes: {sum(r['temp_files'] for r in lines)}",
            f"trials with an object lost, partial, inconsistent or differing after the re-run: {len(bad)}",
            f"seconds per trial: median {median}, max {seconds[-1]}, total {sum(seconds):.0f}",
        ]
    )


if __name__ == "__main__":  # python tests/crashcheck.py build/crash-cli.jsonl
    import sys

    print(summary([json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line]))
