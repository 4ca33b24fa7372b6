"""prodvid_core.presets: `tiny` and `tiny-xl` are real diffusers checkpoints, written once, picked by name."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from prodvid_core import cli, models, presets
from prodvid_core.errors import SettingsError
from prodvid_core.run import Settings

PROMPT = "a bottle on a wooden table"


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prodvid cache for the whole session, so tests never write to the user's home."""
    return tmp_path_factory.mktemp("prodvid-presets")


@pytest.fixture(scope="session")
def tiny_dir(cache_root: Path) -> Path:
    return presets.preset_dir("tiny", cache_root)


@pytest.fixture(scope="session")
def tiny_xl_dir(cache_root: Path) -> Path:
    return presets.preset_dir("tiny-xl", cache_root)


def _config(folder: Path, part: str) -> dict:
    name = "model_index.json" if part == "." else "config.json"
    return json.loads((folder / part / name).read_text())


# --- on disk ---------------------------------------------------------------------------------------------


def test_tiny_folder_is_a_standard_diffusers_checkpoint(tiny_dir: Path) -> None:
    assert tiny_dir.name == "tiny-v2"
    index = _config(tiny_dir, ".")
    assert index["_class_name"] == "StableDiffusionInpaintPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["safety_checker"] == [None, None]
    unet, vae = _config(tiny_dir, "unet"), _config(tiny_dir, "vae")
    assert (unet["in_channels"], unet["out_channels"], unet["sample_size"]) == (9, 4, 32)
    assert len(vae["block_out_channels"]) == 4
    assert vae["latent_channels"] == 4
    for part in ("unet", "vae"):
        assert (tiny_dir / part / "diffusion_pytorch_model.safetensors").is_file()
    assert (tiny_dir / "text_encoder" / "model.safetensors").is_file()


def test_tiny_xl_folder_is_a_standard_sdxl_inpainting_checkpoint(tiny_xl_dir: Path) -> None:
    assert tiny_xl_dir.name == "tiny-xl-v1"
    index = _config(tiny_xl_dir, ".")
    assert index["_class_name"] == "StableDiffusionXLInpaintPipeline"
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    assert index["tokenizer"] == index["tokenizer_2"] == ["transformers", "CLIPTokenizer"]
    assert index["scheduler"] == ["diffusers", "EulerDiscreteScheduler"]
    assert (index["requires_aesthetics_score"], index["force_zeros_for_empty_prompt"]) == (False, True)
    unet, vae = _config(tiny_xl_dir, "unet"), _config(tiny_xl_dir, "vae")
    text, text_2 = _config(tiny_xl_dir, "text_encoder"), _config(tiny_xl_dir, "text_encoder_2")
    assert (unet["in_channels"], unet["out_channels"], unet["sample_size"]) == (9, 4, 64)
    assert unet["addition_embed_type"] == "text_time"
    # Wired like SDXL: attention over both encoders' hidden states side by side (768 + 1280 = 2048 there),
    # added embedding = six size numbers + the second encoder's pooled projection (6 × 256 + 1280 = 2816).
    assert unet["cross_attention_dim"] == text["hidden_size"] + text_2["hidden_size"]
    assert unet["projection_class_embeddings_input_dim"] == (
        6 * unet["addition_time_embed_dim"] + text_2["projection_dim"]
    )
    assert (len(vae["block_out_channels"]), vae["latent_channels"], vae["scaling_factor"]) == (4, 4, 0.13025)
    scheduler = json.loads((tiny_xl_dir / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["timestep_spacing"], scheduler["steps_offset"]) == ("leading", 1)
    assert scheduler["skip_prk_steps"] is True  # unused by Euler, kept for a switch to PNDM
    assert (tiny_xl_dir / "text_encoder_2" / "model.safetensors").is_file()


def test_preset_dir_writes_once_and_leaves_no_staging(cache_root: Path, tiny_dir: Path) -> None:
    stamp = (tiny_dir / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert presets.tiny_model_dir(cache_root) == presets.preset_dir("tiny", cache_root) == tiny_dir
    assert (tiny_dir / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    assert not [p.name for p in cache_root.iterdir() if p.name.startswith(".")]


def test_preset_dir_concurrent_writers_agree(tmp_path: Path) -> None:
    barrier = threading.Barrier(2)
    results: list[Path] = []

    def write() -> None:
        barrier.wait()
        results.append(presets.tiny_model_dir(tmp_path))

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [tmp_path / "tiny-v2"] * 2
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-v2"]
    assert (tmp_path / "tiny-v2" / "model_index.json").is_file()


_WRITE_TINY = """
import os, sys
from prodvid_core import presets
os.umask(0o022)
print(presets.preset_dir("tiny-xl", sys.argv[1]))
"""


def test_preset_dir_concurrent_processes_agree(tmp_path: Path) -> None:
    """Two processes racing to write a preset: one rename wins, the other uses its folder, which follows
    the umask (0755 under 022) like every file prodvid stores."""
    command = [sys.executable, "-c", _WRITE_TINY, str(tmp_path)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=180)[0].strip() for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert outputs == [str(tmp_path / "tiny-xl-v1")] * 2
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-xl-v1"]
    assert (tmp_path / "tiny-xl-v1").stat().st_mode & 0o777 == 0o755
    assert models.load_inpaint_pipeline(outputs[0], device="cpu").vae_scale_factor == 8


def _weights(folder: Path, part: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    name = "model.safetensors" if part.startswith("text_encoder") else "diffusion_pytorch_model.safetensors"
    return load_file(folder / part / name)


@pytest.mark.parametrize(("name", "part"), [("tiny", "unet"), ("tiny-xl", "text_encoder_2")])
def test_write_preset_is_seeded_and_leaves_global_rng_alone(name: str, part: str, tmp_path: Path) -> None:
    before = torch.random.get_rng_state()
    first = presets.write_preset(name, tmp_path / "first", seed=0)
    again = presets.write_preset(name, tmp_path / "again", seed=0)
    other = presets.write_preset(name, tmp_path / "other", seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    reference, same, different = _weights(first, part), _weights(again, part), _weights(other, part)
    assert reference.keys() == same.keys() == different.keys()
    assert all(torch.equal(reference[k], same[k]) for k in reference)
    assert any(not torch.equal(reference[k], different[k]) for k in reference)


def test_tiny_weights_are_the_build_of_before_the_sample_size_change(tiny_dir: Path, tmp_path: Path) -> None:
    """`sample_size` shapes no weight: tiny-v2 holds the weights tiny-v1 held, only its config differs."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        presets._tiny_vae(), presets._tiny_text_encoder(presets._tiny_tokenizer())
        old = UNet2DConditionModel.from_config({**_config(tiny_dir, "unet"), "sample_size": 64})
    new = _weights(tiny_dir, "unet")
    assert all(torch.equal(tensor, new[name]) for name, tensor in old.state_dict().items())


def test_tiny_tokenizer_encodes_words_after_a_save_and_reload(tiny_dir: Path, tiny_xl_dir: Path) -> None:
    from transformers import CLIPTokenizer

    for folder in (tiny_dir / "tokenizer", tiny_xl_dir / "tokenizer", tiny_xl_dir / "tokenizer_2"):
        tokenizer = CLIPTokenizer.from_pretrained(folder)
        ids = tokenizer(PROMPT).input_ids
        words = ids[1:-1]
        assert (ids[0], ids[-1]) == (tokenizer.bos_token_id, tokenizer.eos_token_id)
        assert len(words) == 6  # whole-word tokens: a, bottle, on, a, wooden, table
        assert len(set(words)) == 5
        assert tokenizer.unk_token_id not in words
        assert tokenizer.decode(ids, skip_special_tokens=True) == PROMPT
        assert tokenizer.model_max_length == 77
        # Unseen text still encodes, byte by byte, never into the unknown token.
        unseen = tokenizer("zyxq émoji ✓").input_ids[1:-1]
        assert len(unseen) > 5 and tokenizer.unk_token_id not in unseen


def test_an_unknown_preset_names_the_choices(tmp_path: Path) -> None:
    for call in (lambda: presets.write_preset("tiny-xxl", tmp_path), lambda: presets.preset_dir("xl")):
        with pytest.raises(ValueError, match=r"`preset` has to be one of 'tiny', 'tiny-xl' but is"):
            call()
    assert list(tmp_path.iterdir()) == []


# --- loaded ----------------------------------------------------------------------------------------------


def test_tiny_xl_loads_through_from_pretrained_as_sdxl(tiny_xl_dir: Path) -> None:
    pipe = models.load_inpaint_pipeline(str(tiny_xl_dir), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionXLInpaintPipeline"
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel"
    assert type(pipe.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert type(pipe.tokenizer_2).__name__ == "CLIPTokenizer"
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.unet.config.in_channels == 9
    assert (pipe.vae_scale_factor, models.native_size(pipe)) == (8, 512)
    assert pipe.unet.dtype == torch.float32 and pipe.device.type == "cpu"


def test_tiny_native_size_is_256(tiny_dir: Path) -> None:
    pipe = models.load_inpaint_pipeline(str(tiny_dir), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline"
    assert models.native_size(pipe) == 256


# --- picked by name: settings and CLI --------------------------------------------------------------------


def test_settings_take_either_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings().with_preset("tiny-xl")
    assert settings.hero_model == settings.frames_model == "tiny-xl"
    monkeypatch.setenv("PRODVID_PRESET", "tiny-xl")
    assert Settings.from_env().frames_model == "tiny-xl"
    assert Settings.from_env("tiny").hero_model == "tiny"  # the flag wins over the env var
    with pytest.raises(SettingsError, match=r"`preset` has to be one of 'tiny', 'tiny-xl' but is 'sdxl'"):
        Settings().with_preset("sdxl")


def test_cli_writes_either_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models", "tiny-xl", str(tmp_path / "xl")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "xl")
    assert _config(tmp_path / "xl", ".")["_class_name"] == "StableDiffusionXLInpaintPipeline"
    args = cli._parser().parse_args(["generate", "SKU-1", "--image", "p.png", "--preset", "tiny-xl"])
    assert args.preset == "tiny-xl"
