"""The CLI as a user runs it: real `prodvid` subprocesses, a kill -9 mid-frames, and a resume."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from checks import assert_overlaps_agree
from prodvid_core.render import load_frames
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore
from prodvid_core.verify import product_diff
from prodvid_core.video import probe

ARGS = ["--preset", "tiny", "--size", "256", "--steps", "2", "--prompt", "a bottle on a table"]


def prodvid(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "prodvid_core.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "bottle.png"
    path.write_bytes(sample_photo_bytes())
    return path


def _last_bar(stderr: str, desc: str) -> str:
    """What a tqdm bar named `desc` last drew on a terminal (it redraws its line after a carriage return)."""
    states = [part for part in stderr.replace("\r", "\n").split("\n") if part.startswith(desc)]
    assert states, f"no {desc!r} bar in: {stderr[-2000:]}"
    return states[-1]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_help_everywhere():
    for args in ([], ["generate"], ["inbox"], ["frames"], ["models"], ["models", "tiny"], ["sample"]):
        out = prodvid(*args, "--help")
        assert "usage: prodvid" in out.stdout


def test_generate_writes_the_layout_and_says_where(photo, tmp_path):
    store = tmp_path / "store"
    out = prodvid(
        "generate", "BOTTLE-1", "--image", str(photo), "--store", str(store), *ARGS, "--num-frames", "9"
    )
    files = _files(store)
    for key in (
        "expanded_canvas/BOTTLE-1.png", "expanded_canvas/BOTTLE-1.json", "mask/BOTTLE-1.png",
        "hero_image/BOTTLE-1.png", "hero_image/BOTTLE-1.json", "frames/BOTTLE-1/manifest.json",
        "frames/BOTTLE-1/world.png", "video/BOTTLE-1.mp4", "video/BOTTLE-1.json",
    ):  # fmt: skip
        assert key in files
    assert not [key for key in files if key.startswith("frames/") and key[-9:-4].isdigit()]  # rendered
    assert str(store / "video" / "BOTTLE-1.mp4") in out.stdout
    assert "9 frames (0 reused" in out.stdout
    # progress a person can follow, on stderr: the hero call's denoising steps, then the frames
    assert _last_bar(out.stderr, "BOTTLE-1 hero").startswith("BOTTLE-1 hero: 100%")
    assert "| 3/3 [" in _last_bar(out.stderr, "BOTTLE-1 hero")  # --steps 2: PNDM evaluates the UNet 3 times
    assert "| 9/9 [" in _last_bar(out.stderr, "BOTTLE-1 frames")
    assert json.loads(files["video/BOTTLE-1.json"])["frame_count"] == 9
    again = prodvid(
        "generate", "BOTTLE-1", "--image", str(photo), "--store", str(store), *ARGS, "--num-frames", "9"
    )
    assert "9 frames (9 reused" in again.stdout and "hero image reused, video reused" in again.stdout
    assert _files(store) == files

    # the frames, rendered from the store into a folder
    out_dir = tmp_path / "exported"
    exported = prodvid("frames", "BOTTLE-1", "--out", str(out_dir), "--store", str(store))
    assert f"SKU BOTTLE-1: 9 frames written to {out_dir}" in exported.stdout
    pngs = _files(out_dir)
    assert sorted(pngs) == [f"{k:05d}.png" for k in range(9)]
    rendered = load_frames(LocalStore(store), "BOTTLE-1")
    for name, frame in zip(sorted(pngs), rendered, strict=True):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(pngs[name]))), frame)

    # --keep-frames stores the same PNGs; nothing is painted or encoded again
    kept = prodvid(
        "generate", "BOTTLE-1", "--image", str(photo), "--store", str(store), *ARGS, "--num-frames", "9",
        "--keep-frames",
    )  # fmt: skip
    assert "9 frames (9 reused" in kept.stdout and "0 diffusion calls" in kept.stdout
    assert {k: v for k, v in _files(store).items() if k[-9:-4].isdigit()} == {
        f"frames/BOTTLE-1/{name}": data for name, data in pngs.items()
    }


def _product_columns(mask_png: Path) -> tuple[int, int]:
    """The first and one past the last column of a stored mask that hold product pixels."""
    import numpy as np
    from PIL import Image

    cols = np.flatnonzero((np.asarray(Image.open(mask_png)) == 255).any(axis=0))
    return int(cols[0]), int(cols[-1]) + 1


def test_generate_format_placement_and_seconds_flags_win_over_the_brief(photo, tmp_path):
    from prodvid_core.video import probe

    store, brief = tmp_path / "store", tmp_path / "brief.json"
    brief.write_text(
        json.dumps({"prompt": "a bottle", "format": "story", "num_frames": 30, "anchor": "center"})
    )
    flags = [
        "--format",
        "256x448",
        "--anchor",
        "right-third",
        "--margin",
        "0.05",
        "--seconds",
        "0.5",
        "--fps",
        "8",
    ]
    common = ["--preset", "tiny", "--steps", "2", "--store", str(store)]
    out = prodvid("generate", "FMT-1", "--image", str(photo), "--brief", str(brief), *common, *flags)
    assert "5 frames (0 reused" in out.stdout  # 0.5 s at 8 fps, plus the hero image
    meta = json.loads((store / "expanded_canvas" / "FMT-1.json").read_text())
    assert meta["size"] == [256, 448]
    left, right = _product_columns(store / "mask" / "FMT-1.png")
    assert (left + right) / 2 > 128 and right <= 256 - 13  # on the right third, inside the 5% margin
    assert probe((store / "video" / "FMT-1.mp4").read_bytes()) == (5, 8, (256, 448))


@pytest.mark.parametrize(
    "args, words",
    [
        (
            ["generate", "A", "--image", "{photo}", "--prompt", "x", "--format", "1081x1920"],
            "`format` has to be one of",
        ),
        (["generate", "A", "--image", "{photo}", *ARGS, "--format", "story"], "give --format or --size, not"),
        (["generate", "A", "--image", "{photo}", *ARGS, "--margin", "0.5"], "`margin` has to be in [0, 0.4]"),
        (
            ["generate", "A", "--image", "{photo}", *ARGS, "--seconds", "1", "--num-frames", "3"],
            "--seconds, not",
        ),
        (["inbox", "--preset", "tiny", "--format", "tiktok"], "PRODVID_FORMAT"),
        (["generate", "bad/sku", "--image", "{photo}", *ARGS], "bad/sku"),
        (["generate", "A", "--image", "/nonexistent.png", *ARGS], "/nonexistent.png"),
        (["generate", "A", "--image", "{photo}", *ARGS, "--camera", "zoom"], "camera.path"),
        (
            [
                "generate",
                "A",
                "--image",
                "{photo}",
                "--prompt",
                "x",
                "--hero-model",
                "nobody/no-such-inpainting",
            ],
            "nobody/no-such-inpainting",
        ),
        (["generate", "A", "--image", "{junk}", *ARGS], "SKU A"),
        (["generate", "A", "--image", "{photo}", *ARGS, "--steps", "0"], "PRODVID_STEPS"),
        (["inbox", "--preset", "tiny", "--batch-size", "0"], "`batch_size` has to be 1 or more but is 0"),
        (["frames", "NOPE-1", "--out", "{junk}.d"], "SKU NOPE-1: no frames in"),
        (["frames", "bad/sku", "--out", "{junk}.d"], "bad/sku"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, words, photo, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    args = [a.format(photo=photo, junk=junk) for a in args]
    out = prodvid(*args, "--store", str(tmp_path / "store"), check=False)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    error_lines = [line for line in out.stderr.splitlines() if line.startswith("prodvid: error:")]
    assert len(error_lines) == 1 and words in error_lines[0]


def test_models_tiny_writes_a_diffusers_folder(tmp_path):
    prodvid("models", "tiny", str(tmp_path / "tiny"))
    index = json.loads((tmp_path / "tiny" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionInpaintPipeline"


def test_killed_run_resumes_byte_identical(photo, tmp_path):
    run_args = [*ARGS, "--camera", "seed", "--lookahead", "0", "--seed", "5"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    prodvid("generate", "SKU-K", "--image", str(photo), "--store", str(whole), *run_args)

    cmd = [sys.executable, "-m", "prodvid_core.cli", "generate", "SKU-K", "--image", str(photo),
           "--store", str(broken), *run_args]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    manifest = broken / "frames" / "SKU-K" / "manifest.json"
    deadline = time.monotonic() + 300
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = len(json.loads(manifest.read_text())["frames"])
        except (FileNotFoundError, ValueError):
            done = 0
        if done >= 6:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = done
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert killed_at is not None, "the run finished before it could be killed"
    assert not (broken / "video" / "SKU-K.mp4").exists()

    out = prodvid("generate", "SKU-K", "--image", str(photo), "--store", str(broken), *run_args)
    reused = int(out.stdout.split("frames (")[1].split(" reused")[0])
    assert killed_at <= reused < 21
    calls = int(out.stdout.split("reused from an earlier run), ")[1].split(" diffusion call")[0])
    # frames already stored are not painted again (one call more was checkpointed if the kill fell after it)
    assert 20 - reused <= calls <= 21 - reused
    resumed, expected = _files(broken), _files(whole)
    assert resumed == expected


# 16 frames at 1080x1920 panning a fifth of the width and 40% of the height: 3 diffusion calls (the product
# stays in view)
STORY = [
    "--preset", "tiny", "--steps", "2", "--prompt", "a bottle on a table", "--seed", "5", "--format", "story",
    "--camera", json.dumps({"path": "pan", "distance": [-0.2, -0.4]}), "--lookahead", "32",
    "--fps", "30", "--seconds", "0.5",
]  # fmt: skip


def _counts(stdout: str) -> tuple[int, int]:
    """(frames reused, diffusion calls made) from `generate`'s summary line."""
    reused = int(stdout.split("frames (")[1].split(" reused")[0])
    return reused, int(stdout.split("reused from an earlier run), ")[1].split(" diffusion call")[0])


def test_killed_story_run_resumes_byte_identical_and_plays_at_1080x1920(photo, tmp_path):
    """A story video killed with SIGKILL once its first diffusion call is stored, then run again: only the
    missing calls are made and every stored file is the one an uninterrupted run stores; the MP4 decodes at
    1080x1920 and 30 fps, and its frames keep the product exact and agree on their overlaps."""
    frames = 16  # 0.5 s at 30 fps, plus the hero image
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    out = prodvid("generate", "STORY-1", "--image", str(photo), "--store", str(whole), *STORY)
    plan = json.loads((whole / "frames" / "STORY-1" / "manifest.json").read_text())
    total_calls = len(plan["calls"])
    assert total_calls >= 3 and _counts(out.stdout) == (0, total_calls)

    # 1. Kill -9 once the first call's frames are listed, before the last call is painted
    cmd = [sys.executable, "-m", "prodvid_core.cli", "generate", "STORY-1", "--image", str(photo),
           "--store", str(broken), *STORY]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    manifest = broken / "frames" / "STORY-1" / "manifest.json"
    deadline, killed_at = time.monotonic() + 300, None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = len(json.loads(manifest.read_text())["frames"])
        except (FileNotFoundError, ValueError):
            done = 0
        if done >= 2:  # frame 0 is the hero image; the next ones need call 0
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = done
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert killed_at is not None and killed_at < frames, "the run finished before it could be killed"
    assert not (broken / "video" / "STORY-1.mp4").exists()

    # 2. The same command again: only the calls the stored world lacks, then the same bytes
    out = prodvid("generate", "STORY-1", "--image", str(photo), "--store", str(broken), *STORY)
    reused, calls = _counts(out.stdout)
    assert killed_at <= reused < frames
    kept_calls = plan["frames"][reused - 1]["call"] + 1  # the frames reused are those the kept calls complete
    assert kept_calls >= 1 and calls == total_calls - kept_calls
    resumed, expected = _files(broken), _files(whole)
    for key in ("frames/STORY-1/world.png", "frames/STORY-1/manifest.json", "video/STORY-1.mp4"):
        assert resumed[key] == expected[key], key
    assert resumed == expected

    # 3. The MP4 a real decoder sees: every frame, 1080x1920, 30 fps, H.264 yuv420p
    mp4 = whole / "video" / "STORY-1.mp4"
    assert probe(mp4.read_bytes()) == (frames, 30.0, (1080, 1920))
    reader = imageio_ffmpeg.read_frames(str(mp4))
    meta = next(reader)
    reader.close()
    assert (meta["codec"], meta["pix_fmt"].split("(")[0]) == ("h264", "yuv420p")

    # 4. Its frames: the product exact in every one, consecutive ones equal on their overlap
    canvas = Image.open(whole / "expanded_canvas" / "STORY-1.png")
    product = Image.open(whole / "mask" / "STORY-1.png")
    rendered = list(load_frames(LocalStore(broken), "STORY-1"))
    for frame, record in zip(rendered, plan["frames"], strict=True):
        assert frame.shape == (1920, 1080, 3)
        diff = product_diff(canvas, product, frame, offset=tuple(record["offset"]))
        assert diff.visible > 0 and diff.differing == 0, (record["index"], diff)
    assert assert_overlaps_agree(rendered, plan["frames"]) == frames


def _drop(inbox: Path, sku: str, brief: dict) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / f"{sku}.png").write_bytes(sample_photo_bytes(size=(300, 400)))
    (inbox / f"{sku}.json").write_text(json.dumps(brief))


def test_inbox_makes_every_ready_sku_sharing_calls_and_reports_the_rest(tmp_path):
    store = tmp_path / "store"
    settings = ["--preset", "tiny", "--size", "256", "--steps", "2"]
    for i in range(3):
        _drop(store / "inbox", f"CUP-{i}", {"prompt": "a cup on a table", "seed": i, "num_frames": 5})
    (store / "inbox" / "CUP-9.png").write_bytes(sample_photo_bytes())  # no brief yet
    (store / "inbox" / "notes.txt").write_text("not a photo")

    out = prodvid("inbox", "--store", str(store), "--batch-size", "2", *settings, check=False)
    assert out.returncode == 2, out.stderr  # made the good ones, and says some entries were skipped
    assert "skipped inbox/notes.txt: unknown file type '.txt'" in out.stderr
    assert "SKU CUP-9: waiting for its brief" in out.stderr
    assert "3 SKUs made" in out.stdout
    batches = [json.loads((store / "hero_image" / f"CUP-{i}.json").read_text())["batch"] for i in range(3)]
    assert batches == [["CUP-0", "CUP-1"], ["CUP-0", "CUP-1"], ["CUP-2"]]
    for i in range(3):
        assert f"SKU CUP-{i}: 5 frames (0 reused from an earlier run)" in out.stdout
        assert json.loads((store / "video" / f"CUP-{i}.json").read_text())["frame_count"] == 5
    assert not (store / "hero_image" / "CUP-9.png").exists()

    # again, one SKU by name: everything is reused, nothing painted
    before = _files(store)
    again = prodvid("inbox", "--store", str(store), "--sku", "CUP-1", *settings, check=False)
    made = "SKU CUP-1: 5 frames (5 reused from an earlier run), 0 diffusion calls"
    assert f"{made}, hero image reused, video reused" in again.stdout
    after = _files(store)
    assert {k: v for k, v in after.items() if "CUP-1" in k} == {
        k: v for k, v in before.items() if "CUP-1" in k
    }


def test_inbox_format_flags_are_the_defaults_of_briefs_that_leave_them_out(tmp_path):
    store = tmp_path / "store"
    _drop(store / "inbox", "PLAIN-1", {"prompt": "a cup", "num_frames": 3})
    _drop(
        store / "inbox",
        "OWN-2",
        {"prompt": "a cup", "num_frames": 3, "format": "256x256", "anchor": "center"},
    )
    flags = ["--format", "192x320", "--anchor", "left-third", "--margin", "0.1"]
    prodvid("inbox", "--store", str(store), "--preset", "tiny", "--steps", "2", *flags)
    plain = json.loads((store / "expanded_canvas" / "PLAIN-1.json").read_text())
    own = json.loads((store / "expanded_canvas" / "OWN-2.json").read_text())
    assert plain["size"] == [192, 320]
    left, right = _product_columns(store / "mask" / "PLAIN-1.png")
    assert left >= 20 and (left + right) / 2 < 96  # on the left third, inside the 10% margin
    assert own["size"] == [256, 256]
    assert json.loads((store / "video" / "PLAIN-1.json").read_text())["size"] == [192, 320]


def test_inbox_bad_photo_is_reported_and_the_other_skus_are_made(tmp_path):
    store = tmp_path / "store"
    _drop(store / "inbox", "CUP-1", {"prompt": "a cup", "num_frames": 3})
    _drop(store / "inbox", "CUP-2", {"prompt": "a cup"})
    (store / "inbox" / "CUP-2.png").write_bytes(b"this is not an image")
    out = prodvid(
        "inbox", "--store", str(store), "--preset", "tiny", "--size", "256", "--steps", "1", check=False
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "prodvid: error: SKU CUP-2" in out.stderr
    assert "1 SKUs made. 1 refused" in out.stdout
    assert (store / "video" / "CUP-1.mp4").exists() and not (store / "hero_image" / "CUP-2.png").exists()
    missing = prodvid("inbox", "--store", str(store), "--preset", "tiny", "--sku", "NOPE-1", check=False)
    assert missing.returncode == 2 and "prodvid: error: SKU NOPE-1: not ready in the inbox" in missing.stderr
