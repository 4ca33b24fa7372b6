"""benchmarks/random_sd.py builds the real models' architectures: checked on the meta device, in a second.

The published parameter counts of the text-to-image UNets (859,520,964 for SD 1.5, 865,910,724 for SD 2) plus
the 5 extra input channels of the inpainting UNets' first convolution (5 × 320 × 3 × 3 = 14,400). A change of
diffusers' or transformers' defaults that altered an architecture would change these numbers.
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
}


@pytest.mark.parametrize("arch", random_sd.ARCHS)
def test_architectures_have_the_real_models_parameter_counts(arch):
    tokenizer = SimpleNamespace(bos_token_id=757, eos_token_id=758, pad_token_id=758)
    with torch.device("meta"):  # shapes only: no memory, no random draws
        built = {
            "unet": random_sd._unet(arch),
            "text_encoder": random_sd._text_encoder(arch, tokenizer),
            "vae": random_sd._vae(),
        }
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in built.items()}
    assert counts == EXPECTED[arch]
    assert built["unet"].config.in_channels == 9
    assert built["text_encoder"].config.max_position_embeddings == 77


def test_bad_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="`arch` has to be one of sd15, sd2 but is 'sdxl'"):
        random_sd.write_random_sd(tmp_path / "m", "sdxl")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="empty or missing folder"):
        random_sd.write_random_sd(tmp_path / "full", "sd15")


def test_other_model_names_pass_through_unchanged():
    for name in ("tiny", "random-sdxl", "stabilityai/stable-diffusion-2-inpainting", "/models/x"):
        assert random_sd.resolve_benchmark_model(name) == name
