"""The whole pipeline against diffusers' FluxPipeline, from injected latents, plus its contract."""

from __future__ import annotations

import numpy as np
import pytest

from mlx_flux import FluxPipeline, __version__
from mlx_flux.errors import Cancelled, FluxError
from mlx_flux.pipeline import InputError
from mlx_flux.request import GenerationRequest

PROMPT = "a tiny lighthouse on a cliff at dusk, oil painting"


@pytest.fixture(scope="module")
def schnell(tiny_schnell):
    return FluxPipeline.from_pretrained(tiny_schnell, dtype="float32")


@pytest.fixture(scope="module")
def dev(tiny_dev):
    return FluxPipeline.from_pretrained(tiny_dev, dtype="float32")


def diffusers_run(root, variant, latents, width, height, steps, torch):
    """The reference: diffusers FluxPipeline on the same files, same initial noise."""
    from diffusers import FluxPipeline as Reference

    ref = Reference.from_pretrained(root, dtype=torch.float32)
    ref.set_progress_bar_config(disable=True)
    packed = Reference._pack_latents(torch.from_numpy(latents), 1, latents.shape[1], height // 8, width // 8)
    kwargs = dict(prompt=PROMPT, width=width, height=height, num_inference_steps=steps, latents=packed,
                  max_sequence_length=256 if variant == "schnell" else 512,
                  guidance_scale=0.0 if variant == "schnell" else 3.5)
    with torch.no_grad():
        out_latents = ref(output_type="latent", **kwargs).images
        image = ref(output_type="np", **kwargs).images[0]
    unpacked = Reference._unpack_latents(out_latents, height, width, ref.vae_scale_factor)
    return unpacked.numpy(), image


def rel_err(a, b):
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


@pytest.mark.parametrize("variant, width, height, steps", [
    ("schnell", 64, 64, 4),
    ("schnell", 96, 48, 2),
    ("dev", 80, 64, 3),
])
def test_matches_diffusers_from_injected_latents(variant, width, height, steps, request, torch_ref):
    root = request.getfixturevalue(f"tiny_{variant}")
    pipe = request.getfixturevalue(variant)
    latents = np.random.default_rng(7).standard_normal((1, 16, height // 8, width // 8)).astype(np.float32)
    result = pipe.generate(PROMPT, width=width, height=height, steps=steps, latents=latents, seed=3)
    ref_latents, ref_image = diffusers_run(root, variant, latents, width, height, steps, torch_ref)

    assert result.latents.shape == ref_latents.shape == (1, 16, height // 8, width // 8)
    err = rel_err(result.latents, ref_latents)
    print(f"pipeline {variant} {width}x{height}: latents max rel err {err:.2e}")
    assert err < 5e-5  # measured 2e-6 .. 7e-6
    ours = np.asarray(result.image, dtype=np.float32) / 255.0
    assert result.image.size == (width, height)
    # 8-bit rounding: at most one level apart.
    assert np.abs(ours - ref_image).max() <= 1.0 / 255 + 1e-4


@pytest.mark.parametrize("variant, prefix", [("schnell", ""), ("dev", "model.diffusion_model.")])
def test_single_files_give_the_same_image(variant, prefix, request):
    root = request.getfixturevalue(f"tiny_{variant}")
    pipe = request.getfixturevalue(variant)
    single = FluxPipeline.from_pretrained(root / f"flux1-{variant}.safetensors", base=root, dtype="float32")
    assert single.variant == variant
    assert single.files.vae.name == "ae.safetensors"
    a = pipe.generate(PROMPT, width=64, height=48, steps=2, seed=11)
    b = single.generate(PROMPT, width=64, height=48, steps=2, seed=11)
    np.testing.assert_allclose(a.latents, b.latents, rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(a.image, np.int16) - np.asarray(b.image, np.int16)).max() <= 1


def test_variant_defaults(schnell, dev):
    assert (schnell.variant, schnell.default_steps, schnell.default_guidance) == ("schnell", 4, None)
    assert (dev.variant, dev.default_steps, dev.default_guidance) == ("dev", 28, 3.5)
    assert schnell.t5_length == 256 and dev.t5_length == 512


def test_seed_reproducible_and_recorded(schnell):
    a = schnell.generate(PROMPT, width=32, height=32, steps=2, seed=5)
    b = schnell.generate(PROMPT, width=32, height=32, steps=2, seed=5)
    c = schnell.generate(PROMPT, width=32, height=32, steps=2, seed=6)
    assert np.array_equal(a.latents, b.latents) and not np.array_equal(a.latents, c.latents)
    r = schnell.generate(PROMPT, width=32, height=32, steps=1)
    assert isinstance(r.seed, int) and r.metadata["seed"] == r.seed
    again = schnell.generate(PROMPT, width=32, height=32, steps=1, seed=r.seed)
    assert np.array_equal(r.latents, again.latents)


def test_metadata_has_no_local_paths(schnell, tiny_schnell):
    r = schnell.generate(PROMPT, width=32, height=32, steps=1, seed=1)
    assert r.metadata == {"prompt": PROMPT, "seed": 1, "steps": 1, "guidance": None, "width": 32, "height": 32,
                          "image": None, "strength": None, "mask": None, "expand": None,
                          "model": tiny_schnell.name, "quantize": None,
                          "loras": [], "mode": "text-to-image", "schema": 1, "version": __version__}
    assert str(tiny_schnell.parent) not in str(r.metadata)


def test_the_result_carries_the_resolved_request(schnell, dev, tiny_dev):
    r = dev.generate(PROMPT, width=48, height=32, steps=2)
    assert r.request == GenerationRequest(PROMPT, width=48, height=32, steps=2, guidance=3.5, seed=r.seed,
                                          model=tiny_dev.name, quantize=None, mode="text-to-image")
    # schnell has no guidance embedding: a value given is not recorded as if it had been used
    assert schnell.generate(PROMPT, width=32, height=32, steps=1, seed=1, guidance=7.0).request.guidance is None


def test_a_request_remakes_its_image(dev):
    """The request a result carries, passed back in, gives the same image (what restore relies on)."""
    first = dev.generate(PROMPT, width=48, height=32, steps=2, guidance=5.0)
    again = dev.generate(first.request)
    assert again.request == first.request
    np.testing.assert_array_equal(again.latents, first.latents)
    # and the batch API takes a request too, each result with its own seed
    batch = dev.generate_batch(first.request, seeds=[first.seed, first.seed + 1], max_batch=1)
    np.testing.assert_array_equal(batch[0].latents, first.latents)
    assert [r.request for r in batch] == [first.request, first.request.with_(seed=first.seed + 1)]


def test_options_beside_a_request_are_refused(schnell):
    with pytest.raises(InputError, match="pass steps inside the request"):
        schnell.generate(GenerationRequest(PROMPT, width=32, height=32), steps=3)


def test_dev_guidance_changes_the_image(dev):
    a = dev.generate(PROMPT, width=32, height=32, steps=2, seed=1)
    b = dev.generate(PROMPT, width=32, height=32, steps=2, seed=1, guidance=7.0)
    assert a.metadata["guidance"] == 3.5 and b.metadata["guidance"] == 7.0
    assert not np.allclose(a.latents, b.latents)


def test_step_events_and_previews(schnell):
    events = []

    def callback(event):
        events.append((event.step, event.total, event.elapsed, event.preview()))

    schnell.generate(PROMPT, width=64, height=32, steps=3, seed=2, callback=callback)
    assert [e[:2] for e in events] == [(1, 3), (2, 3), (3, 3)]
    assert all(b[2] >= a[2] for a, b in zip(events, events[1:]))
    for *_, preview in events:
        assert preview.mode == "RGB" and preview.size == (8, 4)


def test_last_preview_shows_the_final_latents(schnell):
    """x0 = x_t - sigma * v: at the last step (sigma_next = 0) it is exactly the final latents."""
    from mlx_flux import sampler

    previews = []
    r = schnell.generate(PROMPT, width=48, height=32, steps=3, seed=9, callback=lambda e: previews.append(e.preview()))
    expected = schnell._previewer(sampler.nchw_to_nhwc(r.latents)[0])
    diff = np.abs(np.asarray(previews[-1], np.int16) - np.asarray(expected, np.int16))
    assert diff.max() <= 1
    assert not np.array_equal(np.asarray(previews[0]), np.asarray(previews[-1]))


def test_cancel_from_callback_then_run_again(schnell):
    def cancel(event):
        if event.step == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        schnell.generate(PROMPT, width=32, height=32, steps=4, seed=1, callback=cancel)
    assert schnell.generate(PROMPT, width=32, height=32, steps=1, seed=1).image.size == (32, 32)


def test_the_decode_is_announced_after_the_last_step_and_can_be_refused(schnell, monkeypatch):
    order = []
    schnell.generate(PROMPT, width=32, height=32, steps=2, seed=1, callback=lambda e: order.append(e.step),
                     on_phase=order.append)
    assert order == [1, 2, "decode"]
    order.clear()
    schnell.generate_batch(PROMPT, seeds=[1, 2, 3], width=32, height=32, steps=1, max_batch=2,
                           callback=lambda e: order.append(e.step), on_phase=order.append)
    assert order == [1, "decode", 2, "decode"]  # once per chunk

    decoded = []
    monkeypatch.setattr(schnell, "_decode", lambda final: decoded.append(final) or [])

    def cancel(phase):
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        schnell.generate(PROMPT, width=32, height=32, steps=1, seed=1, on_phase=cancel)
    assert decoded == []  # refused before the decode: nothing decoded


def test_batch_equals_one_at_a_time(schnell):
    seeds = [3, 4, 5]
    batch = schnell.generate_batch(PROMPT, seeds=seeds, width=48, height=32, steps=2)
    assert [r.seed for r in batch] == seeds
    for r in batch:
        single = schnell.generate(PROMPT, width=48, height=32, steps=2, seed=r.seed)
        np.testing.assert_allclose(r.latents, single.latents, rtol=1e-5, atol=1e-5)


def test_prompt_encoding_is_cached(schnell, monkeypatch):
    schnell.generate("cached prompt", width=32, height=32, steps=1, seed=1)

    def fail(*a, **k):
        raise AssertionError("encoders ran again")

    monkeypatch.setattr(schnell, "_text_encoders", fail)
    schnell.generate("cached prompt", width=32, height=32, steps=1, seed=2)


def test_truncated_prompt_is_reported(schnell):
    r = schnell.generate("word " * 100, width=32, height=32, steps=1, seed=1)
    assert r.prompt_truncated
    assert not schnell.generate("short", width=32, height=32, steps=1, seed=1).prompt_truncated


def test_low_memory_releases_the_text_encoders_and_gives_the_same_images(tiny_schnell, schnell):
    pipe = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", low_memory=True)
    a = pipe.generate(PROMPT, width=32, height=32, steps=2, seed=1)
    assert pipe._clip is None and pipe._t5 is None
    # a new prompt reloads the encoders for its encoding only
    b = pipe.generate(PROMPT + " again", width=32, height=32, steps=2, seed=1)
    assert pipe._clip is None and pipe._t5 is None
    for low, prompt in ((a, PROMPT), (b, PROMPT + " again")):
        normal = schnell.generate(prompt, width=32, height=32, steps=2, seed=1)
        np.testing.assert_array_equal(low.latents, normal.latents)
    assert not np.array_equal(a.latents, b.latents)


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=100, height=64), "width must be a positive multiple of 16"),
    (dict(width=64, height=0), "height must be a positive multiple of 16"),
    (dict(width=64, height=64, steps=0), "steps must be at least 1"),
    (dict(width=64, height=64, latents=np.zeros((1, 16, 4, 4), np.float32)), "latents must have shape"),
])
def test_bad_requests_are_refused_clearly(schnell, kwargs, message):
    with pytest.raises(InputError, match=message):
        schnell.generate(PROMPT, **kwargs)


def test_bad_model_paths(tmp_path, tiny_schnell):
    import shutil

    with pytest.raises(FluxError, match="no such model"):
        FluxPipeline.from_pretrained(tmp_path / "nope")
    partial = tmp_path / "partial"
    shutil.copytree(tiny_schnell, partial, ignore=shutil.ignore_patterns("vae", "text_encoder_2"))
    with pytest.raises(FluxError, match="missing vae/, text_encoder_2/"):
        FluxPipeline.from_pretrained(partial)
    with pytest.raises(InputError, match="quantize"):
        FluxPipeline.from_pretrained(tiny_schnell, quantize=3)
