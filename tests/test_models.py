"""prodvid_core.models: presets and checkpoints load through from_pretrained, once; failures are clear."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prodvid_core import models, presets
from prodvid_core.errors import ModelUnavailableError, ProdvidError

PROMPT = "a bottle on a wooden table"


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prodvid cache for the whole session, so tests never write to the user's home."""
    return tmp_path_factory.mktemp("prodvid-cache")


@pytest.fixture(scope="session")
def tiny_dir(cache_root: Path) -> Path:
    return presets.tiny_model_dir(cache_root)


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch: pytest.MonkeyPatch, cache_root: Path) -> None:
    """Point `"tiny"` at the session cache."""
    monkeypatch.setenv("PRODVID_CACHE", str(cache_root))


@pytest.fixture
def tiny_pipe(tiny_dir: Path):
    """The cached tiny pipeline (loaded once per process unless a test clears the cache)."""
    return models.load_inpaint_pipeline(str(tiny_dir), device="cpu")


def _inpaint(pipe, *, size: int = 64, seed: int = 0) -> np.ndarray:
    """One 2-step call: a white canvas with the centre kept and the border painted."""
    image = Image.new("RGB", (size, size), "white")
    mask = Image.new("L", (size, size), 255)
    mask.paste(0, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    out = pipe(
        PROMPT,
        image=image,
        mask_image=mask,
        height=size,
        width=size,
        num_inference_steps=2,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]
    return np.asarray(out)


# --- loading ---------------------------------------------------------------------------------------------


def test_tiny_loads_through_auto_pipeline_with_real_classes(tiny_pipe) -> None:
    assert type(tiny_pipe).__name__ == "StableDiffusionInpaintPipeline"
    assert tiny_pipe.vae_scale_factor == 8
    assert tiny_pipe.unet.config.in_channels == 9
    assert type(tiny_pipe.text_encoder).__name__ == "CLIPTextModel"
    assert type(tiny_pipe.tokenizer).__name__ == "CLIPTokenizer"
    assert type(tiny_pipe.scheduler).__name__ == "PNDMScheduler"
    assert tiny_pipe.safety_checker is None
    assert tiny_pipe.unet.dtype == torch.float32
    assert tiny_pipe.device.type == "cpu"


def test_loading_twice_returns_the_cached_pipeline(tiny_dir: Path, tiny_pipe) -> None:
    assert models.load_inpaint_pipeline(str(tiny_dir), device="cpu") is tiny_pipe
    assert models.load_inpaint_pipeline("tiny", device="cpu") is tiny_pipe
    assert models.load_inpaint_pipeline("tiny", device="cpu", dtype="float32") is tiny_pipe


def test_concurrent_loads_share_one_pipeline(tiny_dir: Path) -> None:
    barrier = threading.Barrier(3)
    results = []

    def load() -> None:
        barrier.wait()
        results.append(models.load_inpaint_pipeline(str(tiny_dir), device="cpu", dtype="bfloat16"))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and results[0] is results[1] is results[2]
    assert results[0].unet.dtype == torch.bfloat16


def test_clear_cache_forgets_loaded_pipelines(tiny_pipe) -> None:
    models.clear_cache()
    assert models.load_inpaint_pipeline("tiny", device="cpu") is not tiny_pipe


def test_resolve_model_maps_only_the_presets(cache_root: Path, tiny_dir: Path) -> None:
    assert models.resolve_model(models.TINY_PRESET) == str(tiny_dir)
    assert models.resolve_model(models.TINY_XL_PRESET) == str(cache_root / "tiny-xl-v1")
    assert models.resolve_model(models.DEFAULT_HERO_MODEL) == models.DEFAULT_HERO_MODEL
    assert models.resolve_model("/some/folder") == "/some/folder"


def test_native_size_is_the_unet_sample_size_times_the_vae_scale_factor(tiny_pipe) -> None:
    from types import SimpleNamespace

    assert models.native_size(tiny_pipe) == 32 * 8 == 256
    assert models.native_size(models.load_inpaint_pipeline("tiny-xl", device="cpu")) == 64 * 8 == 512
    for sample_size, side in ((128, 1024), ([96, 96], 768), ((64, 144), 768)):  # a (height, width) pair:
        pipe = SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(sample_size=sample_size)))
        pipe.vae_scale_factor = 8
        assert models.native_size(pipe) == side  # the square of the same area


# --- an inpainting call ----------------------------------------------------------------------------------


def test_inpainting_call_has_the_right_size_and_is_seeded(tiny_pipe) -> None:
    first = _inpaint(tiny_pipe, size=128, seed=0)
    again = _inpaint(tiny_pipe, size=128, seed=0)
    other = _inpaint(tiny_pipe, size=128, seed=1)
    assert first.shape == (128, 128, 3) and first.dtype == np.uint8
    assert first.std() > 0  # not a blank image
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


SCHEDULER_CLASSES = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "lcm": "LCMScheduler",
    "tcd": "TCDScheduler",
}


def test_every_scheduler_name_is_tested() -> None:
    assert set(models.SCHEDULERS) == set(SCHEDULER_CLASSES)


@pytest.mark.parametrize(("name", "class_name"), sorted(SCHEDULER_CLASSES.items()))
@pytest.mark.parametrize(
    ("preset", "own"), [("tiny", "PNDMScheduler"), ("tiny-xl", "EulerDiscreteScheduler")]
)
def test_scheduler_switch_shares_the_weights(name: str, class_name: str, preset: str, own: str) -> None:
    base = models.load_inpaint_pipeline(preset, device="cpu")
    pipe = models.load_inpaint_pipeline(preset, device="cpu", scheduler=name)
    assert type(pipe).__name__ == type(base).__name__
    assert type(pipe.scheduler).__name__ == class_name
    assert pipe.unet is base.unet and pipe.vae is base.vae
    assert type(base.scheduler).__name__ == own  # the shared base is unchanged
    assert models.load_inpaint_pipeline(preset, device="cpu", scheduler=name) is pipe
    assert _inpaint(pipe, size=64).shape == (64, 64, 3)


def test_unknown_scheduler_names_the_choices() -> None:
    with pytest.raises(ProdvidError, match=r"'karras-magic'.*ddim.*euler_a"):
        models.load_inpaint_pipeline("tiny", device="cpu", scheduler="karras-magic")


# --- models that cannot be loaded ------------------------------------------------------------------------


def test_unavailable_hub_id_fails_fast_with_the_fix(tiny_pipe) -> None:
    """No network here (or, with one, no such repo): either way one clear error within seconds."""
    model = "nobody/does-not-exist-inpainting"
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        models.load_inpaint_pipeline(model, device="cpu")
    assert time.perf_counter() - start < 6
    message = str(info.value)
    assert model in message
    assert f"hf download {model}" in message
    assert "tiny" in message and "PRODVID_PRESET=tiny" in message


def test_missing_local_folder_fails_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "no-such-model"
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="tiny") as info:
        models.load_inpaint_pipeline(str(folder), device="cpu")
    assert time.perf_counter() - start < 1
    assert str(folder) in str(info.value) and "no folder" in str(info.value)


def test_folder_without_a_checkpoint_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match=r"model_index\.json") as info:
        models.load_inpaint_pipeline(str(tmp_path), device="cpu")
    assert str(tmp_path) in str(info.value)


def test_a_checkpoint_that_cannot_inpaint_is_unavailable(tmp_path: Path) -> None:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    blocks = {"down_block_types": ("DownBlock2D",) * 2, "up_block_types": ("UpBlock2D",) * 2}
    unet = UNet2DModel(sample_size=8, block_out_channels=(8, 8), norm_num_groups=4, **blocks)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path / "ddpm")
    with pytest.raises(ModelUnavailableError, match="not a diffusers inpainting checkpoint"):
        models.load_inpaint_pipeline(str(tmp_path / "ddpm"), device="cpu")


def _save_sd_variant(folder: Path, tiny_pipe, *, in_channels: int, text_to_image: bool) -> Path:
    """The tiny pipeline's modules around a UNet with `in_channels` inputs, saved as a checkpoint."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_config({**tiny_pipe.unet.config, "in_channels": in_channels})
    parts = {name: getattr(tiny_pipe, name) for name in ("vae", "text_encoder", "tokenizer", "scheduler")}
    cls = StableDiffusionPipeline if text_to_image else StableDiffusionInpaintPipeline
    pipe = cls(**parts, unet=unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def test_a_text_to_image_checkpoint_loads_as_a_4_channel_inpainter(tmp_path: Path, tiny_pipe) -> None:
    folder = _save_sd_variant(tmp_path / "sd", tiny_pipe, in_channels=4, text_to_image=True)
    pipe = models.load_inpaint_pipeline(str(folder), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline"
    assert pipe.unet.config.in_channels == 4
    assert _inpaint(pipe, size=64).shape == (64, 64, 3)


def test_a_unet_with_other_input_channels_is_rejected(tmp_path: Path, tiny_pipe) -> None:
    folder = _save_sd_variant(tmp_path / "odd", tiny_pipe, in_channels=5, text_to_image=False)
    with pytest.raises(ModelUnavailableError, match="5 input channels"):
        models.load_inpaint_pipeline(str(folder), device="cpu")


# --- device and dtype ------------------------------------------------------------------------------------


def test_auto_device_picks_what_is_there() -> None:
    assert models.resolve_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert models.resolve_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_asking_for_missing_cuda_is_an_error_not_a_fallback(device: str) -> None:
    with pytest.raises(ModelUnavailableError, match="CUDA is not available"):
        models.resolve_device(device)
    with pytest.raises(ModelUnavailableError):
        models.load_inpaint_pipeline("tiny", device=device)


def test_unknown_device_is_an_error() -> None:
    with pytest.raises(ProdvidError, match=r"'tpu'.*'cpu'"):
        models.resolve_device("tpu")


def test_dtype_defaults_and_overrides() -> None:
    assert models.resolve_dtype(None, "cpu") == torch.float32
    assert models.resolve_dtype(None, "cuda") == torch.float16
    assert models.resolve_dtype("bfloat16", "cuda:0") == torch.bfloat16
    assert models.resolve_dtype("float32", "cuda") == torch.float32
    with pytest.raises(ProdvidError, match=r"'int8'.*float16"):
        models.resolve_dtype("int8", "cpu")
