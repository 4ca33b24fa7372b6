"""benchmarks/bench_gpu.py: its table shows every column and judges the targets, and its FLOP count is right.

The GPU benchmark itself runs by hand (`benchmarks/gpu.sh`, `--cpu-tiny` on a CPU); these check, in a few
seconds, the two things its figures rest on: the table code, and the UNet FLOPs that FlopCounterMode counts,
against a count by hand from the layers' shapes (every convolution, linear layer and attention product).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import bench_gpu  # noqa: E402


def _full_row() -> bench_gpu.Row:
    return bench_gpu.Row(
        "seed, 25 steps", "random-sd15 + random-sd2", "25", 1, 2, hero_s=0.5, sku_s=2.0, calls=2.0,
        orig_calls=21.0, evals=52.0, orig_evals=1050.0, orig_s=21.0, skus_per_hour=1800.0, peak_gib=5.5,
        tflops=400.0, peak_share=40.4, targets=("evals", "sku_s", "throughput", "mfu", "memory"),
    )  # fmt: skip


def test_table_has_every_column_and_judges_each_target():
    rows = [
        _full_row(),
        bench_gpu.Row("story, speed preset", "random-sd15", "4 (lcm)", 1, 2, targets=("sku_s",),
                      note="needs lora/lcm settings"),
        bench_gpu.Row("story SKUs/h", "tiny", "25", 16, 16, sku_s=4.0, skus_per_hour=900.0,
                      targets=("throughput", "mfu")),
    ]  # fmt: skip
    lines = bench_gpu.render_table(rows).splitlines()

    assert lines[0] == "| " + " | ".join(header for header, _ in bench_gpu.COLUMNS) + " |"
    assert len(lines) == 2 + len(rows)
    for line in lines:
        assert line.count("|") == len(bench_gpu.COLUMNS) + 1
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    shown = dict(zip((h for h, _ in bench_gpu.COLUMNS), cells, strict=True))
    assert shown["video s"] == "1.50" and shown["fwd ratio"] == "20.19" and shown["time ratio"] == "10.50"
    assert shown["SKUs/h"] == "1,800" and shown["% of peak"] == "40.40"
    assert shown["pass"] == "pass; pass; pass; pass; pass"
    assert "needs lora/lcm settings" in lines[3]
    assert lines[4].endswith("| >= 1200 SKUs/h; UNet >= 35% of peak | FAIL; n/a |")


def test_each_target_fails_on_the_wrong_side_of_its_bound():
    row = _full_row()
    row.evals, row.sku_s, row.skus_per_hour, row.peak_share, row.peak_gib = 106.0, 3.1, 1199.0, 34.9, 8.1
    assert row.verdict == "FAIL; FAIL; FAIL; FAIL; FAIL"
    row.cpu = True  # on a CPU only the UNet evaluations are judged: the rest is about the hardware
    assert row.verdict == "FAIL; n/a (CPU); n/a (CPU); n/a (CPU); n/a (CPU)"


def test_peak_is_looked_up_by_the_longest_matching_device_name():
    assert bench_gpu.peak_tflops("NVIDIA H200") == 989.4
    assert bench_gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench_gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert bench_gpu.peak_tflops("NVIDIA L40S") == 362.1
    assert bench_gpu.peak_tflops("NVIDIA L4") == 121.0
    assert bench_gpu.peak_tflops("Some GPU") is None
    assert bench_gpu.peak_tflops("NVIDIA H200", override=500.0) == 500.0


def test_flops_of_one_convolution_and_one_linear_layer_are_counted_as_2_per_multiply_add():
    conv = torch.nn.Conv2d(9, 32, kernel_size=3, padding=1)
    assert bench_gpu.count_flops(conv, torch.zeros(2, 9, 16, 24)) == 2 * (2 * 16 * 24) * 32 * 9 * 3 * 3
    linear = torch.nn.Linear(64, 48)
    assert bench_gpu.count_flops(linear, torch.zeros(3, 77, 64)) == 2 * (3 * 77) * 64 * 48


def _hand_count(unet, *args, **kwargs) -> int:
    """The FLOPs of one forward from the layers' shapes: 2 per multiply-add of each convolution (output
    pixels × out × in/groups × kernel area), each linear layer (rows × in × out) and each attention's two
    products (Q·Kᵀ and weights·V: batch × query length × key length × inner width, twice)."""
    total = 0

    def conv(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += 2 * output.numel() * k

    def linear(module, inputs, output):
        nonlocal total
        total += 2 * (inputs[0].numel() // module.in_features) * module.in_features * module.out_features

    def attention(module, args, kwargs, output):
        nonlocal total
        hidden = args[0] if args else kwargs["hidden_states"]
        context = kwargs.get("encoder_hidden_states")
        context = hidden if context is None else context
        batch, queries, keys = hidden.shape[0], hidden.shape[1], context.shape[1]
        total += 2 * 2 * batch * queries * keys * module.inner_dim

    from diffusers.models.attention_processor import Attention

    handles = []
    for module in unet.modules():
        if isinstance(module, torch.nn.Conv2d):
            handles.append(module.register_forward_hook(conv))
        elif isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_hook(linear))
        elif isinstance(module, Attention):
            handles.append(module.register_forward_hook(attention, with_kwargs=True))
    with torch.no_grad():
        unet(*args, **kwargs)
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize("height_width", [(32, 32), (24, 40)])
def test_unet_flops_match_a_hand_count_from_the_architecture(height_width):
    """A tiny SD-shaped inpainting UNet (9 input channels, self- and cross-attention, down- and upsampling)
    at two working sizes: FlopCounterMode's total equals the hand count, and the meter multiplies it by the
    forwards it saw."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=9, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=32, cross_attention_dim=32, attention_head_dim=8,
    ).eval()  # fmt: skip
    h, w = height_width
    sample, text = torch.randn(2, 9, h, w), torch.randn(2, 77, 32)
    timestep = torch.tensor(10)

    counted = bench_gpu.count_flops(unet, sample, timestep, encoder_hidden_states=text)
    assert counted == _hand_count(unet, sample, timestep, encoder_hidden_states=text)
    assert counted > 0

    meter = bench_gpu.UnetMeter()
    meter.attach(type("Pipe", (), {"unet": unet})())
    with torch.no_grad():
        for _ in range(3):
            unet(sample, timestep, encoder_hidden_states=text)
    assert meter.count == 3
    assert meter.flops() == 3 * counted
    assert meter.seconds() > 0


def test_the_lora_stand_in_adapts_every_target_module_when_loaded(tmp_path):
    """The stand-in for a speed preset's LoRA loads through diffusers' `load_lora_weights` onto every module
    LCM-LoRA adapts (a LoRA saved in the wrong key format loads its convolutions and silently drops the
    attention layers), and with its zero B matrices leaves the UNet's output as it was."""
    pytest.importorskip("peft")  # a core dependency with the `lora` setting (issue 10, item 1)
    from diffusers import AutoPipelineForInpainting
    from peft.tuners.lora import LoraLayer

    import random_sd
    from prodvid_core import models

    folder = random_sd.write_random_lora("tiny", tmp_path / "lora", rank=4)
    pipe = AutoPipelineForInpainting.from_pretrained(models.resolve_model("tiny"))
    targets = {
        name
        for name, module in pipe.unet.named_modules()
        if any(name == t or name.endswith("." + t) for t in random_sd.LCM_LORA_TARGETS)
        and isinstance(module, torch.nn.Conv2d | torch.nn.Linear)
    }
    sample, text = torch.randn(1, 9, 16, 16), torch.randn(1, 77, pipe.unet.config.cross_attention_dim)
    with torch.no_grad():
        before = pipe.unet(sample, torch.tensor(10), encoder_hidden_states=text).sample

    pipe.load_lora_weights(folder)
    adapted = {name for name, module in pipe.unet.named_modules() if isinstance(module, LoraLayer)}
    assert any(".attn1.to_q" in name for name in targets) and any("conv1" in name for name in targets)
    assert adapted == targets
    with torch.no_grad():
        after = pipe.unet(sample, torch.tensor(10), encoder_hidden_states=text).sample
    assert torch.equal(before, after)
