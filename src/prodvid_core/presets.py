"""The offline presets `tiny` and `tiny-xl`: random-weight inpainting checkpoints built from config.

Tests, CI and the quickstart need a model without a download. A preset is a real diffusers checkpoint
with the real classes and layout at a tiny width, written once with `save_pretrained` into a cache folder
and loaded through the same `AutoPipelineForInpainting.from_pretrained` path as a downloaded model
(`prodvid_core.models`). Its output background is noise; everything around it is real.

- `tiny`: `StableDiffusionInpaintPipeline` (SD 1.5 inpainting's classes and PNDM scheduler), native size
  256×256 (UNet `sample_size` 32 × VAE scale factor 8), so CPU tests paint cheaply.
- `tiny-xl`: `StableDiffusionXLInpaintPipeline` (SDXL inpainting's classes: two text encoders, the pooled
  text embedding and the size conditioning of `addition_embed_type="text_time"`, the Euler scheduler),
  native size 512×512: twice tiny's side, as SDXL's 1024 is twice SD's 512.

Environment:
    PRODVID_CACHE   the cache folder; the presets live in `<it>/tiny-v2` and `<it>/tiny-xl-v1`
                    (default `~/.cache/prodvid`).

Example:
    >>> preset_dir("tiny-xl")
    PosixPath('/home/me/.cache/prodvid/tiny-xl-v1')
"""

from __future__ import annotations

import collections
import itertools
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prodvid_core.errors import ModelUnavailableError

__all__ = [
    "TINY_PRESET",
    "TINY_XL_PRESET",
    "PRESETS",
    "write_tiny_model",
    "write_tiny_xl_model",
    "write_preset",
    "preset_dir",
    "cache_root",
    "tiny_model_dir",
]

TINY_PRESET = "tiny"
TINY_XL_PRESET = "tiny-xl"
PRESETS = (TINY_PRESET, TINY_XL_PRESET)

# Cache folder per preset. Bump a version when its architecture, vocabulary or seed changes, so an old
# cache is not reused (tiny-v2: UNet sample_size 64 -> 32; the weights are the same build).
_FOLDERS = {TINY_PRESET: "tiny-v2", TINY_XL_PRESET: "tiny-xl-v1"}

# Module construction draws from torch's global RNG: one seeded build at a time, one preset write at a time.
_SEED_LOCK = threading.Lock()
_WRITE_LOCK = threading.Lock()

# Words a product-scene prompt is made of; the tiny tokenizer's BPE merges are learnt from them so that a
# prompt encodes into whole-word ids instead of single bytes. Any other text still encodes, byte by byte.
_TINY_CORPUS = (
    "a an the of on in at with and by for from under near photo photograph product bottle jar box bag cup "
    "mug glass vase can tube shoe watch phone lamp chair wooden wood table marble stone concrete kitchen "
    "counter shelf desk floor wall studio light lighting soft hard shadow shadows white black red green blue "
    "warm cool background scene garden beach sand forest moss leaves flowers water sunset morning evening "
    "window bathroom living room minimal modern rustic luxury close up view high quality detailed"
)
_TINY_MERGES = 400
_TINY_MAX_LENGTH = 77
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"


# --- writing a preset ------------------------------------------------------------------------------------


def write_tiny_model(directory: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write the `tiny` preset, a random-weight Stable Diffusion inpainting pipeline, to `directory`.

    The pipeline uses the real classes and layout (9-channel `UNet2DConditionModel`, a four-block
    `AutoencoderKL` with scale factor 8, `CLIPTextModel`, a byte-level BPE `CLIPTokenizer`, the PNDM
    scheduler of SD 1.5 inpainting) at a tiny width, so code written against it works unchanged on a real
    checkpoint, and a call at its native 256×256 takes a fraction of a second on a laptop CPU. Weights are
    a pure function of `seed` (for a given torch version), provided no other thread draws from torch's
    global RNG meanwhile (prodvid itself only uses explicit generators); the caller's global RNG state is
    left untouched.
    """
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    tokenizer = _tiny_tokenizer()

    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = StableDiffusionInpaintPipeline(
            vae=_tiny_vae(),
            text_encoder=_tiny_text_encoder(tokenizer),
            tokenizer=tokenizer,
            unet=_tiny_unet(),
            scheduler=_sd15_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    path = Path(directory)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def write_tiny_xl_model(directory: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write the `tiny-xl` preset, a random-weight SDXL inpainting pipeline, to `directory`.

    The classes and wiring of `diffusers/stable-diffusion-xl-1.0-inpainting-0.1` at a tiny width: a
    9-channel `UNet2DConditionModel` with SDXL's added conditioning (`addition_embed_type="text_time"`: the
    pooled embedding of the second text encoder plus six size numbers, original size, crop corner and
    target size, each embedded in `addition_time_embed_dim` channels), cross-attention over both text
    encoders' hidden states side by side (`CLIPTextModel` + `CLIPTextModelWithProjection`, each with the
    tiny tokenizer), a four-block VAE with scale factor 8, and SDXL's Euler scheduler. Seeded like
    `write_tiny_model`.
    """
    import torch
    from diffusers import StableDiffusionXLInpaintPipeline
    from transformers import CLIPTextModelWithProjection

    tokenizer = _tiny_tokenizer()

    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = _tiny_text_encoder(tokenizer)
        text_encoder_2 = CLIPTextModelWithProjection(_tiny_text_config(tokenizer))
        pipe = StableDiffusionXLInpaintPipeline(
            vae=_tiny_vae(scaling_factor=0.13025, force_upcast=False),  # SDXL inpainting's VAE config
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=_tiny_tokenizer(),
            unet=_tiny_xl_unet(
                text_dims=(text_encoder.config.hidden_size, text_encoder_2.config.hidden_size),
                pooled_dim=text_encoder_2.config.projection_dim,
            ),
            scheduler=_sdxl_scheduler(),
            requires_aesthetics_score=False,
            force_zeros_for_empty_prompt=True,
        )
    path = Path(directory)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


_WRITERS: dict[str, Callable[..., Path]] = {
    TINY_PRESET: write_tiny_model,
    TINY_XL_PRESET: write_tiny_xl_model,
}


def write_preset(name: str, directory: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write preset `name` (`tiny` or `tiny-xl`) to `directory` and return its path."""
    _check_preset(name)
    return _WRITERS[name](directory, seed=seed)


def _check_preset(name: str) -> None:
    if name not in PRESETS:
        raise ValueError(f"`preset` has to be one of {', '.join(map(repr, PRESETS))} but is {name!r}.")


# --- the components --------------------------------------------------------------------------------------


def _tiny_unet() -> Any:
    """A 9-channel inpainting UNet; attention only at the half-resolution level, where it is cheap."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32,  # native 256×256: tests paint at a quarter of SD's 512² area
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=32,
        cross_attention_dim=32,
        attention_head_dim=8,
    )


def _tiny_xl_unet(*, text_dims: tuple[int, int], pooled_dim: int) -> Any:
    """SDXL's inpainting UNet at a tiny width: 9 input channels, text_time conditioning, linear projections.

    SDXL's own numbers, for comparison: cross_attention_dim 2048 = 768 + 1280 (the two encoders' hidden
    sizes), projection_class_embeddings_input_dim 2816 = 6 × 256 + 1280 (six size numbers of
    `addition_time_embed_dim` 256, plus the pooled embedding).
    """
    from diffusers import UNet2DConditionModel

    time_embed_dim = 8
    return UNet2DConditionModel(
        sample_size=64,  # native 512×512: twice tiny's side, like SDXL's 1024 against SD's 512
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=32,
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        use_linear_projection=True,
        cross_attention_dim=sum(text_dims),
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + pooled_dim,
    )


def _tiny_vae(**config: Any) -> Any:
    """A four-block VAE (scale factor 8, 4 latent channels) like SD's, only a few channels wide."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        sample_size=512,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        **config,
    )


def _tiny_text_config(tokenizer: Any) -> Any:
    """A two-layer CLIP text config whose vocabulary and special ids match `tokenizer`."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=_TINY_MAX_LENGTH,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _tiny_text_encoder(tokenizer: Any) -> Any:
    from transformers import CLIPTextModel

    return CLIPTextModel(_tiny_text_config(tokenizer))


def _sd15_scheduler() -> Any:
    """The scheduler of `stable-diffusion-v1-5/stable-diffusion-inpainting`, with its config."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )


# scheduler/scheduler_config.json of SDXL inpainting 0.1 (and SDXL base), whole; benchmarks/random_sd.py too.
SDXL_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


def _sdxl_scheduler() -> Any:
    """The scheduler of `diffusers/stable-diffusion-xl-1.0-inpainting-0.1`, its scheduler_config.json whole.

    Euler ignores `skip_prk_steps`, `set_alpha_to_one`, `clip_sample` and `sample_max_value`, but keeps them
    in its config, and the other schedulers prodvid can switch to (`SCHEDULERS`) read them from there:
    without `skip_prk_steps`, PNDM would run its Runge-Kutta warm-up and fail at a few steps.
    """
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(SDXL_SCHEDULER_CONFIG)


# --- the tokenizer ---------------------------------------------------------------------------------------


def _tiny_tokenizer() -> Any:
    """A CLIP tokenizer with a small but real byte-level BPE vocabulary.

    Like CLIP's: the 256 byte symbols, the same with the end-of-word mark `</w>`, the learnt merges, then
    the two special tokens. transformers 5 takes `vocab=`/`merges=` objects (file arguments are ignored and
    give a two-token tokenizer that maps every word to the unknown id).
    """
    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    merges = _learn_bpe_merges(_TINY_CORPUS.split(), _TINY_MERGES)
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [_BOS, _EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=_TINY_MAX_LENGTH)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(sorted(zip(printable, map(chr, codes), strict=True)))


def _learn_bpe_merges(words: list[str], count: int) -> list[tuple[str, str]]:
    """Learn up to `count` BPE merges from `words`, deterministically (ties go to the smaller pair).

    Written out rather than using `tokenizers`' trainer, whose vocabulary order varies between runs, so the
    tiny preset's token ids (and hence its weights' meaning) are the same on every machine.
    """
    corpus = collections.Counter(tuple(w[:-1]) + (w[-1] + "</w>",) for w in words)
    merges: list[tuple[str, str]] = []
    while len(merges) < count:
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for word, n in corpus.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        corpus = collections.Counter({_merge_pair(w, best): n for w, n in corpus.items()})
    return merges


def _merge_pair(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """`word` with every occurrence of `pair` joined into one symbol."""
    out: list[str] = []
    i = 0
    while i < len(word):
        if word[i : i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


# --- the written-once cache folder -----------------------------------------------------------------------


def preset_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return preset `name`'s folder, writing it first if it is not there yet.

    The folder is `<cache_dir>/tiny-v2` (or `tiny-xl-v1`), `cache_dir` defaulting to `$PRODVID_CACHE` or
    `~/.cache/prodvid`. It is written once into a temporary folder beside it and renamed into place, so
    concurrent processes never see a half-written model: the first rename wins and the others use its
    folder. Threads of one process take turns, so only one of them writes.
    """
    _check_preset(name)
    final = cache_root(cache_dir) / _FOLDERS[name]
    with _WRITE_LOCK:
        if not (final / "model_index.json").is_file():
            _write_once(name, final)
    return final


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """prodvid's cache folder: `cache_dir`, else `$PRODVID_CACHE`, else `~/.cache/prodvid`."""
    root = cache_dir or os.environ.get("PRODVID_CACHE") or Path.home() / ".cache" / "prodvid"
    return Path(root).expanduser()


def tiny_model_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the `tiny` preset's folder, writing it first if needed (`preset_dir("tiny", cache_dir)`)."""
    return preset_dir(TINY_PRESET, cache_dir)


def _write_once(name: str, final: Path) -> None:
    """Write preset `name` beside `final` and rename it into place, unless another process wins."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        # Not mkdtemp, which makes 0700 whatever the umask: a cache shared by a team must be readable.
        staging = final.parent / f".{final.name}-{uuid.uuid4().hex}"
        staging.mkdir()
    except OSError as err:
        raise _unwritable(name, final, err) from err
    try:
        write_preset(name, staging)
        os.rename(staging, final)
    except OSError as err:
        if not (final / "model_index.json").is_file():  # not a lost race: disk full, permissions, debris
            raise _unwritable(name, final, err) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unwritable(name: str, final: Path, err: OSError) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"the '{name}' preset cannot be written to {str(final)!r} ({err}). Fix: set PRODVID_CACHE to a "
        f"writable folder, or remove {str(final)!r} if it is left over from an interrupted run."
    )
