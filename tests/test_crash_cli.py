"""Crash consistency of `prodvid generate`, measured: a real subprocess SIGKILLed at seeded random moments.

Each trial runs the command in a store of its own and kills its process group with SIGKILL at a moment
drawn uniformly (seeded) within one phase, the phases in turn: imports, checks and canvas; the hero image;
the frames' diffusion calls and world writes; the video's encoding. The moment is counted from the file
that begins the phase, over the phase's length in an uninterrupted run (timed from the files it stores)
scaled by the trial's own pace. Then:

1. nothing partial is stored under a final name, and the manifest agrees with the stored objects
   (`crashcheck.store_problems`);
2. the same command run again exits 0, and every file it leaves is byte for byte the one an uninterrupted
   run stores.

Trials come in three kinds, in turn: a fresh store; a store that holds an earlier run of the SKU with
another seed and kept frame PNGs (the re-run a catalog team makes); a fresh store with `--keep-frames`.
`PRODVID_CRASH_TRIALS` sets the count (1 by default, for CI; docs/reliability.md has the full count),
`PRODVID_CRASH_SEED` the seed, `PRODVID_CRASH_LOG` a file that gets one JSON line per trial.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from crashcheck import SEED, final_files, log_trial, phase, store_problems, temp_files
from prodvid_core import layout
from prodvid_core.run import Settings
from prodvid_core.sample import sample_photo_bytes

pytestmark = pytest.mark.crash

TRIALS = int(os.environ.get("PRODVID_CRASH_TRIALS", "1"))
SKU = "CRASH-1"
# 320x192, 16 frames panning 60% of the width: 6 diffusion calls after the hero image, ~10 s on 2 CPU cores
ARGS = [
    "--preset", "tiny", "--device", "cpu", "--format", "320x192", "--steps", "2", "--seed", "5",
    "--prompt", "a bottle on a wooden table", "--camera", '{"path": "pan", "distance": [-0.6, -0.2]}',
    "--num-frames", "16", "--fps", "12", "--lookahead", "16",
]  # fmt: skip
KINDS = ("fresh", "over an earlier run", "keep frames")
# the phases aimed at, in turn: with KINDS, every kind is killed in every phase once in 12 trials
PHASES = ("frames", "hero", "video", "start")
TIMEOUT = 300


def _env() -> dict[str, str]:
    """This environment without the PRODVID_* settings a developer may have set (they would change what is
    made), one OpenMP thread (steadier timings on a busy machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for f in fields(Settings):
        env.pop(f"PRODVID_{f.name.upper()}", None)
    for name in ("PRODVID_STORE", "PRODVID_PRESET", "PRODVID_S3_ENDPOINT_URL"):
        env.pop(name, None)
    return env


def _command(photo: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "prodvid_core.cli", "generate", SKU, "--image", str(photo),
            "--store", str(store), *ARGS, *extra]  # fmt: skip


def _run(cmd: list[str]) -> float:
    """Run to the end; its wall-clock seconds."""
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.monotonic() - start


@dataclass
class Reference:
    """An uninterrupted run of one kind of trial: the store it leaves, and when (seconds after its start)
    each phase of `PHASES` began and ended."""

    files: dict[str, bytes]
    phases: dict[str, tuple[float, float]]


def _phases(store: Path, start: float, end: float) -> dict[str, tuple[float, float]]:
    """The phases of a finished run, from the mtimes of the files it wrote (each write is a new file, so its
    mtime is when it was stored): imports, checks and the canvas until the mask is stored; the hero image
    (model load, painting) until its sidecar; the frames (model load, calls, world checkpoints) until the
    manifest's last write; the video's encoding until its sidecar."""

    def at(key: str) -> float:
        return (store / key).stat().st_mtime - start

    mask, hero = at(layout.mask_png(SKU)), at(layout.hero_json(SKU))
    frames, video = at(layout.frames_manifest(SKU)), at(layout.video_json(SKU))
    return {"start": (0, mask), "hero": (mask, hero), "frames": (hero, frames), "video": (frames, video),
            "exit": (video, end - start)}  # fmt: skip


class References:
    """Uninterrupted runs, made once per kind the trials ask for (`--keep-frames` stores more files)."""

    def __init__(self, root: Path, photo: Path):
        self.root, self.photo, self.made = root, photo, {}

    def extra(self, kind: str) -> list[str]:
        return ["--keep-frames"] if kind == "keep frames" else []

    def get(self, kind: str) -> Reference:
        key = "keep" if kind == "keep frames" else "plain"
        if key not in self.made:
            store, start = self.root / key, time.time()
            _run(_command(self.photo, store, *self.extra(kind)))
            self.made[key] = Reference(final_files(store), _phases(store, start, time.time()))
        return self.made[key]

    def earlier(self) -> Path:
        """A store holding an earlier run of the SKU: another seed, every frame kept as a PNG."""
        store = self.root / "earlier"
        if not store.exists():
            _run(_command(self.photo, store, "--seed", "6", "--keep-frames"))
        return store


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> References:
    root = tmp_path_factory.mktemp("crash-cli")
    photo = root / "bottle.png"
    photo.write_bytes(sample_photo_bytes(size=(300, 400)))
    return References(root, photo)


# What a run has stored when each phase begins (`_phases`)
STARTS = {"hero": layout.mask_png(SKU), "frames": layout.hero_json(SKU), "video": layout.frames_manifest(SKU)}


def _begun(store: Path, aim: str, since: float) -> bool:
    """Whether the run started at `since` has begun phase `aim` (written the file that begins it)."""
    if aim == "start":
        return True
    try:
        path = store / STARTS[aim]
        if path.stat().st_mtime < since:
            return False  # an earlier run's
        if aim == "video":
            manifest = json.loads(path.read_bytes())
            return len(manifest["frames"]) == manifest["num_frames"]
    except (FileNotFoundError, ValueError):  # not yet, or replaced while read
        return False
    return True


def _kill_in(cmd: list[str], store: Path, aim: str, window: tuple[float, float], fraction: float) -> bool:
    """Start `cmd`, SIGKILL its process group `fraction` of the way through phase `aim`; whether it was
    still running then. The phase's length is the reference run's (`window`), scaled by this run's pace
    (how long it took to begin the phase, against the reference), so that a machine busier or quieter
    than during the reference still sees the kill in the phase aimed at."""
    since = time.time()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=_env()
    )
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and not _begun(store, aim, since) and time.monotonic() < deadline:
        time.sleep(0.01)
    begun = time.time() - since
    pace = begun / window[0] if window[0] > 0 else 1.0
    try:
        proc.wait(timeout=fraction * (window[1] - window[0]) * pace)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # ffmpeg, when encoding, dies with it
        proc.wait(timeout=30)
        return True


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkilled_generate_leaves_a_consistent_store_and_resumes_byte_identical(trial, references, tmp_path):
    start = time.monotonic()
    rng = random.Random(f"{SEED}-cli-{trial}")
    kind = KINDS[trial % len(KINDS)]
    reference = references.get(kind)
    store = tmp_path / "store"
    if kind == "over an earlier run":
        shutil.copytree(references.earlier(), store)
    cmd = _command(references.photo, store, *references.extra(kind))

    # 1. Kill at a moment drawn within one phase of an uninterrupted run, the phases in turn
    aim = PHASES[trial % len(PHASES)]
    fraction, since = rng.random(), time.time()
    killed = _kill_in(cmd, store, aim, reference.phases[aim], fraction)
    where, temps = phase(store, SKU, since), temp_files(store)
    problems = store_problems(store)
    record = {"harness": "cli", "seed": SEED, "trial": trial, "kind": kind, "aim": aim, "killed": killed,
              "fraction": round(fraction, 3), "phase": where, "temp_files": len(temps)}  # fmt: skip
    record["problems_after_kill"] = problems
    try:
        killed_in = f"trial {trial} ({kind}), killed {fraction:.2f} into {aim}, in {where}"
        assert not problems, f"{killed_in}: {problems}"

        # 2. The same command again: it finishes, and stores what an uninterrupted run stores
        _run(cmd)
        resumed = final_files(store)
        record["problems_after_rerun"] = problems = store_problems(store)
        record["differing"] = differing = sorted(
            k for k in resumed.keys() | reference.files.keys() if resumed.get(k) != reference.files.get(k)
        )
        assert not problems, f"trial {trial}: after the re-run: {problems}"
        assert not differing, f"{killed_in}: {differing}"
    finally:
        record["seconds"] = round(time.monotonic() - start, 1)
        log_trial(record)
