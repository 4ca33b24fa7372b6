"""Full-size random-weight Stable Diffusion inpainting checkpoints: benchmarks measure the real cost offline.

No machine of this project can download the real weights, but a network's cost on a GPU depends on its
architecture, its dtype and the sizes it is called with, not on the values of its weights. This writes the
exact architecture of the two default models and of SDXL inpainting, with random weights, as a standard
diffusers folder:

- `sd15`: `stable-diffusion-v1-5/stable-diffusion-inpainting` (UNet 859.5M, CLIP ViT-L/14 text encoder
  123.1M, VAE 83.7M parameters);
- `sd2`: `stabilityai/stable-diffusion-2-inpainting` (UNet 865.9M, OpenCLIP ViT-H/14 text encoder 340.4M,
  the same VAE);
- `sdxl`: `diffusers/stable-diffusion-xl-1.0-inpainting-0.1` (UNet 2,567.5M, text encoders CLIP ViT-L/14
  123.1M and OpenCLIP ViT-bigG/14 with its projection 694.7M, a VAE of the same shape 83.7M), native 1024².

The configurations are those of the Hub repositories' `unet/`, `vae/`, `text_encoder/`, `text_encoder_2/`
and `scheduler/` config files (spelled out below, with defaults of the installed classes named where they
are relied on), so `prodvid_core.models.load_inpaint_pipeline(folder)` loads the folder through the same
`from_pretrained` path as a download. What it paints is noise: use it for time and memory, never to look at
images.

The tokenizer is the tiny preset's small BPE vocabulary, padded to CLIP's 77 tokens: the real CLIP vocabulary
is not available offline, and the cost of the text encoder depends on the sequence length (77) and the size
of its embedding table (49408 rows, kept), not on which ids a prompt maps to.

Run `python benchmarks/random_sd.py sd15 DIR` (or `sd2`, `sdxl`); `bench_frames.py` and `bench_batch.py` take
`--model random-sd15` / `random-sd2` / `random-sdxl` and build the folder once into `$PRODVID_CACHE`
(`~/.cache/prodvid`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from prodvid_core import models, presets
from prodvid_core.run import Settings

__all__ = [
    "ARCHS",
    "write_random_sd",
    "parameter_counts",
    "random_sd_dir",
    "resolve_benchmark_model",
    "add_model_arguments",
    "benchmark_settings",
    "LCM_LORA_TARGETS",
    "write_random_lora",
    "random_lora_dir",
]

ARCHS = ("sd15", "sd2", "sdxl")

# Bump when an architecture, the tokenizer or the seeding changes, so an old cached folder is not reused.
_CACHE_VERSION = "v1"
_MODEL_PREFIX = "random-"
# What building a folder takes, said before starting (the float32 weights are held before the cast).
_BUILD_COST = {"sd15": "about 20 s and 5 GB of memory", "sd2": "about 20 s and 5 GB of memory"}
_BUILD_COST["sdxl"] = "minutes and 14 GB of memory"
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

# SD 1.5 and 2. UNet2DConditionModel's defaults (diffusers 0.42) already are SD's: the four block types,
# block_out_channels (320, 640, 1280, 1280), layers_per_block 2, norm_num_groups 32, silu, flip_sin_to_cos,
# freq_shift 0, upcast_attention False. What the Hub configs set on top of them:
_UNET: dict[str, dict[str, Any]] = {
    "sd15": {"attention_head_dim": 8, "cross_attention_dim": 768},
    "sd2": {
        "attention_head_dim": (5, 10, 20, 20),  # heads per level: 64 channels each
        "cross_attention_dim": 1024,
        "use_linear_projection": True,
    },
}
_UNET_COMMON: dict[str, Any] = {
    "sample_size": 64,  # latent side of a 512-px image: the pipeline's default height and width
    "in_channels": 9,  # 4 noisy latents + 1 mask + 4 masked-image latents
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
}

# The same VAE in SD 1.5 and 2 (scaling_factor 0.18215 and force_upcast are AutoencoderKL's defaults).
_VAE: dict[str, Any] = {
    "sample_size": 256,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
}

# CLIPTextConfig fields; vocab_size 49408, max_position_embeddings 77 and layer_norm_eps 1e-5 are set
# explicitly too, so a change of transformers' defaults cannot shrink the model unnoticed.
_TEXT: dict[str, dict[str, Any]] = {
    "sd15": {  # openai/clip-vit-large-patch14's text tower
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
    },
    "sd2": {  # OpenCLIP ViT-H/14's text tower without its last layer (SD 2 reads the penultimate one)
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 23,
        "num_attention_heads": 16,
        "projection_dim": 512,
        "hidden_act": "gelu",
    },
}
_TEXT_COMMON: dict[str, Any] = {"vocab_size": 49408, "max_position_embeddings": 77, "layer_norm_eps": 1e-5}

# The SD 1.5 and 2 repositories ship this PNDM scheduler (scheduler/scheduler_config.json).
_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}

# SDXL inpainting 0.1 (`diffusers/stable-diffusion-xl-1.0-inpainting-0.1`, its unet/config.json): three levels
# instead of four, no attention at the full-resolution level, 1/2/10 transformer layers per block at the
# others with 64-channel heads, cross-attention over both text encoders' hidden states side by side
# (768 + 1280 = 2048), and the `text_time` added embedding: the second encoder's pooled projection (1280) plus
# six size numbers (original size, crop corner, target size) of 256 channels each, 6 × 256 + 1280 = 2816.
_SDXL_UNET: dict[str, Any] = {
    "sample_size": 128,  # latent side of a 1024-px image
    "in_channels": 9,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20),
    "transformer_layers_per_block": (1, 2, 10),
    "use_linear_projection": True,
    "cross_attention_dim": 2048,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
# SD's VAE architecture; SDXL inpainting 0.1 ships the fp16-safe SDXL VAE, hence force_upcast false.
_SDXL_VAE: dict[str, Any] = {**_VAE, "sample_size": 512, "scaling_factor": 0.13025, "force_upcast": False}
# text_encoder/ is SD 1.5's CLIP ViT-L text tower; text_encoder_2/ OpenCLIP ViT-bigG/14's, with projection.
_SDXL_TEXT_2: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}


def write_random_sd(
    directory: str | os.PathLike[str], arch: str, *, seed: int = 0, dtype: str = "float16"
) -> Path:
    """Write a random-weight Stable Diffusion inpainting pipeline of architecture `arch` to `directory`.

    The folder is what `save_pretrained` writes for a real checkpoint (safetensors, `model_index.json`), so a
    benchmark pointed at it runs exactly the code, and does exactly the arithmetic, that it would run on the
    real model. float16 by default: it halves the folder (2.1 GB for `sd15`, 2.6 GB for `sd2`, 6.9 GB for
    `sdxl`), is what prodvid runs on CUDA, and `load_inpaint_pipeline(..., dtype="float32")` upcasts on load
    for a CPU run.

    The weights are a pure function of `arch`, `seed` and the torch version: they are drawn from torch's
    global generator, seeded and restored around the build (so no other thread should draw from it
    meanwhile). Building holds the float32 weights before the cast: 4.6 GB peak for `sd15`, 5.4 GB for `sd2`,
    about 20 s on two CPU cores; `sdxl` holds 3.5 billion float32 parameters (14 GB) and takes minutes.

    Args:
        directory: an empty or missing folder.
        arch: `"sd15"`, `"sd2"` or `"sdxl"`.
        seed: seed of the random weights.
        dtype: `"float16"`, `"bfloat16"` or `"float32"`: the dtype of the stored weights.

    Example:
        >>> folder = write_random_sd("/tmp/random-sd15", "sd15")
        >>> pipe = models.load_inpaint_pipeline(str(folder), device="cuda")
    """
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline

    # 1. Check inputs
    path = Path(directory)
    if arch not in ARCHS:
        raise ValueError(f"`arch` has to be one of {', '.join(ARCHS)} but is {arch!r}.")
    if dtype not in _DTYPES:
        raise ValueError(f"`dtype` has to be one of {', '.join(_DTYPES)} but is {dtype!r}.")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"`directory` has to be an empty or missing folder but {str(path)!r} is not.")

    # 2. Draw the weights in float32 from the seeded generator, then cast
    tokenizer = _tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        modules = _modules(arch, tokenizer)
    for module in modules.values():
        # nn.Module.to, not diffusers' override, which warns of "modules that should be kept in float32: []"
        # even when there are none. Floating-point tensors only: integer buffers keep their dtype.
        torch.nn.Module.to(module, _DTYPES[dtype])
    if arch == "sdxl":
        pipe = StableDiffusionXLInpaintPipeline(
            **modules,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            scheduler=_scheduler(arch),
            requires_aesthetics_score=False,  # model_index.json of SDXL inpainting 0.1
            force_zeros_for_empty_prompt=True,
        )
    else:
        pipe = StableDiffusionInpaintPipeline(
            **modules,
            tokenizer=tokenizer,
            scheduler=_scheduler(arch),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

    # 3. Save as a standard diffusers folder
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _modules(arch: str, tokenizer: Any) -> dict[str, Any]:
    """The weighted modules of `arch` by pipeline argument name, built in the order the weights are drawn.

    The order (VAE, text encoder(s), UNet) is part of what a seed means: keep it, or bump `_CACHE_VERSION`.
    """
    modules = {"vae": _vae(arch), "text_encoder": _text_encoder(arch, tokenizer)}
    if arch == "sdxl":
        modules["text_encoder_2"] = _text_encoder_2(tokenizer)
    modules["unet"] = _unet(arch)
    return modules


def _unet(arch: str) -> Any:
    from diffusers import UNet2DConditionModel

    if arch == "sdxl":
        return UNet2DConditionModel(**_SDXL_UNET)
    return UNet2DConditionModel(**_UNET_COMMON, **_UNET[arch])


def _vae(arch: str) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**(_SDXL_VAE if arch == "sdxl" else _VAE))


def _text_encoder(arch: str, tokenizer: Any) -> Any:
    """The text model of `arch`, with the tokenizer's special ids so the pooled output reads its end token."""
    from transformers import CLIPTextModel

    return CLIPTextModel(_text_config(_TEXT["sd15" if arch == "sdxl" else arch], tokenizer))


def _text_encoder_2(tokenizer: Any) -> Any:
    """SDXL's second text model: OpenCLIP ViT-bigG/14's text tower and its 1280 × 1280 text projection."""
    from transformers import CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(_text_config(_SDXL_TEXT_2, tokenizer))


def _text_config(fields: dict[str, Any], tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        **_TEXT_COMMON,
        **fields,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _tokenizer() -> Any:
    """The tiny preset's CLIP tokenizer (77 tokens, ids far below 49408), read from its public folder."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(presets.tiny_model_dir() / "tokenizer")
    if tokenizer.model_max_length != _TEXT_COMMON["max_position_embeddings"] or len(tokenizer) > 49408:
        raise ValueError(
            f"the tiny preset's tokenizer has to pad to 77 tokens with fewer than 49408 ids but pads to "
            f"{tokenizer.model_max_length} with {len(tokenizer)}."
        )
    return tokenizer


def _scheduler(arch: str) -> Any:
    from diffusers import EulerDiscreteScheduler, PNDMScheduler

    if arch == "sdxl":
        return EulerDiscreteScheduler.from_config(presets.SDXL_SCHEDULER_CONFIG)
    return PNDMScheduler(**_SCHEDULER)


def parameter_counts(directory: str | os.PathLike[str]) -> dict[str, int]:
    """Parameters per component (`unet`, `text_encoder`, `vae`, ...) of a diffusers folder, from file headers.

    Reads only the safetensors headers, so it counts what is on disk without loading gigabytes; integer
    tensors (the text encoder's `position_ids`, if a version stores it) are buffers, not parameters, and
    are left out.
    """
    from safetensors import safe_open

    counts: dict[str, int] = {}
    for file in sorted(Path(directory).glob("*/*.safetensors")):
        total = 0
        with safe_open(file, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open objects are not iterable)
                tensor = f.get_slice(name)
                if tensor.get_dtype().startswith(("F", "BF")):
                    total += _numel(tensor.get_shape())
        counts[file.parent.name] = counts.get(file.parent.name, 0) + total
    return counts


def _numel(shape: list[int]) -> int:
    n = 1
    for side in shape:
        n *= side
    return n


def _folder_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


# --- the benchmarks' cache -------------------------------------------------------------------------------


def random_sd_dir(arch: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return `<cache>/random-<arch>-v1`, writing it first (seed 0, float16) if it is not there yet.

    The cache is `cache_dir`, else `$PRODVID_CACHE`, else `~/.cache/prodvid`, as for the tiny preset. The
    folder is written into a temporary folder beside it and renamed into place, so an interrupted build
    leaves no half-written model that a later benchmark would load; of two processes building at once, the
    first rename wins and the other uses its folder.
    """
    if arch not in ARCHS:
        raise ValueError(f"`arch` has to be one of {', '.join(ARCHS)} but is {arch!r}.")
    root = Path(cache_dir or os.environ.get("PRODVID_CACHE") or Path.home() / ".cache" / "prodvid")
    final = root.expanduser() / f"{_MODEL_PREFIX}{arch}-{_CACHE_VERSION}"
    if (final / "model_index.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        print(f"building {final.name} into {final} (once: {_BUILD_COST[arch]} on a CPU)", flush=True)
        write_random_sd(staging, arch)
        os.rename(staging, final)
    except OSError:
        if not (final / "model_index.json").is_file():  # not a lost race: disk full, permissions
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def resolve_benchmark_model(model: str) -> str:
    """Map `random-sd15` / `-sd2` / `-sdxl` to their cached folder (built on first use); others go unchanged.

    Anything else (`tiny`, a Hub id, a folder) goes on to `prodvid_core.models` as it is.
    """
    arch = model.removeprefix(_MODEL_PREFIX)
    if model.startswith(_MODEL_PREFIX) and arch in ARCHS:
        return str(random_sd_dir(arch))
    return model


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmarks' `--model`, `--device` and `--dtype`."""
    parser.add_argument(
        "--model",
        default=models.TINY_PRESET,
        help="tiny, tiny-xl, random-sd15, random-sd2, random-sdxl, Hub id, folder",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:<index>")
    parser.add_argument("--dtype", default=None, help="float16, bfloat16, float32 (default: float16 on CUDA)")


def benchmark_settings(args: argparse.Namespace, **fields: Any) -> tuple[Settings, str]:
    """The settings for `args.model` on both models (a random-sd folder built on first use), and its name."""
    models.resolve_device(args.device)  # fail now, not after building a random-sd folder
    model = resolve_benchmark_model(args.model)
    named = args.model if model == args.model else f"{args.model} ({model})"
    settings = Settings(hero_model=model, frames_model=model, device=args.device, dtype=args.dtype, **fields)
    return settings, named


# --- a stand-in for a speed preset's LoRA ----------------------------------------------------------------

# The UNet modules the LCM-LoRAs adapt (diffusers' LCM-LoRA distillation scripts' `lora_target_modules`).
LCM_LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj",
)  # fmt: skip
LCM_LORA_RANK = 64


def write_random_lora(model: str, directory: str | os.PathLike[str], *, rank: int = LCM_LORA_RANK) -> Path:
    """Write a LoRA for `model`'s UNet (a preset or a diffusers folder) with LCM-LoRA's rank and targets.

    The benchmark machine is offline, so the speed presets' LoRAs cannot be downloaded there. This one has
    their shape, so loading and fusing it costs what theirs does, and fused, any LoRA adds no work per step.
    Its B matrices are peft's default zeros: it leaves the model's numbers as they are (a random LoRA on a
    random model in float16 could only add overflows). Written as `pipeline.save_lora_weights` writes a
    downloaded one (`pytorch_lora_weights.safetensors`), so `load_lora_weights(directory)` reads it.
    """
    from diffusers import (
        StableDiffusionInpaintPipeline,
        StableDiffusionXLInpaintPipeline,
        UNet2DConditionModel,
    )
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    folder = models.resolve_model(model)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=torch.float16)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LCM_LORA_TARGETS)))
    layers = get_peft_model_state_dict(unet)
    xl = unet.config.addition_embed_type == "text_time"
    pipeline = StableDiffusionXLInpaintPipeline if xl else StableDiffusionInpaintPipeline
    pipeline.save_lora_weights(directory, unet_lora_layers=layers, safe_serialization=True)
    return Path(directory)


def random_lora_dir(model: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """`<cache>/lora-<model's folder name>`, written by `write_random_lora` if it is not there yet."""
    root = Path(cache_dir or os.environ.get("PRODVID_CACHE") or Path.home() / ".cache" / "prodvid")
    final = root.expanduser() / f"lora-{Path(models.resolve_model(model)).name}"
    if not (final / "pytorch_lora_weights.safetensors").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            write_random_lora(model, staging)
            os.rename(staging, final)
        except OSError:
            if not (final / "pytorch_lora_weights.safetensors").is_file():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


# --- CLI -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arch", choices=ARCHS)
    parser.add_argument("directory", type=Path, help="an empty or missing folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=list(_DTYPES), default="float16")
    args = parser.parse_args()

    start = time.perf_counter()
    path = write_random_sd(args.directory, args.arch, seed=args.seed, dtype=args.dtype)
    seconds = time.perf_counter() - start
    counts = parameter_counts(path)
    for component, n in counts.items():
        print(f"{component:<14} {n:>15,} parameters")
    print(f"{'total':<14} {sum(counts.values()):>15,} parameters")
    print(
        f"wrote {path} ({args.arch}, seed {args.seed}, {args.dtype}): {_folder_bytes(path) / 1e9:.2f} GB "
        f"in {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
