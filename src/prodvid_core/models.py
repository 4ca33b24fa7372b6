"""Inpainting models: load any diffusers checkpoint once per process, or build the offline `tiny` preset.

prodvid paints backgrounds with a diffusers inpainting pipeline. A model is a Hub id
(`stable-diffusion-v1-5/stable-diffusion-inpainting`), a local folder holding a diffusers checkpoint, or the
`tiny` preset: a random-weight pipeline with the real Stable Diffusion inpainting classes, written once into
a cache folder, so tests, CI and the quickstart run offline through the same `from_pretrained` path as a
real model. Its output background is noise; everything around it is real.

A model that cannot be loaded fails with one `ModelUnavailableError` naming the model and the fix. prodvid
never falls back to random weights or to another device.

Environment:
    PRODVID_CACHE   folder for prodvid's own cache; the tiny preset lives in `<it>/tiny-v2`
                    (default `~/.cache/prodvid`).
    HF_HUB_OFFLINE  honoured: with it set, only models already in the Hugging Face cache load.

Example:
    >>> pipe = load_inpaint_pipeline("tiny", device="cpu")
    >>> pipe.vae_scale_factor
    8
"""

from __future__ import annotations

import collections
import itertools
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

from prodvid_core.errors import ModelUnavailableError, ProdvidError

__all__ = [
    "DEFAULT_HERO_MODEL",
    "DEFAULT_FRAMES_MODEL",
    "TINY_PRESET",
    "SCHEDULERS",
    "write_tiny_model",
    "tiny_model_dir",
    "resolve_model",
    "resolve_device",
    "resolve_dtype",
    "load_inpaint_pipeline",
    "clear_cache",
]

DEFAULT_HERO_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
DEFAULT_FRAMES_MODEL = "stabilityai/stable-diffusion-2-inpainting"
TINY_PRESET = "tiny"

# Bump when the tiny architecture, vocabulary or seed changes, so old caches are not reused.
_TINY_FOLDER = "tiny-v2"

# Scheduler names accepted by `load_inpaint_pipeline(scheduler=...)` -> diffusers class names. LMS is left
# out: diffusers needs scipy for it, which prodvid does not depend on.
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
}

# Seconds to wait for the Hub before telling the user it cannot be reached. huggingface_hub itself retries
# an unreachable host for ~23 s, which is too long to learn that a machine is offline.
_HUB_PROBE_TIMEOUT_S = 5.0

_CACHE: dict[tuple[str, str, str, str | None, bool], Any] = {}
_LOCK = threading.Lock()
# Module construction draws from torch's global RNG: one seeded build at a time, one tiny write at a time.
_SEED_LOCK = threading.Lock()
_TINY_LOCK = threading.Lock()


# --- the tiny preset -------------------------------------------------------------------------------------

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


def write_tiny_model(directory: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a random-weight Stable Diffusion inpainting pipeline to `directory` and return its path.

    The pipeline uses the real classes and layout (9-channel `UNet2DConditionModel`, a four-block
    `AutoencoderKL` with scale factor 8, `CLIPTextModel`, a byte-level BPE `CLIPTokenizer`, the PNDM
    scheduler of SD 1.5 inpainting) at a tiny width, so code written against it works unchanged on a real
    checkpoint, and one 512×512 call takes about a second on a laptop CPU. Weights are a pure function of
    `seed` (for a given torch version), provided no other thread draws from torch's global RNG meanwhile
    (prodvid itself only uses explicit generators); the caller's global RNG state is left untouched.
    """
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


def _tiny_unet() -> Any:
    """A 9-channel inpainting UNet; attention only at the half-resolution level, where it is cheap."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32,  # native 256 px: CPU tests paint cheaply, and resample at every size above it
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


def _tiny_vae() -> Any:
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
    )


def _tiny_text_encoder(tokenizer: Any) -> Any:
    """A two-layer CLIP text model whose vocabulary and special ids match `tokenizer`."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
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
    return CLIPTextModel(config)


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


def tiny_model_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the tiny preset's folder, writing it first if it is not there yet.

    The folder is `<cache_dir>/tiny-v2`, `cache_dir` defaulting to `$PRODVID_CACHE` or `~/.cache/prodvid`.
    It is written once into a temporary folder beside it and renamed into place, so concurrent processes
    never see a half-written model: the first rename wins and the others use its folder. Threads of one
    process take turns, so only one of them writes.
    """
    root = Path(cache_dir or os.environ.get("PRODVID_CACHE") or Path.home() / ".cache" / "prodvid")
    final = root.expanduser() / _TINY_FOLDER
    with _TINY_LOCK:
        if not (final / "model_index.json").is_file():
            _write_once(final)
    return final


def _write_once(final: Path) -> None:
    """Write the tiny preset beside `final` and rename it into place, unless another process wins."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    except OSError as err:
        raise _unwritable(final, err) from err
    try:
        write_tiny_model(staging)
        os.rename(staging, final)
    except OSError as err:
        if not (final / "model_index.json").is_file():  # not a lost race: disk full, permissions, debris
            raise _unwritable(final, err) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unwritable(final: Path, err: OSError) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"the '{TINY_PRESET}' preset cannot be written to {str(final)!r} ({err}). Fix: set PRODVID_CACHE to "
        f"a writable folder, or remove {str(final)!r} if it is left over from an interrupted run."
    )


def resolve_model(model: str) -> str:
    """Map the `tiny` preset to its (written-once) folder; return a Hub id or folder unchanged."""
    return str(tiny_model_dir()) if model == TINY_PRESET else model


# --- device and dtype ------------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> str:
    """Return the torch device to run on: `auto` picks CUDA when present, else the CPU.

    Asking for CUDA on a machine without it is an error, never a silent switch to a CPU run that would be
    a hundred times slower.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        _check_cuda(device)
        return device
    raise ProdvidError(f"device {device!r} is not supported: use 'auto', 'cpu', 'cuda' or 'cuda:<index>'.")


def _check_cuda(device: str) -> None:
    """Raise `ModelUnavailableError` unless `device` names a CUDA GPU this process can use."""
    if not torch.cuda.is_available():
        raise ModelUnavailableError(
            f"device {device!r} was asked for but CUDA is not available (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'none'}): install a CUDA build of torch and check the "
            "driver, or use device 'cpu' or 'auto'."
        )
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise ModelUnavailableError(
            f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)."
        )


def resolve_dtype(dtype: str | None, device: str) -> torch.dtype:
    """Return the weights' dtype: `dtype` if given, else float16 on CUDA and float32 on the CPU.

    float16 halves GPU memory and time with no visible loss for SD-class models; CPU kernels are fastest
    and exact in float32.
    """
    if dtype is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise ProdvidError(f"dtype {dtype!r} is not supported: use one of {', '.join(_DTYPES)}.")
    return _DTYPES[dtype]


# --- loading ---------------------------------------------------------------------------------------------


def load_inpaint_pipeline(
    model: str,
    *,
    device: str = "auto",
    dtype: str | None = None,
    scheduler: str | None = None,
    compile: bool = False,
) -> Any:
    """Return the diffusers inpainting pipeline for `model`, loading it once per process.

    Every step and run in a process shares one copy of the weights: pipelines are cached by (model,
    device, dtype, scheduler, compile), and a different scheduler reuses the loaded modules. The returned
    pipeline is shared, so do not change its components; ask for another scheduler instead.

    Args:
        model: a Hub id, a folder with a diffusers checkpoint, or `"tiny"`.
        device: `"auto"`, `"cpu"`, `"cuda"` or `"cuda:<index>"`.
        dtype: `"float16"`, `"bfloat16"` or `"float32"`; default float16 on CUDA, float32 on the CPU.
        scheduler: one of `SCHEDULERS`; default the checkpoint's own.
        compile: `torch.compile` the denoiser (slow first call, faster after; worth it on CUDA).

    Raises:
        ModelUnavailableError: the model cannot be loaded, or is not an inpainting pipeline.

    Example:
        >>> pipe = load_inpaint_pipeline("tiny", device="cpu", scheduler="ddim")
        >>> image = pipe("a bottle on a wooden table", image=canvas, mask_image=mask).images[0]
    """
    # 1. Validate and resolve every argument before touching the disk or the network.
    _check_scheduler(scheduler)
    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved_device)
    resolved = _cache_name(resolve_model(model))
    key = (resolved, resolved_device, str(torch_dtype), scheduler, compile)
    # 2. Load under the lock, so two threads asking for one model load it once.
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build(model, resolved, resolved_device, torch_dtype, scheduler, compile)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget every loaded pipeline (tests; freeing GPU memory between unrelated jobs)."""
    with _LOCK:
        _CACHE.clear()


def _cache_name(model: str) -> str:
    """The cache key's model part: an absolute path for a folder, so `./m` and `/abs/m` share a load."""
    return str(Path(model).expanduser().resolve()) if os.path.isdir(os.path.expanduser(model)) else model


def _build(
    model: str, resolved: str, device: str, dtype: torch.dtype, scheduler: str | None, compile: bool
) -> Any:
    """Load (or derive from the cached base) one pipeline; the caller holds `_LOCK`."""
    if scheduler is not None:
        base_key = (resolved, device, str(dtype), None, compile)
        if base_key not in _CACHE:
            _CACHE[base_key] = _build(model, resolved, device, dtype, None, compile)
        return _with_scheduler(_CACHE[base_key], scheduler)
    pipe = _from_pretrained(model, resolved, dtype)
    _check_inpainting(pipe, model)
    return _prepare(pipe, device, compile)


def _check_scheduler(name: str | None) -> None:
    """Raise a `ProdvidError` listing the choices unless `name` is None or one of `SCHEDULERS`."""
    if name is not None and name not in SCHEDULERS:
        raise ProdvidError(f"scheduler {name!r} is not supported: use one of {', '.join(SCHEDULERS)}.")


def _with_scheduler(base: Any, name: str) -> Any:
    """A pipeline sharing `base`'s modules (no second copy of the weights) with scheduler `name`."""
    import diffusers

    scheduler_class = getattr(diffusers, SCHEDULERS[name])
    pipe = type(base).from_pipe(
        base, scheduler=scheduler_class.from_config(base.scheduler.config), dtype=base.dtype
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _from_pretrained(model: str, resolved: str, dtype: torch.dtype) -> Any:
    """Load `resolved` (a folder or a Hub id), turning every way it can be missing into one clear error.

    A Hub id is looked up in the local Hugging Face cache first, so a downloaded model loads offline and
    as downloaded (no update check between runs); only then is the Hub asked, after a quick check that it
    answers at all.
    """
    if os.path.isdir(resolved):
        return _load(model, resolved, dtype, local_files_only=True)
    if not _is_hub_id(resolved):
        raise _unavailable(model, f"there is no folder {resolved!r}")
    try:
        return _load(model, resolved, dtype, local_files_only=True)
    except ModelUnavailableError as cached_error:
        if not isinstance(cached_error.__cause__, OSError):
            raise  # found, but not an inpainting checkpoint
    _check_hub_reachable(model, resolved)
    return _load(model, resolved, dtype, local_files_only=False)


def _load(model: str, resolved: str, dtype: torch.dtype, *, local_files_only: bool) -> Any:
    """`AutoPipelineForInpainting.from_pretrained` with its errors turned into `ModelUnavailableError`."""
    from diffusers import AutoPipelineForInpainting

    try:
        return AutoPipelineForInpainting.from_pretrained(
            resolved, dtype=dtype, local_files_only=local_files_only, use_safetensors=None
        )
    except OSError as err:  # missing files, offline, not a diffusers folder (HF errors are OSErrors too)
        where = "in that folder" if os.path.isdir(resolved) else "locally or on the Hub"
        raise _unavailable(model, f"no loadable diffusers checkpoint {where} ({_first_line(err)})") from err
    except (ValueError, ImportError) as err:  # a pipeline class with no inpainting variant, a missing extra
        reason = f"it is not a diffusers inpainting checkpoint ({_first_line(err)})"
        raise _unavailable(model, reason) from err


def _is_hub_id(name: str) -> bool:
    """Whether `name` has the form of a Hub repo id (`owner/name` or `name`) rather than of a path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _check_hub_reachable(model: str, repo_id: str) -> None:
    """Fail within seconds if the Hub cannot be reached or has no such model.

    huggingface_hub retries an unreachable host with back-off for about 23 seconds before giving up; one
    short request tells the offline case apart at once. Other answers (a gated repo, a 5xx) go on to the
    download, whose own error is reported.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if constants.is_offline_mode():
        raise _unavailable(model, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        HfApi().model_info(repo_id, timeout=_HUB_PROBE_TIMEOUT_S)
    except RepositoryNotFoundError as err:
        reason = "the Hub has no such model (or it is private: log in with `hf auth login`)"
        raise _unavailable(model, reason) from err
    except HfHubHTTPError:
        return  # the Hub answered (e.g. gated, 5xx): let the download report the details
    except Exception as err:  # no answer at all: DNS, refused, timeout, proxy (the HTTP client's own types)
        reason = f"it is not in the local cache and the Hub ({constants.ENDPOINT}) cannot be reached ({err})"
        raise _unavailable(model, reason) from err


def _unavailable(model: str, reason: str) -> ModelUnavailableError:
    """The one message a user gets for a model that cannot be loaded: what failed and the three fixes."""
    folder = "a folder holding a diffusers inpainting checkpoint (model_index.json)"
    if _is_hub_id(model) and not os.path.isdir(model):
        get_it = f"download it while online (`hf download {model}`), or pass {folder}"
    else:
        get_it = f"pass {folder}; `hf download <hub id> --local-dir <folder>` makes one"
    return ModelUnavailableError(
        f"model {model!r} cannot be loaded: {reason}. Fix: {get_it}; or use the offline random-weight "
        f"preset '{TINY_PRESET}' (`--preset {TINY_PRESET}` / PRODVID_PRESET={TINY_PRESET})."
    )


def _first_line(err: BaseException) -> str:
    """An exception's first line, so a multi-paragraph library error does not swamp ours."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_inpainting(pipe: Any, model: str) -> None:
    """Reject a loaded pipeline that cannot inpaint: no mask processor, or a UNet with other than 4 or 9
    input channels (9: a dedicated inpainting UNet; 4: a text-to-image UNet used with latent blending)."""
    if not hasattr(pipe, "mask_processor"):
        raise _unavailable(model, f"it loaded as {type(pipe).__name__}, which is not an inpainting pipeline")
    unet = getattr(pipe, "unet", None)
    if unet is not None and unet.config.in_channels not in (4, 9):
        raise _unavailable(
            model, f"its UNet takes {unet.config.in_channels} input channels; an inpainting UNet takes 9 or 4"
        )


def _prepare(pipe: Any, device: str, compile: bool) -> Any:
    """Move `pipe` to `device` and apply the speed settings: channels-last UNet on CUDA, optional compile.

    Attention already runs through torch's scaled-dot-product kernel (diffusers' default with torch 2).
    """
    pipe.to(device)
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if device.startswith("cuda") and getattr(pipe, "unet", None) is not None:
        pipe.unet.to(memory_format=torch.channels_last)
    if compile and denoiser is not None:
        denoiser.compile()
    pipe.set_progress_bar_config(disable=True)
    return pipe
