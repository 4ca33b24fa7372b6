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

Environment:
    PRODVID_CACHE   folder for prodvid's own cache, where the presets are written (default
                    `~/.cache/prodvid`).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prodvid_core import leases
from prodvid_core.errors import ModelUnavailableError, ProdvidError
from prodvid_core.presets import PRESETS, TINY_PRESET, TINY_XL_PRESET, preset_dir

if TYPE_CHECKING:  # torch is imported where it is used: checking a request must not wait for it
    import torch

__all__ = [
    "DEFAULT_HERO_MODEL",
    "DEFAULT_FRAMES_MODEL",
    "TINY_PRESET",
    "TINY_XL_PRESET",
    "PRESETS",
    "SCHEDULERS",
    "DTYPES",
    "resolve_model",
    "check_available",
    "resolve_device",
    "resolve_dtype",
    "load_inpaint_pipeline",
    "native_size",
    "clear_cache",
]

DEFAULT_HERO_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
DEFAULT_FRAMES_MODEL = "stabilityai/stable-diffusion-2-inpainting"

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

_CACHE: dict[tuple[str, str, str, str | None, bool], Any] = {}
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
    compile: bool = False,
) -> Any:
    """Return the diffusers inpainting pipeline for `model`, loading it once per process.

    Every step and run in a process shares one copy of the weights: pipelines are cached by (model,
    device, dtype, scheduler, compile), and a different scheduler reuses the loaded modules. The returned
    pipeline is shared, so do not change its components; ask for another scheduler instead.

    Args:
        model: a Hub id, a folder with a diffusers checkpoint, or a preset (`"tiny"`, `"tiny-xl"`).
        device: `"auto"`, `"cpu"`, `"cuda"` or `"cuda:<index>"`; `cuda` (and `auto` on a CUDA machine)
            is the GPU this process leases (`leases`: N processes on N GPUs use N different ones).
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
    resolved_device = leases.device_for(resolve_device(device))  # `cuda`: this process's leased GPU
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

    safetensors_only = _has_safetensors(resolved)
    try:
        return AutoPipelineForInpainting.from_pretrained(
            resolved, dtype=dtype, local_files_only=local_files_only, use_safetensors=safetensors_only
        )
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
    import torch

    pipe.to(device)
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if device.startswith("cuda") and getattr(pipe, "unet", None) is not None:
        pipe.unet.to(memory_format=torch.channels_last)
    if compile and denoiser is not None:
        denoiser.compile()
    pipe.set_progress_bar_config(disable=True)
    return pipe
