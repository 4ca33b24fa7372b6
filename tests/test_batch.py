"""Many SKUs per diffusion call: the batch paints what each SKU would have painted alone, but for the last
bits; the product stays exact; a batch retries only its unusable requests; frames batch in lockstep."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from photos import labelled_box
from pipe_wrappers import FailAfter, Wrapped
from prodvid_core import camera, frames, hero, layout, resample, verify
from prodvid_core.brief import parse_brief
from prodvid_core.canvas import expand
from prodvid_core.errors import GenerationError
from prodvid_core.inpaint import PaintRequest, Prompt, inpaint_batch
from prodvid_core.mask import segment
from prodvid_core.run import Settings, make_heroes
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore

SIZE = 256
PROMPTS = ["a red box on a wooden table", "a red box on a beach", "a red box in a forest"]


class PromptsAndPoison(Wrapped):
    """Records each call's prompts and makes the outputs of `poison` prompts NaN (the first `poison_calls`
    times), as an fp16 overflow would."""

    def __init__(self, pipe, poison: str | None = None, poison_calls: int = 1):
        super().__init__(pipe)
        self.poison, self.poison_calls = poison, poison_calls
        self.prompts: list[list[str]] = []

    def __call__(self, **kwargs):
        self.prompts.append(list(kwargs["prompt"]))
        out = super().__call__(**kwargs)
        if self.poison and self.calls <= self.poison_calls:
            for i, prompt in enumerate(kwargs["prompt"]):
                if prompt == self.poison:
                    out.images[i][:] = np.nan
        return out


def _requests(prompts=PROMPTS) -> list[PaintRequest]:
    rng = np.random.default_rng(0)
    paint = np.zeros((SIZE, SIZE), dtype=bool)
    paint[:, : SIZE // 3] = True
    return [
        PaintRequest(
            rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), paint, Prompt(p, steps=2),
            seed=i, step=4, sku=f"SKU-{i}", what="frame 4",
        )
        for i, p in enumerate(prompts)
    ]  # fmt: skip


def test_a_batch_paints_each_request_as_alone_but_for_the_last_bits(tiny_pipe):
    requests = _requests()
    together = inpaint_batch(tiny_pipe, requests)
    alone = [inpaint_batch(tiny_pipe, [r])[0][0] for r in requests]
    paint = requests[0].paint
    for i, (image, attempt) in enumerate(together):
        assert attempt == 0
        diff = np.abs(image.astype(int) - alone[i].astype(int))[paint]
        # its own seed's noise, whoever shares the call: a few values one or two levels off at most
        assert diff.max() <= 4 and (diff > 0).mean() < 0.02, (i, diff.max(), (diff > 0).mean())
        other = np.abs(image.astype(int) - alone[(i + 1) % 3].astype(int))[paint]
        assert other.mean() > 20 * max(diff.mean(), 0.01)


def test_a_batch_is_deterministic(tiny_pipe):
    first = inpaint_batch(tiny_pipe, _requests())
    again = inpaint_batch(tiny_pipe, _requests())
    for (a, _), (b, _) in zip(first, again, strict=True):
        assert np.array_equal(a, b)


def test_only_the_unusable_request_is_painted_again_with_its_next_seed(tiny_pipe):
    pipe = PromptsAndPoison(tiny_pipe, poison=PROMPTS[1])
    results = inpaint_batch(pipe, _requests())
    assert [attempt for _, attempt in results] == [0, 1, 0]
    assert pipe.prompts == [PROMPTS, [PROMPTS[1]]]
    assert all(np.isfinite(image).all() for image, _ in results)


def test_a_request_unusable_every_time_names_its_sku_and_frame(tiny_pipe):
    pipe = PromptsAndPoison(tiny_pipe, poison=PROMPTS[2], poison_calls=99)
    with pytest.raises(GenerationError, match=r"SKU SKU-2: .*NaN.* for frame 4 3 times"):
        inpaint_batch(pipe, _requests(), max_retries=2)
    assert pipe.prompts == [PROMPTS, [PROMPTS[2]], [PROMPTS[2]]]


def test_requests_of_different_sizes_are_refused_before_painting(tiny_pipe):
    requests = _requests()
    small = PaintRequest(
        requests[0].image[:128], requests[0].paint[:128], requests[0].prompt,
        seed=0, step=0, sku="SMALL-1", what="the hero image",
    )  # fmt: skip
    pipe = PromptsAndPoison(tiny_pipe)
    with pytest.raises(ValueError, match="SMALL-1"):
        inpaint_batch(pipe, [requests[0], small])
    assert pipe.prompts == []


@pytest.fixture(scope="module")
def box():
    return labelled_box(SIZE)


def test_hero_batch_keeps_every_product_exact_in_one_call_per_batch(tiny_pipe, box):
    canvas, mask = box
    requests = [hero.HeroRequest(f"BOX-{i}", canvas, mask, p, seed=i) for i, p in enumerate(PROMPTS)]
    pipe = PromptsAndPoison(tiny_pipe)
    results = hero.generate_batch(pipe, requests, steps=2, batch_size=2)
    assert pipe.prompts == [PROMPTS[:2], PROMPTS[2:]]
    assert [r.batch for r in results] == [["BOX-0", "BOX-1"], ["BOX-0", "BOX-1"], ["BOX-2"]]
    product = np.asarray(mask) == 255
    for result in results:
        diff = verify.product_diff(canvas, mask, result.image)
        assert diff.exact and diff.visible == product.sum()
        assert not np.array_equal(np.asarray(result.image)[~product], np.asarray(canvas)[~product])
    assert not np.array_equal(np.asarray(results[0].image), np.asarray(results[1].image))
    alone = hero.generate(tiny_pipe, canvas, mask, sku="BOX-2", prompt=PROMPTS[2], seed=2, steps=2)
    assert np.array_equal(np.asarray(alone.image), np.asarray(results[2].image))  # a batch of one is alone


PAN = camera.pan((-150, -40), num_frames=12, fps=12)  # 4 calls at lookahead 32, windows unlike DRIFT
DRIFT = camera.pan((-100, 0), num_frames=8, fps=12)  # 2 calls


def _frame_requests(image) -> list[frames.FramesRequest]:
    def settings(prompt, seed):
        return frames.FrameSettings(prompt=prompt, seed=seed, steps=2, lookahead=32, max_window=384)

    return [
        frames.FramesRequest("A", image, PAN, settings(PROMPTS[0], 1)),
        frames.FramesRequest("C", image, DRIFT, settings(PROMPTS[2], 3)),
        frames.FramesRequest("B", image, PAN, settings(PROMPTS[1], 2)),
    ]


def _stored(store: LocalStore, sku: str) -> dict[str, bytes]:
    """Everything stored for `sku`'s frames: the world checkpoint and the manifest."""
    return {k: store.read_bytes(k) for k in store.list(layout.frames_prefix(sku))}


def _assert_product_exact(store, sku, canvas, mask, manifest):
    for frame, record in zip(frames.load_frames(store, sku), manifest["frames"], strict=True):
        diff = verify.product_diff(canvas, mask, frame, offset=record["offset"])
        assert diff.visible > 0 and diff.exact, (sku, record["index"], diff)


def test_frames_of_skus_with_the_same_windows_share_calls_in_lockstep(tiny_pipe, box, tmp_path):
    canvas, mask = box
    image = hero.generate(tiny_pipe, canvas, mask, sku="BOX", prompt=PROMPTS[0], steps=2).image
    store = LocalStore(tmp_path)
    pipe = PromptsAndPoison(tiny_pipe)
    results = frames.generate_batch(pipe, store, _frame_requests(image), batch_size=3)
    assert [r.sku for r in results] == ["A", "C", "B"]
    a, c, b = results

    # A and B (same path) painted every call together; C (other windows) joined the calls of a round whose
    # window fell in the same bucket (working size), and painted the others alone
    assert a.calls_made == b.calls_made >= 2 and c.calls_made >= 1
    assert all({"A", "B"} <= set(call["batch"]) for call in a.manifest["calls"])
    expected, shared, calls = {}, 0, 0
    for r in range(max(a.calls_made, c.calls_made)):
        groups: dict[tuple, list[str]] = {}
        for result in results:
            if r < result.calls_made:
                window = result.manifest["calls"][r]["window"]
                size = (window[2] - window[0], window[3] - window[1])
                groups.setdefault(resample.working_size(size, native=SIZE), []).append(result.sku)
        expected |= {(sku, r): group for group in groups.values() for sku in group}
        shared += len(groups) == 1 and r < c.calls_made
        calls += len(groups)
    for result in results:
        assert [sorted(call["batch"]) for call in result.manifest["calls"]] == [
            sorted(expected[result.sku, r]) for r in range(result.calls_made)
        ]
    assert shared >= 1  # C's first window (the drift) shares the bucket of the pan's
    assert len(pipe.prompts) == calls
    for result in results:
        assert result.count == len(result.manifest["frames"])
        _assert_product_exact(store, result.sku, canvas, mask, result.manifest)
    frame_11 = [list(frames.load_frames(store, sku, indices=[11]))[0] for sku in "AB"]
    assert not np.array_equal(*frame_11)

    # a batch of one SKU at a time writes exactly what separate runs write
    one, separate = LocalStore(tmp_path / "one"), LocalStore(tmp_path / "separate")
    pipe = PromptsAndPoison(tiny_pipe)
    frames.generate_batch(pipe, one, _frame_requests(image), batch_size=1)
    assert all(len(call) == 1 for call in pipe.prompts)
    for request in _frame_requests(image):
        frames.generate(tiny_pipe, separate, request.hero, request.path, request.settings, sku=request.sku)
        assert _stored(one, request.sku) == _stored(separate, request.sku)


def test_a_batched_run_resumes_every_sku_where_it_stopped(tiny_pipe, box, tmp_path):
    canvas, mask = box
    image = hero.generate(tiny_pipe, canvas, mask, sku="BOX", prompt=PROMPTS[0], steps=2).image
    uninterrupted = LocalStore(tmp_path / "whole")
    whole = frames.generate_batch(tiny_pipe, uninterrupted, _frame_requests(image), batch_size=3)

    store = LocalStore(tmp_path / "broken")
    with pytest.raises(RuntimeError, match="after 2 calls"):  # C shares the first call's bucket
        frames.generate_batch(FailAfter(tiny_pipe, 2), store, _frame_requests(image), batch_size=3)
    kept = {sku: len((frames.read_manifest(store, sku) or {"frames": []})["frames"]) for sku in "ACB"}
    last_call = {sku: _checkpointed_call(store, sku) for sku in "ACB"}
    assert any(kept.values()) and any(kept[full.sku] < full.count for full in whole)

    resumed = frames.generate_batch(tiny_pipe, store, _frame_requests(image), batch_size=3)
    for after, full in zip(resumed, whole, strict=True):
        assert after.frames_reused == kept[after.sku]
        assert after.count == full.count
        # the calls after the last checkpointed one, and no more
        assert after.calls_made == full.calls_made - (last_call[after.sku] + 1)
        _assert_product_exact(store, after.sku, canvas, mask, after.manifest)
        assert _stored(store, after.sku) == _stored(uninterrupted, after.sku)  # world and manifest


def _checkpointed_call(store: LocalStore, sku: str) -> int:
    """The index of the last call in `sku`'s world checkpoint, -1 without one."""
    if not store.exists(layout.world_checkpoint(sku)):
        return -1
    with Image.open(io.BytesIO(store.read_bytes(layout.world_checkpoint(sku)))) as checkpoint:
        return int(checkpoint.text["call"])


def test_make_heroes_batches_only_the_skus_it_has_to_paint(tmp_path):
    store = LocalStore(tmp_path)
    settings = Settings(size=SIZE, steps=2, device="cpu", batch_size=3).with_preset("tiny")
    expanded = expand(sample_photo_bytes(size=(300, 400)), sku="H-0", size=SIZE)
    product = segment(expanded.image, sku="H-0")
    inputs = {
        f"H-{i}": (expanded, product, parse_brief({"prompt": PROMPTS[i], "seed": i}, sku=f"H-{i}"))
        for i in range(3)
    }
    first = make_heroes(store, {"H-1": inputs["H-1"]}, settings)
    assert first["H-1"][1] is False and first["H-1"][0].batch == ["H-1"]

    made = make_heroes(store, inputs, settings)
    assert list(made) == ["H-0", "H-1", "H-2"]
    assert [reused for _, reused in made.values()] == [False, True, False]
    assert made["H-0"][0].batch == made["H-2"][0].batch == ["H-0", "H-2"]
    assert made["H-1"][0].batch == ["H-1"]  # as stored by the run that made it
    for sku, (result, _) in made.items():
        assert verify.product_diff(expanded.image, product, result.image).exact
        assert store.read_bytes(f"hero_image/{sku}.png")


def test_a_hero_painted_at_an_overridden_model_size_is_reused(tmp_path):
    """`model_size` decides the hero's pixels, so the sidecar records it: the same settings reuse the stored
    hero image, another model size paints it again."""
    store = LocalStore(tmp_path)
    settings = Settings(size=SIZE, steps=2, device="cpu", model_size=128).with_preset("tiny")
    expanded = expand(sample_photo_bytes(size=(300, 400)), sku="H-0", size=SIZE)
    inputs = {"H-0": (expanded, segment(expanded.image, sku="H-0"), parse_brief({"prompt": "x"}, sku="H-0"))}
    assert make_heroes(store, inputs, settings)["H-0"][1] is False
    assert json.loads(store.read_bytes("hero_image/H-0.json"))["model_size"] == 128
    assert make_heroes(store, inputs, settings)["H-0"][1] is True
    assert make_heroes(store, inputs, replace(settings, model_size=None))["H-0"][1] is False
