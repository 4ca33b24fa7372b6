"""Inpainting models: load any diffusers inpainting checkpoint once per process, on the device asked for.

prodvid paints backgrounds with a diffusers inpainting pipeline. A model is a Hub id
(`stable-diffusion-v1-5/stable-diffusion-inpainting`, `diffusers/stable-diffusion-xl-1.0-inpainting-0.1`),
a local folder holding a diffusers checkpoint, or one of the offline presets `tiny` / `tiny-xl`
(`prodvid_core.presets`: random-weight checkpoints written once into a cache folder). All of them load
through the same `AutoPipelineForInpainting.from_pretrained`, so SD 1.5/2-class
(`StableDiffusionInpaintPipeline`) and SDXL-class (`StableDiffusionXLInpaintPipeline`) checkpoints work alike.

A model that cannot be loaded fails with one `ModelUnavailableError` naming the model and the fix. prodvid
never falls back to random weights or to another device.

Calling a pipeline (`prodvid_core.inpaint`): both classes take the same call, `pipe(prompt=[...],
negative_prompt=[...], image=[...], mask_image=[...], height, width, num_inference_steps, guidance_scale,
strength=1.0, generator=[...], output_type="np")`. SDXL's size conditioning (`original_size`,
`target_size`) defaults to (height, width), which is right when a call paints at about the native area.
`strength=1.0` is passed because SDXL's inpaint pipeline defaults to 0.9999 (SD's is 1.0), and that
default (a) runs `int(steps * 0.9999)` = steps - 1 denoising steps, none at all at steps=1, which diffusers
refuses, and (b) starts the masked region from the noised encoding of the pixels under the mask instead of
pure noise. Under prodvid's mask those pixels are placeholders, not content: white in the hero canvas,
black in a frame's unpainted world, so 0.9999 would pull the hero towards light backgrounds and new frame
regions towards dark ones. With 1.0, what is painted does not depend on them at all. (The SDXL
inpainting 0.1 model card reports softer images at strength 1.0 than just below it; a placeholder made of
real context, e.g. the edge pixels stretched outwards, would be the way to use < 1.)

Speed (docs/speed.md): LoRAs fused into the weights (`lora`, e.g. the few-step LCM-LoRAs with the `lcm`
scheduler), regional `torch.compile` (`compile`), model CPU offload for small GPUs (`offload`) and fp16 weight
files (`variant`) are arguments of `load_inpaint_pipeline`, each part of the cache key.

Environment:
    PRODVID_CACHE   folder for prodvid's own cache, where the presets are written (default
                    `~/.cache/prodvid`), and torch inductor's cache (`<it>/inductor`) with `compile`.
    HF_HUB_OFFLINE  honoured: with it set, only models already in the Hugging Face cache load.

Example:
    >>> pipe = load_inpaint_pipeline("tiny-xl", device="cpu")
    >>> type(pipe).__name__, native_size(pipe)
    ('StableDiffusionXLInpaintPipeline', 512)
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from prodvid_core import leases
from prodvid_core.errors import ModelUnavailableError, ProdvidError
from prodvid_core.presets import PRESETS, TINY_PRESET, TINY_XL_PRESET, cache_root, preset_dir

if TYPE_CHECKING:  # torch is imported where it is used: checking a request must not wait for it
    import torch

__all__ = [
    "DEFAULT_HERO_MODEL",
    "DEFAULT_FRAMES_MODEL",
    "SDXL_INPAINT_MODEL",
    "TINY_PRESET",
    "TINY_XL_PRESET",
    "PRESETS",
    "SCHEDULERS",
    "DTYPES",
    "resolve_model",
    "check_available",
    "check_lora_available",
    "split_lora",
    "resolve_device",
    "resolve_dtype",
    "load_inpaint_pipeline",
    "native_size",
    "clear_cache",
]

DEFAULT_HERO_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
DEFAULT_FRAMES_MODEL = "stabilityai/stable-diffusion-2-inpainting"
SDXL_INPAINT_MODEL = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"

# Scheduler names accepted by `load_inpaint_pipeline(scheduler=...)` -> diffusers class names. LMS is left
# out: diffusers needs scipy for it, which prodvid does not depend on.
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "lcm": "LCMScheduler",  # for LCM-LoRAs (latent-consistency/lcm-lora-*): 4-8 steps, guidance 1-2
    "tcd": "TCDScheduler",  # for TCD-LoRAs (h1t/TCD-SD15-LoRA, h1t/TCD-SDXL-LoRA): 4-8 steps
}

# dtype names accepted -> torch's attribute names (names, so this module imports without torch).
DTYPES: dict[str, str] = {
    "float16": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
}

# Seconds to wait for the Hub before telling the user it cannot be reached. huggingface_hub itself retries
# an unreachable host for ~23 s, which is too long to learn that a machine is offline.
_HUB_PROBE_TIMEOUT_S = 5.0

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def resolve_model(model: str) -> str:
    """Map a preset (`tiny`, `tiny-xl`) to its (written-once) folder; return a Hub id or folder unchanged."""
    return str(preset_dir(model)) if model in PRESETS else model


def check_available(model: str) -> None:
    """Refuse a model that cannot load, before anything is written and without loading it.

    What is cheap to know: a preset is always there (written on first use); a folder has to hold
    `model_index.json`; a Hub id has to be in the local Hugging Face cache, or else the Hub must know it
    (one short request; refused at once under HF_HUB_OFFLINE). A checkpoint that is there but damaged is
    still reported by `load_inpaint_pipeline`, with the same kind of message; never a fallback.
    """
    if model in PRESETS:
        return
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "model_index.json")):
            raise _unavailable(model, f"the folder {path!r} has no model_index.json")
        return
    if not _is_hub_id(model):
        raise _unavailable(model, f"there is no folder {model!r}")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "model_index.json"), str):
        return
    _check_hub_reachable(model, model)


def split_lora(entry: str) -> tuple[str, float]:
    """`ID_OR_DIR[:SCALE]` as (name, scale); the scale is 1 when left out and NaN when it is not a number.

    The text after the last `:` is a scale unless it holds a `/` (then the `:` is part of a path)."""
    head, sep, tail = entry.rpartition(":")
    if not sep or "/" in tail:
        return entry, 1.0
    try:
        return head, float(tail)
    except ValueError:
        return head, math.nan


def check_lora_available(entry: str) -> None:
    """Refuse a LoRA that cannot load, cheaply, before anything is written: a folder must hold a
    `.safetensors` file, a file must be one; a Hub id must be in the local Hugging Face cache, or else the Hub
    must know it (refused at once under HF_HUB_OFFLINE). Never a silent run without it."""
    name, _ = split_lora(entry)
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if not any(Path(path).glob("*.safetensors")):
            raise _lora_unavailable(entry, f"the folder {path!r} holds no .safetensors file")
        return
    if os.path.isfile(path):
        if not path.endswith(".safetensors"):
            raise _lora_unavailable(entry, f"{path!r} is not a .safetensors file")
        return
    if not _is_hub_id(name):
        raise _lora_unavailable(entry, f"there is no folder or file {name!r}")
    if _cached_lora(name) is None:
        _check_hub_reachable(entry, name, unavailable=_lora_unavailable)


def _cached_lora(repo_id: str) -> str | None:
    """The local snapshot folder of LoRA repo `repo_id` if the Hugging Face cache holds its weights."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, allow_patterns=_LORA_FILES, local_files_only=True)
    except (LocalEntryNotFoundError, OSError):
        return None
    return folder if any(Path(folder).glob("*.safetensors")) else None


_LORA_FILES = ["*.safetensors", "*.json"]


def _resolve_lora(entry: str) -> str:
    """A LoRA's local folder or file, downloaded first (with Hugging Face's progress bar) if it must be."""
    from huggingface_hub import snapshot_download

    check_lora_available(entry)
    name, _ = split_lora(entry)
    path = os.path.expanduser(name)
    if os.path.exists(path):
        return path
    cached = _cached_lora(name)
    if cached is not None:
        return cached
    try:
        return snapshot_download(name, allow_patterns=_LORA_FILES)
    except OSError as err:
        raise _lora_unavailable(entry, f"the download failed ({_first_line(err)})") from err


def _lora_unavailable(entry: str, reason: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"LoRA {entry!r} cannot be loaded: {reason}. Fix: give a folder holding the LoRA's .safetensors "
        "file, the file itself, or a Hub id that is downloaded (`hf download <id>`) or reachable; "
        "`lora` comes from --lora, --speed, Dagster config, PRODVID_LORA or PRODVID_SPEED."
    )


# --- device and dtype ------------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> str:
    """Return the torch device to run on: `auto` picks CUDA when present, else the CPU.

    Asking for CUDA on a machine without it is an error, never a silent switch to a CPU run that would be
    a hundred times slower.
    """
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        _check_cuda(device)
        return device
    raise ProdvidError(f"device {device!r} is not supported: use 'auto', 'cpu', 'cuda' or 'cuda:<index>'.")


def _check_cuda(device: str) -> None:
    """Raise `ModelUnavailableError` unless `device` names a CUDA GPU this process can use."""
    import torch

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
    import torch

    if dtype is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ProdvidError(f"dtype {dtype!r} is not supported: use one of {', '.join(DTYPES)}.")
    return getattr(torch, DTYPES[dtype])


# --- loading ---------------------------------------------------------------------------------------------


def load_inpaint_pipeline(
    model: str,
    *,
    device: str = "auto",
    dtype: str | None = None,
    scheduler: str | None = None,
    lora: Sequence[str] = (),
    compile: bool = False,
    offload: bool = False,
    variant: str | None = None,
) -> Any:
    """Return the diffusers inpainting pipeline for `model`, loading it once per process.

    Every step and run in a process shares one copy of the weights: pipelines are cached by (model,
    device, dtype, scheduler, lora, compile, offload, variant), and a different scheduler reuses the loaded
    modules. The returned pipeline is shared, so do not change its components; ask for another scheduler
    instead. LoRAs are fused into the weights, so a pipeline with other LoRAs is a load of its own.

    Args:
        model: a Hub id, a folder with a diffusers checkpoint, or a preset (`"tiny"`, `"tiny-xl"`).
        device: `"auto"`, `"cpu"`, `"cuda"` or `"cuda:<index>"`; `cuda` (and `auto` on a CUDA machine)
            is the GPU this process leases (`leases`: N processes on N GPUs use N different ones).
        dtype: `"float16"`, `"bfloat16"` or `"float32"`; default float16 on CUDA, float32 on the CPU.
        scheduler: one of `SCHEDULERS`; default the checkpoint's own.
        lora: `ID_OR_DIR[:SCALE]` entries (a Hub id, a folder or a `.safetensors` file; scale 1 when left
            out), loaded with diffusers' `load_lora_weights` and fused one after the other.
        compile: regional `torch.compile` of the UNet's and the VAE decoder's repeated blocks (a slow first
            call per shape, faster after; worth it on CUDA); the compiled code is cached in
            `$PRODVID_CACHE/inductor` (TORCHINDUCTOR_CACHE_DIR), so the next process starts warm.
        offload: `enable_model_cpu_offload`: each model waits in CPU memory and moves to the GPU for its
            part of a call, for GPUs under ~10 GB. A no-op on the CPU, where the weights are already.
        variant: None (automatic: the `fp16` weight files when loading in float16 and the checkpoint has
            them), `"fp16"` (required) or `"none"` (the full-precision files).

    Raises:
        ModelUnavailableError: the model cannot be loaded, or is not an inpainting pipeline.

    Example:
        >>> pipe = load_inpaint_pipeline("tiny", device="cpu", scheduler="ddim")
        >>> image = pipe("a bottle on a wooden table", image=canvas, mask_image=mask).images[0]
    """
    # 1. Validate and resolve every argument before touching the disk or the network.
    _check_scheduler(scheduler)
    if variant not in (None, "fp16", "none"):
        raise ProdvidError(f"variant {variant!r} is not supported: use None (automatic), 'fp16' or 'none'.")
    resolved_device = leases.device_for(resolve_device(device))  # `cuda`: this process's leased GPU
    torch_dtype = resolve_dtype(dtype, resolved_device)
    resolved = _cache_name(resolve_model(model))
    options = _Options(tuple(lora), compile, offload and resolved_device.startswith("cuda"), variant)
    key = (resolved, resolved_device, str(torch_dtype), scheduler, options)
    # 2. Load under the lock, so two threads asking for one model load it once.
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build(model, resolved, resolved_device, torch_dtype, scheduler, options)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget every loaded pipeline (tests; freeing GPU memory between unrelated jobs)."""
    with _LOCK:
        _CACHE.clear()


def native_size(pipe: Any) -> int:
    """The side of the square `pipe`'s checkpoint was trained at: UNet `sample_size` × VAE scale factor.

    512 for SD 1.5/2 inpainting (64 × 8), 1024 for SDXL inpainting (128 × 8), 256 for `tiny`, 512 for
    `tiny-xl`. A model paints best at about this many pixels: far below, it paints mush; far above, it
    repeats its subject. A `sample_size` given as (height, width) counts as the square of the same area.

    Example:
        >>> native_size(load_inpaint_pipeline("tiny", device="cpu"))
        256
    """
    sample = pipe.unet.config.sample_size
    if isinstance(sample, list | tuple):
        height, width = (int(side) for side in sample)
        sample = math.isqrt(height * width)
    return int(sample) * int(pipe.vae_scale_factor)


def _cache_name(model: str) -> str:
    """The cache key's model part: an absolute path for a folder, so `./m` and `/abs/m` share a load."""
    return str(Path(model).expanduser().resolve()) if os.path.isdir(os.path.expanduser(model)) else model


class _Options(NamedTuple):
    """What else is done to a loaded pipeline: LoRAs fused, compiled, offloaded, which weight files read."""

    lora: tuple[str, ...] = ()
    compile: bool = False
    offload: bool = False  # only ever True on CUDA
    variant: str | None = None


def _build(
    model: str, resolved: str, device: str, dtype: torch.dtype, scheduler: str | None, options: _Options
) -> Any:
    """Load (or derive from the cached base) one pipeline; the caller holds `_LOCK`.

    Offloaded pipelines are loaded with their own scheduler rather than derived: the offload hooks chain
    one pipeline's models, and sharing hooked modules between pipelines is not something diffusers offers.
    """
    if scheduler is not None and not options.offload:
        base_key = (resolved, device, str(dtype), None, options)
        if base_key not in _CACHE:
            _CACHE[base_key] = _build(model, resolved, device, dtype, None, options)
        return _with_scheduler(_CACHE[base_key], scheduler)
    # 1. The weights: the fp16 files where asked for or automatic and present
    pipe = _from_pretrained(model, resolved, dtype, _variants(resolved, dtype, options.variant))
    _check_inpainting(pipe, model)
    if scheduler is not None:
        pipe.scheduler = _scheduler(pipe, scheduler)
    # 2. LoRAs fused into the weights, before anything is compiled
    _fuse_loras(pipe, options.lora, model)
    # 3. Device, memory layout, compile
    return _prepare(pipe, device, options)


def _check_scheduler(name: str | None) -> None:
    """Raise a `ProdvidError` listing the choices unless `name` is None or one of `SCHEDULERS`."""
    if name is not None and name not in SCHEDULERS:
        raise ProdvidError(f"scheduler {name!r} is not supported: use one of {', '.join(SCHEDULERS)}.")


def _with_scheduler(base: Any, name: str) -> Any:
    """A pipeline sharing `base`'s modules (no second copy of the weights) with scheduler `name`."""
    pipe = type(base).from_pipe(base, scheduler=_scheduler(base, name), dtype=base.dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _scheduler(pipe: Any, name: str) -> Any:
    """Scheduler `name` configured from `pipe`'s own (its betas, timestep spacing, prediction type)."""
    import diffusers

    return getattr(diffusers, SCHEDULERS[name]).from_config(pipe.scheduler.config)


def _fuse_loras(pipe: Any, loras: tuple[str, ...], model: str) -> None:
    """Load each LoRA with diffusers' `load_lora_weights`, fuse it at its scale, and drop its extra layers.

    Fused, a LoRA costs nothing per step (the weights are changed once), and `compile` sees plain layers.
    A LoRA whose keys match no layer of the model would load as nothing at all (diffusers only logs it):
    that is an error here, as is one whose shapes do not fit (a LoRA made for another architecture).
    """
    for i, entry in enumerate(loras):
        name, scale = split_lora(entry)
        source, adapter = _resolve_lora(entry), f"prodvid_{i}"
        folder, weight = (os.path.dirname(source), os.path.basename(source)) if os.path.isfile(source) else (
            source, None)  # fmt: skip
        try:
            pipe.load_lora_weights(folder, weight_name=weight, adapter_name=adapter)
        except (ValueError, RuntimeError, KeyError, OSError) as err:
            raise _lora_unavailable(entry, f"it does not fit model {model!r} ({_first_line(err)})") from err
        if not any(adapter in names for names in pipe.get_list_adapters().values()):
            raise _lora_unavailable(entry, f"none of its weights matches a layer of model {model!r}")
        pipe.fuse_lora(lora_scale=scale, adapter_names=[adapter])
        pipe.unload_lora_weights()


def _variants(resolved: str, dtype: torch.dtype, variant: str | None) -> list[str | None]:
    """The weight-file variants to try in turn: fp16 files first when loading in float16 (automatic: only
    where a folder has them; a Hub id is asked, and read without them when it has none)."""
    import torch

    if variant is not None:
        return [None if variant == "none" else variant]
    if dtype != torch.float16:
        return [None]
    if os.path.isdir(resolved) and not any(Path(resolved).glob("*/*.fp16.*")):
        return [None]
    return ["fp16", None]


def _from_pretrained(model: str, resolved: str, dtype: torch.dtype, variants: list[str | None]) -> Any:
    """Load `resolved` (a folder or a Hub id), turning every way it can be missing into one clear error.

    A Hub id is looked up in the local Hugging Face cache first, so a downloaded model loads offline and
    as downloaded (no update check between runs); only then is the Hub asked, after a quick check that it
    answers at all.
    """
    if os.path.isdir(resolved):
        return _load_variant(model, resolved, dtype, variants, local_files_only=True)
    if not _is_hub_id(resolved):
        raise _unavailable(model, f"there is no folder {resolved!r}")
    try:
        return _load_variant(model, resolved, dtype, variants, local_files_only=True)
    except ModelUnavailableError as cached_error:
        if not isinstance(cached_error.__cause__, OSError):
            raise  # found, but not an inpainting checkpoint
    _check_hub_reachable(model, resolved)
    return _load_variant(model, resolved, dtype, variants, local_files_only=False)


def _load_variant(
    model: str, resolved: str, dtype: torch.dtype, variants: list[str | None], *, local_files_only: bool
) -> Any:
    """`_load` with the first of `variants` that the checkpoint has (diffusers refuses a variant it lacks)."""
    for variant in variants[:-1]:
        try:
            return _load(model, resolved, dtype, local_files_only=local_files_only, variant=variant)
        except ModelUnavailableError:
            continue  # no such files (or not cached): the next variant
    return _load(model, resolved, dtype, local_files_only=local_files_only, variant=variants[-1])


def _load(
    model: str, resolved: str, dtype: torch.dtype, *, local_files_only: bool, variant: str | None = None
) -> Any:
    """`AutoPipelineForInpainting.from_pretrained` with its errors turned into `ModelUnavailableError`."""
    from diffusers import AutoPipelineForInpainting

    safetensors_only = _has_safetensors(resolved)
    try:
        return AutoPipelineForInpainting.from_pretrained(
            resolved, dtype=dtype, local_files_only=local_files_only, use_safetensors=safetensors_only,
            variant=variant,
        )  # fmt: skip
    except OSError as err:  # missing files, offline, not a diffusers folder (HF errors are OSErrors too)
        where = "in that folder" if os.path.isdir(resolved) else "locally or on the Hub"
        if safetensors_only:
            where += " (it has .safetensors weights, so only those are read: every component needs them)"
        raise _unavailable(model, f"no loadable diffusers checkpoint {where} ({_first_line(err)})") from err
    except (ValueError, ImportError) as err:  # a pipeline class with no inpainting variant, a missing extra
        reason = f"it is not a diffusers inpainting checkpoint ({_first_line(err)})"
        raise _unavailable(model, reason) from err


def _has_safetensors(resolved: str) -> bool | None:
    """True for a folder holding `.safetensors` weights: then only those are read (`use_safetensors=True`),
    so a pickled `.bin` beside them, or in place of one component's, is never unpickled; None (either
    format, safetensors first) for a folder of `.bin` files only and for a Hub id, where diffusers itself
    downloads only the safetensors files of a repo that has them for every component."""
    if not os.path.isdir(resolved):
        return None
    return any(Path(resolved).glob("*/*.safetensors")) or None


def _is_hub_id(name: str) -> bool:
    """Whether `name` has the form of a Hub repo id (`owner/name` or `name`) rather than of a path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _check_hub_reachable(model: str, repo_id: str, *, unavailable=None) -> None:
    """Fail within seconds if the Hub cannot be reached or has no such model.

    huggingface_hub retries an unreachable host with back-off for about 23 seconds before giving up; one
    short request tells the offline case apart at once. Other answers (a gated repo, a 5xx) go on to the
    download, whose own error is reported.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    fail = unavailable or _unavailable  # a model's message, or a LoRA's
    if constants.is_offline_mode():
        raise fail(model, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        HfApi().model_info(repo_id, timeout=_HUB_PROBE_TIMEOUT_S)
    except RepositoryNotFoundError as err:
        reason = "the Hub has no such model (or it is private: log in with `hf auth login`)"
        raise fail(model, reason) from err
    except HfHubHTTPError:
        return  # the Hub answered (e.g. gated, 5xx): let the download report the details
    except Exception as err:  # no answer at all: DNS, refused, timeout, proxy (the HTTP client's own types)
        reason = f"it is not in the local cache and the Hub ({constants.ENDPOINT}) cannot be reached ({err})"
        raise fail(model, reason) from err


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


def _prepare(pipe: Any, device: str, options: _Options) -> Any:
    """Put `pipe` on `device` (or offload it to there) and apply the speed settings.

    Attention already runs through torch's scaled-dot-product kernel (SDPA, diffusers' default with torch
    2: `AttnProcessor2_0`, flash or memory-efficient attention on CUDA). On CUDA the UNet and VAE take
    channels-last tensors, the layout the convolution kernels of tensor cores want.
    """
    import torch

    # 1. Where the weights live: on the device, or in CPU memory with model offload (CUDA only)
    if options.offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if device.startswith("cuda"):
        for module in (getattr(pipe, "unet", None), getattr(pipe, "vae", None)):
            if module is not None:
                module.to(memory_format=torch.channels_last)
    # 2. Regional compile: each repeated block once, so compiling costs seconds, not minutes
    if options.compile:
        _compile(pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _compile(pipe: Any) -> None:
    """`torch.compile` the UNet's and the VAE decoder's repeated blocks (regional compilation).

    The UNet's are its transformer blocks (diffusers' `compile_repeated_blocks`, from the model's own
    `_repeated_blocks`); diffusers names none for the VAE, so its decoder's resnet blocks are compiled one
    by one. Identical blocks share one compiled graph per input shape, and inductor's cache lives in
    `$PRODVID_CACHE/inductor` (unless TORCHINDUCTOR_CACHE_DIR is set), so a second process reuses it.
    """
    from diffusers.models.resnet import ResnetBlock2D
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # torch writes its default into the environment once it has looked: only a user's own choice is kept
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, os.path.abspath(default_cache_dir())):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_root() / "inductor")
    unet = getattr(pipe, "unet", None)
    if unet is not None:
        unet.compile_repeated_blocks()
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        for module in vae.decoder.modules():
            if isinstance(module, ResnetBlock2D):
                module.compile()
