"""Speed settings on the tiny presets: LoRAs (written here with peft), few-step schedulers, fp16 weight files,
compile, offload, and the progress bars a person follows. Timings live in benchmarks/, never here."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prodvid_core import models, presets, request
from prodvid_core.errors import ModelUnavailableError, SettingsError
from prodvid_core.run import Settings, frame_settings, generate_sku
from prodvid_core.sample import sample_photo_bytes

PROMPT = "a bottle on a wooden table"


def write_random_lora(preset: str, directory: Path, *, seed: int = 0, rank: int = 4) -> Path:
    """A random-weight LoRA for `preset`'s UNet attention, written with peft and diffusers'
    `save_lora_weights` as a trainer writes one (`pytorch_lora_weights.safetensors`). Both of its matrices
    are random (`init_lora_weights=False`), so unlike a fresh trainer's LoRA it changes what the model
    paints."""
    from diffusers import (
        StableDiffusionInpaintPipeline,
        StableDiffusionXLInpaintPipeline,
        UNet2DConditionModel,
    )
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(presets.preset_dir(preset) / "unet")
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        init_lora_weights=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(config)
    pipeline = StableDiffusionXLInpaintPipeline if preset == "tiny-xl" else StableDiffusionInpaintPipeline
    pipeline.save_lora_weights(directory, unet_lora_layers=get_peft_model_state_dict(unet))
    return directory


@pytest.fixture(scope="module")
def loras(tmp_path_factory) -> dict[str, Path]:
    """Two different LoRAs for `tiny` and one for `tiny-xl`."""
    root = tmp_path_factory.mktemp("loras")
    return {
        "tiny": write_random_lora("tiny", root / "tiny-a"),
        "tiny-b": write_random_lora("tiny", root / "tiny-b", seed=1),
        "tiny-xl": write_random_lora("tiny-xl", root / "tiny-xl-a"),
    }


def _paint(pipe, *, size: int = 64, steps: int = 2, guidance: float = 7.5) -> np.ndarray:
    """One call: a white canvas, the centre kept and the border painted."""
    image = Image.new("RGB", (size, size), "white")
    mask = Image.new("L", (size, size), 255)
    mask.paste(0, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return pipe(
        PROMPT, image=image, mask_image=mask, height=size, width=size, num_inference_steps=steps,
        guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(0), output_type="np",
    ).images[0]  # fmt: skip


# --- LoRAs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["tiny", "tiny-xl"])
def test_a_lora_changes_the_output_and_leaves_the_plain_model_alone(preset, loras):
    plain = models.load_inpaint_pipeline(preset, device="cpu")
    before = _paint(plain)
    fused = models.load_inpaint_pipeline(preset, device="cpu", lora=(str(loras[preset]),))
    assert fused is not plain and fused.unet is not plain.unet  # fused weights are a load of their own
    with_lora = _paint(fused)
    assert np.abs(with_lora - before).max() > 1e-3
    assert not fused.get_list_adapters().get("unet")  # fused, and the LoRA layers dropped
    half = models.load_inpaint_pipeline(preset, device="cpu", lora=(f"{loras[preset]}:0.5",))
    assert np.abs(_paint(half) - with_lora).max() > 1e-4  # the scale is honoured
    assert np.array_equal(_paint(plain), before)  # the shared plain pipeline is unchanged
    # and it composes with a scheduler switch, which shares the fused weights
    lcm = models.load_inpaint_pipeline(preset, device="cpu", lora=(str(loras[preset]),), scheduler="lcm")
    assert lcm.unet is fused.unet and type(lcm.scheduler).__name__ == "LCMScheduler"


def test_the_lora_is_part_of_the_fingerprint(loras):
    base = Settings().with_preset("tiny")
    keys = {
        base.model_key("tiny"),
        replace(base, lora=(str(loras["tiny"]),)).model_key("tiny"),
        replace(base, lora=(f"{loras['tiny']}:0.5",)).model_key("tiny"),
        replace(base, lora=(str(loras["tiny-b"]),)).model_key("tiny"),
    }
    assert len(keys) == 4
    assert replace(base, lora=(f"{loras['tiny']}:1.0",)).model_key("tiny") == replace(
        base, lora=(str(loras["tiny"]),)
    ).model_key("tiny")
    # a setting without LoRA keeps the key it always had, so stored runs stay reusable
    assert base.model_key("tiny") == "tiny|default|cpu|auto"


def test_a_resume_with_another_lora_paints_again(loras, tmp_path):
    from prodvid_core.brief import parse_brief
    from prodvid_core.storage import LocalStore

    store = LocalStore(tmp_path / "store")
    brief = parse_brief({"prompt": PROMPT, "num_frames": 3, "format": "128x128"}, sku="L-1")
    photo = sample_photo_bytes()
    settings = replace(Settings().with_preset("tiny"), steps=2, model_size=64, lora=(str(loras["tiny"]),))
    first = generate_sku(store, "L-1", photo, brief, settings)
    assert generate_sku(store, "L-1", photo, brief, settings).frames.calls_made == 0  # same LoRA: reused
    other = replace(settings, lora=(str(loras["tiny-b"]),))
    assert frame_settings(brief, other) != frame_settings(brief, settings)
    again = generate_sku(store, "L-1", photo, brief, other)
    assert not again.hero_reused and again.frames.calls_made == first.frames.calls_made > 0
    assert np.asarray(again.hero.image).tobytes() != np.asarray(first.hero.image).tobytes()


def test_a_lora_that_does_not_fit_the_model_is_one_clear_error(loras):
    with pytest.raises(ModelUnavailableError, match=r"LoRA .*tiny-xl-a.* does not fit model 'tiny'"):
        models.load_inpaint_pipeline("tiny", device="cpu", lora=(str(loras["tiny-xl"]),))


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("{lora}:0", "`lora` has to be a list of ID_OR_DIR[:SCALE] with SCALE in (0, 4]"),
        ("{lora}:fast", "`lora` has to be"),
        ("{lora}:nan", "PRODVID_LORA"),
        ("{lora}:9", "but is ('"),
    ],
)
def test_a_bad_lora_scale_is_refused_by_the_settings(entry, words, loras):
    with pytest.raises(SettingsError) as info:
        Settings(lora=(entry.format(lora=loras["tiny"]),))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_missing_or_unreachable_lora_is_refused_before_anything_loads(tmp_path, monkeypatch):
    settings = Settings().with_preset("tiny")
    with pytest.raises(ModelUnavailableError, match="there is no folder or file './no-such-lora'"):
        request.check_settings(replace(settings, lora=("./no-such-lora",)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="holds no .safetensors file"):
        request.check_settings(replace(settings, lora=(str(tmp_path / "empty"),)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ModelUnavailableError, match="lcm-lora-sdv1-5.*HF_HUB_OFFLINE is set"):
        request.check_settings(replace(settings, lora=("latent-consistency/lcm-lora-sdv1-5",)))


# --- settings --------------------------------------------------------------------------------------------


def test_speed_presets_fill_in_only_what_was_left_unset():
    sd15 = Settings(speed="lcm-sd15")
    assert (sd15.hero_model, sd15.frames_model) == (models.DEFAULT_HERO_MODEL, models.DEFAULT_HERO_MODEL)
    assert (sd15.lora, sd15.scheduler, sd15.steps, sd15.guidance) == (
        ("latent-consistency/lcm-lora-sdv1-5",), "lcm", 6, 1.5
    )  # fmt: skip
    xl = Settings(speed="lcm-sdxl", steps=4, lora=("me/style:0.7",), frames_model="/models/my-xl")
    assert xl.hero_model == models.SDXL_INPAINT_MODEL and xl.frames_model == "/models/my-xl"
    assert xl.steps == 4 and xl.guidance == 1.5
    assert xl.lora == ("latent-consistency/lcm-lora-sdxl", "me/style:0.7")  # a style LoRA stays
    assert replace(xl) == xl  # filling in twice changes nothing
    with pytest.raises(SettingsError, match="does not fit the random-weight preset 'tiny'"):
        Settings(speed="lcm-sd15").with_preset("tiny")
    with pytest.raises(SettingsError, match="`speed` has to be unset or one of lcm-sd15, lcm-sdxl"):
        Settings(speed="turbo")


def test_speed_settings_come_from_env_flags_and_config(monkeypatch):
    monkeypatch.setenv("PRODVID_LORA", "a/b:0.5, ./c")
    monkeypatch.setenv("PRODVID_COMPILE", "1")
    monkeypatch.setenv("PRODVID_OFFLOAD", "true")
    monkeypatch.setenv("PRODVID_VARIANT", "auto")
    settings = Settings.from_env()
    assert settings.lora == ("a/b:0.5", "./c") and settings.compile and settings.offload
    assert settings.variant is None
    assert Settings.from_env(lora=["x"], compile=False, variant="fp16").lora == ("x",)
    monkeypatch.setenv("PRODVID_SPEED", "lcm-sdxl")
    assert Settings.from_env(steps=8).steps == 8 and Settings.from_env().scheduler == "lcm"
    monkeypatch.setenv("PRODVID_COMPILE", "maybe")
    with pytest.raises(SettingsError, match="PRODVID_COMPILE must be a boolean"):
        Settings.from_env()


def test_the_cli_flags_reach_the_settings():
    from prodvid_core.cli import _parser, _settings

    args = _parser().parse_args(
        ["inbox", "--lora", "a/b:0.5", "--lora", "c", "--compile", "--offload", "--variant", "none",
         "--speed", "lcm-sd15", "--scheduler", "tcd"]
    )  # fmt: skip
    settings = _settings(args)
    assert settings.lora == ("latent-consistency/lcm-lora-sdv1-5", "a/b:0.5", "c")
    assert settings.compile and settings.offload and settings.variant == "none"
    assert settings.scheduler == "tcd" and settings.steps == 6  # a flag wins over the preset


def test_offload_on_the_cpu_is_a_warned_no_op(tiny_pipe):
    settings = replace(Settings().with_preset("tiny"), device="cpu", offload=True)
    assert "does nothing on the CPU" in request.check_settings(settings)[0]
    assert request.check_settings(replace(settings, offload=False)) == []
    # the same cached pipeline as without offload (the session's `tiny_pipe` may have left the cache since:
    # other tests clear it to count loads)
    plain = models.load_inpaint_pipeline("tiny", device="cpu")
    assert models.load_inpaint_pipeline("tiny", device="cpu", offload=True) is plain


# --- fp16 weight files -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp16_folder(tmp_path_factory) -> Path:
    """The tiny preset with fp16 files beside the full ones; the fp16 UNet's `conv_out` is zero, so which
    files were read shows in the loaded weights."""
    from diffusers import AutoPipelineForInpainting

    folder = presets.write_tiny_model(tmp_path_factory.mktemp("fp16") / "tiny")
    pipe = AutoPipelineForInpainting.from_pretrained(folder)
    with torch.no_grad():
        pipe.unet.conv_out.weight.zero_()
    pipe.to(torch.float16).save_pretrained(folder, variant="fp16")
    assert list(folder.glob("unet/*.fp16.safetensors"))
    return folder


def _read_fp16_files(pipe) -> bool:
    return not pipe.unet.conv_out.weight.any()


def test_fp16_files_are_read_when_loading_in_float16_and_the_folder_has_them(fp16_folder):
    def load(**kw):
        return models.load_inpaint_pipeline(str(fp16_folder), device="cpu", **kw)

    assert _read_fp16_files(load(dtype="float16"))
    assert load(dtype="float16").unet.dtype == torch.float16
    assert not _read_fp16_files(load(dtype="float32"))
    assert not _read_fp16_files(load(dtype="float16", variant="none"))
    assert _read_fp16_files(load(dtype="float32", variant="fp16"))


def test_a_folder_without_fp16_files_still_loads_in_float16(tmp_path):
    folder = presets.write_tiny_model(tmp_path / "tiny")
    pipe = models.load_inpaint_pipeline(str(folder), device="cpu", dtype="float16")
    assert pipe.unet.dtype == torch.float16 and pipe.unet.conv_out.weight.any()
    with pytest.raises(ModelUnavailableError, match="variant=fp16"):
        models.load_inpaint_pipeline(str(folder), device="cpu", variant="fp16")


# --- compile ---------------------------------------------------------------------------------------------


def test_compile_compiles_the_repeated_blocks_with_the_cache_in_prodvid_cache(monkeypatch):
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.resnet import ResnetBlock2D

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    pipe = models.load_inpaint_pipeline("tiny", device="cpu", compile=True)
    plain = models.load_inpaint_pipeline("tiny", device="cpu")
    assert pipe.unet is not plain.unet
    blocks = [m for m in pipe.unet.modules() if isinstance(m, BasicTransformerBlock)]
    resnets = [m for m in pipe.vae.decoder.modules() if isinstance(m, ResnetBlock2D)]
    assert blocks and resnets
    assert all(m._compiled_call_impl is not None for m in blocks + resnets)
    assert all(m._compiled_call_impl is None for m in plain.unet.modules())
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(presets.cache_root() / "inductor")


_COMPILED_CALL = """
import sys, torch
from torch._dynamo.utils import counters
from PIL import Image
from prodvid_core import models
pipe = models.load_inpaint_pipeline("tiny", device="cpu", compile=sys.argv[1] == "1")
image, mask = Image.new("RGB", (64, 64), "white"), Image.new("L", (64, 64), 255)
out = pipe("a bottle", image=image, mask_image=mask, height=64, width=64, num_inference_steps=2,
           generator=torch.Generator("cpu").manual_seed(0), output_type="np").images[0]
print(counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"])
sys.stdout.flush()
import numpy; numpy.save(sys.argv[2], out)
"""


@pytest.mark.slow
def test_a_compiled_call_paints_like_eager_and_a_second_process_starts_warm(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)

    def run(compiled: str, name: str) -> tuple[list[int], np.ndarray]:
        out = tmp_path / f"{name}.npy"
        proc = subprocess.run(
            [sys.executable, "-c", _COMPILED_CALL, compiled, str(out)],
            capture_output=True, text=True, env=env, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [int(n) for n in proc.stdout.split()[-2:]], np.load(out)

    (_, eager) = run("0", "eager")
    (hits, misses), cold = run("1", "cold")
    assert misses > 0
    (hits, _), warm = run("1", "warm")
    assert hits > 0  # the inductor cache in PRODVID_CACHE served the second process
    assert np.abs(cold - eager).max() < 1e-3 and np.array_equal(cold, warm)
    assert (presets.cache_root() / "inductor").is_dir()


# --- progress a person can follow -----------------------------------------------------------------------


def test_the_cli_leaves_hugging_face_download_bars_on(monkeypatch, capsys):
    """`prodvid generate` shows its hero and frames bars on stderr (tests/test_cli.py); a model download
    draws Hugging Face's own bars, which the CLI used to turn off. (An honest download needs the Hub.)"""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, tqdm

    from prodvid_core import cli

    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        monkeypatch.delenv(name, raising=False)  # restored afterwards
    disable_progress_bars()  # as transformers' own switch leaves them
    cli._quiet_libraries()
    assert not are_progress_bars_disabled()
    for _ in tqdm(range(4), desc="model.safetensors"):
        pass
    assert "model.safetensors: 100%" in capsys.readouterr().err
