"""The bad-input catalogue: every mistake a user can make gets one line, exit 2, and changes nothing.

Each case runs `prodvid generate` (in-process, `cli.main`) for a SKU the store already holds, finished by the
tiny preset, with one thing wrong. Each must end in a `ProdvidError` printed as exactly one line on stderr
(no traceback, exit 2), leave the input files as they were, and leave the store byte for byte as it was: a
rejected request is rejected before anything is written or any model loaded.

Run just these: `pytest tests/test_bad_inputs.py -q`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import photos
from prodvid_core import cli, request
from prodvid_core.brief import MAX_BRIEF_BYTES, Brief, parse_brief, prompt_warnings
from prodvid_core.errors import ProdvidError
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.settings import Settings

SKU = "GOOD-1"
FLAGS = {
    "--image": "{in}/photo.png",
    "--store": "{store}",
    "--preset": "tiny",
    "--format": "256x256",
    "--steps": "2",
    "--num-frames": "3",
    "--prompt": "a bottle on a table",
}
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _bad_crc_png() -> bytes:
    """A PNG whose IHDR chunk checksum is wrong (one flipped bit in transit)."""
    data = bytearray(sample_photo_bytes(size=(120, 160)))
    data[29] ^= 0x01  # the first byte of IHDR's CRC (8 signature + 4 length + 4 type + 13 data)
    return bytes(data)


def _brief(**fields) -> bytes:
    return json.dumps({"prompt": "a bottle on a table", **fields}).encode()


# name: (flag overrides (None removes a flag), files written to the inputs folder, env vars, words)
CASES: dict[str, tuple[dict, dict, dict, str]] = {
    # camera paths: bounded, finite
    "pan 1e9 px": ({"--camera": '{"path": "pan", "distance": [1e9, 0]}'}, {}, {}, "at most 1024 px"),
    "shifts of 1e9": (
        {"--camera": '{"path": "shifts", "shifts": [[1000000000, 0], [0, 0]]}'},
        {},
        {},
        "span",
    ),
    "pan 1e400": ({"--camera": '{"path": "pan", "distance": [1e400, 0]}'}, {}, {}, "camera.distance[0]"),
    "arc radius Infinity": ({"--camera": '{"path": "arc", "radius": Infinity}'}, {}, {}, "camera.radius"),
    "arc degrees NaN": ({"--camera": '{"path": "arc", "degrees": NaN}'}, {}, {}, "finite number"),
    "polyline far point": (
        {"--camera": '{"path": "polyline", "points": [[0, 0], [0, 5000]]}'},
        {},
        {},
        "along y",
    ),
    "one frame jumps a frame": (
        {"--camera": '{"path": "shifts", "shifts": [[300, 0], [-300, 0]]}'},
        {},
        {},
        "in one frame",
    ),
    "camera malformed JSON": ({"--camera": '{"path": "pan",'}, {}, {}, "--camera is neither a path name"),
    "camera JSON array": ({"--camera": "[1, 2]"}, {}, {}, "got an array"),
    "camera unknown path": ({"--camera": "zoom"}, {}, {}, "camera.path must be one of"),
    "camera unknown field": ({"--camera": '{"path": "pan", "speed": 3}'}, {}, {}, "camera.speed"),
    "camera wrong type": ({"--camera": '{"path": "pan", "distance": "far"}'}, {}, {}, "wrong type"),
    "camera one point": ({"--camera": '{"path": "polyline", "points": [[0, 0]]}'}, {}, {}, "two points"),
    "camera half pixels": ({"--camera": '{"path": "shifts", "shifts": [[1.5, 0]]}'}, {}, {}, "whole pixels"),
    "plan too large": (
        {"--model-size": "64", "--camera": '{"path": "pan", "distance": [-0.75, 0]}'},
        {},
        {"PRODVID_MAX_WINDOW": "8192"},
        "lower `max_window` (8192), raise `model_size` (64)",
    ),
    # briefs
    "brief is an array": ({"--brief": "{in}/b.json", "--prompt": None}, {"b.json": b"[1, 2]"}, {}, "array"),
    "brief 5 MB": (
        {"--brief": "{in}/b.json"},
        {"b.json": b'{"prompt": "' + b"x" * 5_000_000 + b'"}'},
        {},
        f"at most {MAX_BRIEF_BYTES} are read",
    ),
    "brief not JSON": ({"--brief": "{in}/b.json"}, {"b.json": b"prompt: a bottle"}, {}, "not valid JSON"),
    "brief not UTF-8": (
        {"--brief": "{in}/b.json", "--prompt": None},
        {"b.json": '{"prompt": "caf\u00e9"}'.encode("latin-1")},
        {},
        "not UTF-8",
    ),
    "brief unknown field": ({"--brief": "{in}/b.json"}, {"b.json": _brief(promt="x")}, {}, "'promt'"),
    "brief prompt a number": (
        {"--brief": "{in}/b.json", "--prompt": None},
        {"b.json": b'{"prompt": 5}'},
        {},
        "'prompt' must be str",
    ),
    "brief empty prompt": (
        {"--brief": "{in}/b.json", "--prompt": None},
        {"b.json": b'{"prompt": "  "}'},
        {},
        "non-empty 'prompt'",
    ),
    "brief prompt too long": (
        {"--brief": "{in}/b.json", "--prompt": None},
        {"b.json": _brief(prompt="a bottle " * 300)},
        {},
        "at most 2000",
    ),
    "brief negative seed": ({"--brief": "{in}/b.json"}, {"b.json": _brief(seed=-1)}, {}, "'seed'"),
    "brief fps 1000": ({"--brief": "{in}/b.json"}, {"b.json": _brief(fps=1000)}, {}, "'fps'"),
    "brief seconds NaN": (
        {"--brief": "{in}/b.json", "--num-frames": None},
        {"b.json": b'{"prompt": "x", "seconds": NaN}'},
        {},
        "seconds must be a finite number",
    ),
    "brief missing file": ({"--brief": "{in}/nope.json"}, {}, {}, "cannot read --brief"),
    # photos
    "PNG bad chunk checksum": ({}, {"photo.png": _bad_crc_png()}, {}, "PNG photo is damaged or corrupt"),
    "photo not an image": ({}, {"photo.png": photos.not_an_image()}, {}, "not a PNG, JPEG or WebP"),
    "photo empty": ({}, {"photo.png": photos.empty()}, {}, "empty"),
    "photo truncated": ({}, {"photo.png": photos.truncated_png()}, {}, "truncated or corrupt"),
    "photo all white": ({}, {"photo.png": photos.all_white()}, {}, "no product found"),
    "photo not on white": ({}, {"photo.png": photos.not_on_white()}, {}, "not on a white background"),
    "photo too small": ({}, {"photo.png": photos.too_small()}, {}, "smaller than 16 px"),
    "photo declares 10 GP": ({}, {"photo.png": photos.bomb()}, {}, "absurd size"),
    "photo missing": ({"--image": "{in}/nope.png"}, {}, {}, "cannot read --image"),
    "photo is a folder": ({"--image": "{in}"}, {}, {}, "cannot read --image"),
    # settings, models, device, store
    "scheduler nonsense": ({}, {}, {"PRODVID_SCHEDULER": "nonsense"}, "`scheduler`"),
    "preset nonsense": ({"--preset": None}, {}, {"PRODVID_PRESET": "nonsense"}, "`preset`"),
    "PRODVID_STEPS not a number": ({"--steps": None}, {}, {"PRODVID_STEPS": "many"}, "PRODVID_STEPS"),
    "device cuda without CUDA": (
        {"--device": "cuda"},
        {},
        {},
        "CUDA is not available",
    ),
    "size 100000": ({"--format": None, "--size": "100000"}, {}, {}, "`format` has to be"),
    "format tiktok": ({"--format": "tiktok"}, {}, {}, "`format` has to be"),
    "format and size": ({"--size": "256"}, {}, {}, "give --format or --size"),
    "fill 2": ({"--fill": "2"}, {}, {}, "`fill` has to be in (0, 1]"),
    "margin 0.5": ({"--margin": "0.5"}, {}, {}, "`margin` has to be in [0, 0.4]"),
    "fill NaN": ({"--fill": "nan"}, {}, {}, "fill must be a finite number"),
    "steps 0": ({"--steps": "0"}, {}, {}, "`steps` has to be 1 or more"),
    "guidance NaN": ({"--guidance": "nan"}, {}, {}, "`guidance`"),
    "max window from env": ({}, {}, {"PRODVID_MAX_WINDOW": "1000000000"}, "`max_window` has to be at most"),
    "model size 500": ({"--model-size": "500"}, {}, {}, "`model_size`"),
    "seconds and num-frames": ({"--seconds": "1"}, {}, {}, "not both"),
    "seconds 1000": ({"--num-frames": None, "--seconds": "1000"}, {}, {}, "'seconds' must be"),
    "hero model folder missing": ({"--preset": None, "--hero-model": "{in}/no-model"}, {}, {}, "no folder"),
    "frames model folder not a checkpoint": (
        {"--preset": None, "--hero-model": "tiny", "--frames-model": "{in}"},
        {},
        {},
        "no model_index.json",
    ),
    "hub id not cached": (
        {"--preset": None, "--hero-model": "tiny", "--frames-model": "nobody/no-such-inpainting"},
        {},
        {"HF_HUB_OFFLINE": "1"},
        "'nobody/no-such-inpainting' cannot be loaded",
    ),
    "store is a file": ({"--store": "{in}/photo.png"}, {}, {}, "is a file, not a folder"),
    "store under a file": ({"--store": "{in}/photo.png/store"}, {}, {}, "lies under"),
    # argparse: one line, not the usage
    "seed 1.5": ({"--seed": "1.5"}, {}, {}, "argument --seed: invalid int value: '1.5'"),
    "anchor top": ({"--anchor": "top"}, {}, {}, "argument --anchor: invalid choice"),
    "image flag missing": ({"--image": None}, {}, {}, "the following arguments are required: --image"),
}
SKU_CASES = {  # the same checks with another SKU id in the command
    "invalid SKU id": ("bad/sku", "is not a valid id"),
    "SKU id too long": ("A" * 65, "is not a valid id"),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A store holding SKU GOOD-1 made end to end by the tiny preset, and the inputs folder it came from."""
    inputs, store = tmp_path_factory.mktemp("inputs"), tmp_path_factory.mktemp("store")
    (inputs / "photo.png").write_bytes(sample_photo_bytes(size=(120, 160)))
    assert cli.main(["generate", SKU, *_argv(FLAGS, inputs, store)]) == 0
    return inputs, store


def _argv(flags: dict, inputs: Path, store: Path) -> list[str]:
    out = []
    for flag, value in flags.items():
        if value is not None:
            out += [flag, value.replace("{in}", str(inputs)).replace("{store}", str(store))]
    return out


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_one_line_and_nothing_changed(argv, words, inputs, store, capsys) -> None:
    before_inputs, before_store = _snapshot(inputs), _snapshot(store)
    capsys.readouterr()
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert status == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err  # exactly one line
    assert err.startswith("prodvid: error: ") and "Traceback" not in err
    assert words in err, err
    assert out == ""
    assert _snapshot(store) == before_store
    assert _snapshot(inputs) == before_inputs


@pytest.mark.parametrize(
    ("overrides", "files", "env", "words"),
    [pytest.param(*case, id=name, marks=[NO_CUDA] if "cuda" in name else []) for name, case in CASES.items()],
)
def test_bad_request_gets_one_line_and_changes_nothing(
    overrides, files, env, words, finished, tmp_path, monkeypatch, capsys
):
    inputs, store = finished
    case_inputs = tmp_path / "inputs"  # the finished SKU's photo, then this case's own files
    case_inputs.mkdir()
    (case_inputs / "photo.png").write_bytes((inputs / "photo.png").read_bytes())
    for name, data in files.items():
        (case_inputs / name).write_bytes(data)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = ["generate", SKU, *_argv({**FLAGS, **overrides}, case_inputs, store)]
    _assert_one_line_and_nothing_changed(argv, words, case_inputs, store, capsys)


@pytest.mark.parametrize(("sku", "words"), list(SKU_CASES.values()), ids=list(SKU_CASES))
def test_bad_sku_id_gets_one_line_and_changes_nothing(sku, words, finished, capsys):
    inputs, store = finished
    argv = ["generate", sku, *_argv(FLAGS, inputs, store)]
    _assert_one_line_and_nothing_changed(argv, words, inputs, store, capsys)


def test_frames_of_an_unknown_sku_gets_one_line(finished, tmp_path, capsys):
    inputs, store = finished
    argv = ["frames", "NOPE-1", "--out", str(tmp_path / "out"), "--store", str(store)]
    _assert_one_line_and_nothing_changed(argv, "SKU NOPE-1: no frames in", inputs, store, capsys)


def test_the_catalogue_holds_at_least_40_cases():
    assert len(CASES) + len(SKU_CASES) + 1 >= 40


# --- allowed, with a warning --------------------------------------------------------------------------


def _png(image: Image.Image, **options) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _on_white(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    image = Image.new("RGB", size, (255, 255, 255))
    image.paste((30, 60, 90), box)
    return image


TINY = Settings(format="256x256").with_preset("tiny")
BRIEF = parse_brief({"prompt": "a bottle on a table", "num_frames": 3}, sku="W-1")


@pytest.mark.parametrize(
    ("photo", "words"),
    [
        pytest.param(
            _png(_on_white((20000, 20), (2000, 4, 18000, 16))), "20000x20 px, 1000:1", id="20000x20"
        ),
        pytest.param(_png(_on_white((16, 16), (5, 5, 11, 11))), "only 16x16 px", id="16x16"),
        pytest.param(
            _png(
                _on_white((120, 160), (40, 40, 80, 120)),
                save_all=True,
                append_images=[_on_white((120, 160), (30, 30, 90, 130))],
            ),
            "animated PNG of 2 frames; only the first is used",
            id="APNG",
        ),
    ],
)
def test_a_likely_mistake_in_a_photo_is_a_warning(photo, words):
    checked = request.check_sku("W-1", photo, BRIEF, TINY)
    assert any(words in line for line in checked.warnings), checked.warnings


def test_an_animated_webp_is_a_warning():
    import io

    buffer = io.BytesIO()
    frames = [_on_white((120, 160), (40, 40, 80, 120)), _on_white((120, 160), (30, 30, 90, 130))]
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    checked = request.check_sku("W-1", buffer.getvalue(), BRIEF, TINY)
    assert any("animated WEBP of 2 frames" in line for line in checked.warnings), checked.warnings


def test_a_prompt_longer_than_the_text_encoder_reads_is_a_warning_not_an_error():
    long = parse_brief({"prompt": " ".join(["wooden"] * 80)}, sku="W-1")
    assert "at least 80 tokens" in prompt_warnings(long, sku="W-1")[0]
    assert prompt_warnings(parse_brief({"prompt": "on a marble counter"}, sku="W-1"), sku="W-1") == []


def test_a_brief_with_a_byte_order_mark_is_read():
    brief = parse_brief(b"\xef\xbb\xbf" + _brief(seed=3), sku="W-1")
    assert brief.seed == 3 and brief.prompt == "a bottle on a table"


def test_warnings_are_printed_and_the_sku_is_made(finished, tmp_path, capsys):
    inputs, store = finished
    (tmp_path / "photo.png").write_bytes(_png(_on_white((16, 16), (5, 5, 11, 11))))
    flags = {**FLAGS, "--image": str(tmp_path / "photo.png"), "--prompt": "wooden " * 80}
    assert cli.main(["generate", "WARN-1", *_argv(flags, inputs, tmp_path / "store")]) == 0
    err = capsys.readouterr().err
    assert "prodvid: warning: SKU WARN-1: the product is placed at" in err
    assert "prodvid: warning: SKU WARN-1: brief field 'prompt' is at least 80 tokens" in err
    assert "Traceback" not in err


# --- the inbox: one bad SKU is reported, the others are made ---------------------------------------------


def test_inbox_reports_bad_skus_and_makes_the_others(tmp_path, capsys):
    store = tmp_path / "store"
    box = store / "inbox"
    box.mkdir(parents=True)
    photo = sample_photo_bytes(size=(120, 160))
    briefs = {
        "OK-1": {"prompt": "a cup", "num_frames": 3},
        "FAR-2": {"prompt": "a cup", "num_frames": 3, "camera": {"path": "shifts", "shifts": [[1e9, 0]] * 2}},
        "JUNK-3": {"prompt": "a cup", "num_frames": 3},
        "WIDE-4": {"prompt": "a cup", "num_frames": 3, "camera": {"path": "pan", "distance": [900, 0]}},
    }
    for sku, brief in briefs.items():
        (box / f"{sku}.png").write_bytes(b"not an image" if sku == "JUNK-3" else photo)
        (box / f"{sku}.json").write_text(json.dumps(brief))
    inbox_before = _snapshot(box)
    status = cli.main(
        ["inbox", "--store", str(store), "--preset", "tiny", "--format", "256x256", "--steps", "1"]
    )
    out, err = capsys.readouterr()
    assert status == 2, err
    assert "Traceback" not in err
    assert "SKU FAR-2: camera.shifts makes the frames span" in err  # 1e9 is a whole number: bounds
    assert "prodvid: error: SKU JUNK-3: the photo is not a PNG" in err
    assert "prodvid: error: SKU WIDE-4: camera.distance makes the frames span 1156 px" in err  # at 256
    assert "1 SKUs made. 2 refused" in out and "SKU OK-1: 3 frames" in out
    made = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}
    assert "video/OK-1.mp4" in made
    assert not any(
        ("FAR-2" in key or "JUNK-3" in key or "WIDE-4" in key) and "inbox/" not in key for key in made
    )
    assert _snapshot(box) == inbox_before


# --- the CLI as a process: one line for argparse, no heavy import before a rejection ---------------------


def test_argparse_mistake_is_one_line_from_the_real_cli():
    cmd = [sys.executable, "-m", "prodvid_core.cli", "generate", "A", "--image", "x.png", "--seed", "1.5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == (
        "prodvid: error: argument --seed: invalid int value: '1.5' (see prodvid generate --help)\n"
    )


LAZY = """
import json, sys
from pathlib import Path
from prodvid_core.cli import main
from prodvid_core.sample import sample_photo_bytes
photo = Path(sys.argv[1]) / "photo.png"
photo.write_bytes(sample_photo_bytes(size=(120, 160)))
store = str(Path(sys.argv[1]) / "store")
base = ["--image", str(photo), "--prompt", "x", "--store", store, "--preset", "tiny", "--format", "256x256"]
codes = [
    main(["generate", "bad/sku", *base]),
    main(["generate", "A-1", *base, "--camera", '{"path": "pan", "distance": [1e9, 0]}']),
    main(["generate", "A-1", *base, "--scheduler", "nonsense"]),
    main(["generate", "A-1", *base, "--hero-model", str(photo.parent / "no-model")]),
]
heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy, "store": Path(store).exists()}))
"""


def test_a_rejected_command_imports_no_heavy_library(tmp_path):
    """The whole request is checked first: torch, diffusers and transformers are imported only after."""
    proc = subprocess.run(
        [sys.executable, "-c", LAZY, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"codes": [2, 2, 2, 2], "heavy": [], "store": False}, proc.stderr


def test_a_rejection_is_a_prodvid_error_in_the_python_api_too(finished):
    inputs, _ = finished
    brief = Brief(prompt="x", camera={"path": "pan", "distance": [1e9, 0]})  # not parsed: checked here
    with pytest.raises(ProdvidError, match="span"):
        request.check_sku("API-1", (inputs / "photo.png").read_bytes(), brief, TINY)
