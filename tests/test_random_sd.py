"""benchmarks/random_sd.py builds the real models' architectures: checked on the meta device, in a second.

The published parameter counts of the text-to-image UNets (859,520,964 for SD 1.5, 865,910,724 for SD 2,
2,567,463,684 for SDXL base) plus the 5 extra input channels of the inpainting UNets' first convolution
(5 × 320 × 3 × 3 = 14,400); of the text encoders (CLIP ViT-L/14's text tower 123,060,480, OpenCLIP ViT-H/14's
without its last layer 340,387,840, OpenCLIP ViT-bigG/14's with its text projection 694,659,840) and of the
VAE (83,653,863, the same shape in all three). A change of diffusers' or transformers' defaults that altered
an architecture would change these numbers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

_PATH = Path(__file__).parents[1] / "benchmarks" / "random_sd.py"
_spec = importlib.util.spec_from_file_location("random_sd", _PATH)
random_sd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(random_sd)

EXPECTED = {
    "sd15": {"unet": 859_520_964 + 14_400, "text_encoder": 123_060_480, "vae": 83_653_863},
    "sd2": {"unet": 865_910_724 + 14_400, "text_encoder": 340_387_840, "vae": 83_653_863},
    "sdxl": {
        "unet": 2_567_463_684 + 14_400,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
        "vae": 83_653_863,
    },
}


@pytest.mark.parametrize("arch", random_sd.ARCHS)
def test_architectures_have_the_real_models_parameter_counts(arch):
    tokenizer = SimpleNamespace(bos_token_id=757, eos_token_id=758, pad_token_id=758)
    with torch.device("meta"):  # shapes only: no memory, no random draws
        built = random_sd._modules(arch, tokenizer)
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in built.items()}
    assert counts == EXPECTED[arch]
    assert built["unet"].config.in_channels == 9
    assert built["text_encoder"].config.max_position_embeddings == 77


def test_sdxl_is_wired_like_sdxl_inpainting():
    """What the SDXL pipeline relies on: both hidden sizes side by side, pooled + six size numbers, 1024²."""
    tokenizer = SimpleNamespace(bos_token_id=757, eos_token_id=758, pad_token_id=758)
    with torch.device("meta"):
        built = random_sd._modules("sdxl", tokenizer)
    unet, text, text_2 = built["unet"].config, built["text_encoder"].config, built["text_encoder_2"].config
    assert type(built["text_encoder_2"]).__name__ == "CLIPTextModelWithProjection"
    assert unet.cross_attention_dim == text.hidden_size + text_2.hidden_size == 2048
    added = 6 * unet.addition_time_embed_dim + text_2.projection_dim
    assert unet.projection_class_embeddings_input_dim == added == 2816
    assert unet.sample_size * 2 ** (len(built["vae"].config.block_out_channels) - 1) == 1024
    assert type(random_sd._scheduler("sdxl")).__name__ == "EulerDiscreteScheduler"


def test_bad_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="`arch` has to be one of sd15, sd2, sdxl but is 'sd3'"):
        random_sd.write_random_sd(tmp_path / "m", "sd3")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="empty or missing folder"):
        random_sd.write_random_sd(tmp_path / "full", "sd15")


def test_other_model_names_pass_through_unchanged():
    for name in ("tiny", "tiny-xl", "random-sd3", "stabilityai/stable-diffusion-2-inpainting", "/models/x"):
        assert random_sd.resolve_benchmark_model(name) == name


def test_random_sdxl_resolves_to_its_cached_folder(tmp_path, monkeypatch):
    """`--model random-sdxl` names the cached folder; one already written is used, never rebuilt."""
    monkeypatch.setenv("PRODVID_CACHE", str(tmp_path))
    folder = tmp_path / "random-sdxl-v1"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    assert random_sd.resolve_benchmark_model("random-sdxl") == str(folder)
