"""Starting from an image: img2img (schnell, dev) and FLUX.1 Kontext editing, against diffusers'
FluxImg2ImgPipeline and FluxKontextPipeline from the same noise.

diffusers draws its img2img noise itself and samples the VAE posterior; for the comparison its
noise is replaced by ours and its posterior read at the mean (what we encode to, by design).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlx_flux import FluxPipeline
from mlx_flux.images import kontext_size, load_image
from mlx_flux.image_modes import strength_start
from mlx_flux.request import GenerationRequest, ImageRef, InputError

PROMPT = "the same scene at night"


@pytest.fixture(scope="module")
def pipes(tiny_schnell, tiny_dev, tiny_kontext):
    return {name: FluxPipeline.from_pretrained(root, dtype="float32")
            for name, root in (("schnell", tiny_schnell), ("dev", tiny_dev), ("kontext", tiny_kontext))}


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth colourful image (random pixels would only test the resampling filter)."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    rng = np.random.default_rng(seed)
    a = rng.uniform(2, 6, 3)
    rgb = np.stack([np.sin(a[0] * x + 1), np.cos(a[1] * y), np.sin(a[2] * (x + y))], axis=-1)
    return Image.fromarray(((rgb + 1) * 127.5).astype(np.uint8), "RGB")


def noise(width: int, height: int, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 16, height // 8, width // 8)).astype(np.float32)


def rel_err(a, b):
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def diffusers_img2img(root, variant, image, eps, width, height, steps, strength, torch, monkeypatch):
    import diffusers.pipelines.flux.pipeline_flux_img2img as module
    from diffusers import FluxImg2ImgPipeline

    monkeypatch.setattr(module, "randn_tensor", lambda shape, **kw: torch.from_numpy(eps).reshape(shape))
    monkeypatch.setattr(module, "retrieve_latents", lambda out, generator=None, sample_mode="sample": out.latent_dist.mode())
    ref = FluxImg2ImgPipeline.from_pretrained(root, dtype=torch.float32)
    ref.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = ref(prompt=PROMPT, image=image, width=width, height=height, strength=strength,
                  num_inference_steps=steps, guidance_scale=0.0 if variant == "schnell" else 3.5,
                  max_sequence_length=256 if variant == "schnell" else 512, output_type="latent").images
    return ref._unpack_latents(out, height, width, ref.vae_scale_factor).numpy()


@pytest.mark.parametrize("variant, strength, steps", [
    ("schnell", 0.6, 4), ("schnell", 1.0, 3), ("dev", 0.6, 5), ("dev", 1.0, 2),
])
def test_img2img_matches_diffusers(variant, strength, steps, pipes, request, torch_ref, monkeypatch):
    root = request.getfixturevalue(f"tiny_{variant}")
    width, height = 64, 48
    image, eps = picture(80, 56), noise(width, height)  # resized to the output size, as diffusers does
    ours = pipes[variant].generate(PROMPT, image=image, strength=strength, width=width, height=height,
                                   steps=steps, latents=eps, seed=1)
    ref = diffusers_img2img(root, variant, image, eps, width, height, steps, strength, torch_ref, monkeypatch)
    err = rel_err(ours.latents, ref)
    print(f"img2img {variant} strength {strength}: max rel err {err:.2e}")
    assert err < 5e-5
    r = ours.request
    assert (r.mode, r.strength, r.image) == ("img2img", strength, ImageRef(load_image(image).ref.fingerprint, 64, 48))


def test_strength_one_is_text_to_image_exactly(pipes):
    eps = noise(48, 32)
    t2i = pipes["dev"].generate(PROMPT, width=48, height=32, steps=3, latents=eps, seed=2)
    i2i = pipes["dev"].generate(PROMPT, image=picture(48, 32), strength=1.0, width=48, height=32, steps=3,
                                latents=eps, seed=2)
    np.testing.assert_array_equal(i2i.latents, t2i.latents)


def test_strength_cuts_the_schedule_as_diffusers(pipes, torch_ref):
    from types import SimpleNamespace

    from diffusers import FlowMatchEulerDiscreteScheduler, FluxImg2ImgPipeline

    for steps in (1, 4, 10, 28, 50):
        scheduler = FlowMatchEulerDiscreteScheduler()
        scheduler.set_timesteps(steps)
        for strength in np.round(np.arange(0.05, 1.0001, 0.05), 2):
            _, theirs = FluxImg2ImgPipeline.get_timesteps(SimpleNamespace(scheduler=scheduler), steps, strength, "cpu")
            if theirs == 0:
                with pytest.raises(InputError):
                    strength_start(steps, float(strength))
            else:
                assert steps - strength_start(steps, float(strength)) == theirs, (steps, strength)
    # float64 as diffusers computes it: 50 x 0.56 = 28.000000000000004, so 29 steps run, not 28
    assert 50 - strength_start(50, 0.56) == 29
    events = []
    pipes["schnell"].generate(PROMPT, image=picture(32, 32), strength=0.5, steps=4, seed=1, callback=events.append)
    assert [(e.step, e.total) for e in events] == [(1, 2), (2, 2)]
    assert 4 - strength_start(4, 0.05) == 1  # any strength runs at least one step...
    with pytest.raises(InputError, match="strength 1e-20 leaves no step of 4"):  # ...unless it rounds away
        pipes["schnell"].generate(PROMPT, image=picture(32, 32), strength=1e-20, steps=4, seed=1)


@pytest.mark.parametrize("strength", [0, -0.1, 1.5, float("nan")])
def test_strength_out_of_range_is_refused(pipes, strength):
    with pytest.raises(InputError, match="strength must be more than 0 and at most 1"):
        pipes["schnell"].generate(PROMPT, image=picture(32, 32), strength=strength, seed=1)


def test_img2img_defaults_to_the_images_own_size_and_batches(pipes):
    image = picture(70, 50)  # rounded down to multiples of 16
    r = pipes["schnell"].generate(PROMPT, image=image, steps=2, seed=3)
    assert r.image.size == (64, 48) and r.request.strength == 0.6
    batch = pipes["schnell"].generate_batch(PROMPT, seeds=[3, 4], image=image, steps=2, max_batch=2)
    np.testing.assert_array_equal(batch[0].latents, r.latents)
    assert batch[1].request == r.request.with_(seed=4)


def test_a_request_with_an_image_needs_that_image(pipes):
    image = picture(48, 32)
    first = pipes["schnell"].generate(PROMPT, image=image, steps=2, seed=3)
    again = pipes["schnell"].generate(first.request, image=image)
    np.testing.assert_array_equal(again.latents, first.latents)
    with pytest.raises(InputError, match="pass it as image="):
        pipes["schnell"].generate(first.request)
    with pytest.raises(InputError, match="is not the request's input image"):
        pipes["schnell"].generate(first.request, image=picture(48, 32, seed=9))
    with pytest.raises(InputError, match="strength is for img2img"):
        pipes["schnell"].generate(PROMPT, strength=0.5, width=32, height=32)


def test_bad_image_files_are_one_line_errors(pipes, tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image")
    for path, message in ((tmp_path / "missing.png", "no such image file"), (tmp_path / "junk.png", "cannot read")):
        with pytest.raises(InputError, match=message) as info:
            pipes["schnell"].generate(PROMPT, image=path, seed=1)
        assert "\n" not in str(info.value)


# --- Kontext ---------------------------------------------------------------------------------------

def diffusers_kontext(root, image, eps, width, height, steps, torch):
    from diffusers import FluxKontextPipeline

    ref = FluxKontextPipeline.from_pretrained(root, dtype=torch.float32)
    ref.set_progress_bar_config(disable=True)
    packed = ref._pack_latents(torch.from_numpy(eps), 1, 16, height // 8, width // 8)
    with torch.no_grad():
        out = ref(prompt=PROMPT, image=image, width=width, height=height, max_area=width * height,
                  _auto_resize=False, latents=packed, num_inference_steps=steps, guidance_scale=2.5,
                  max_sequence_length=512, output_type="latent").images
    return ref._unpack_latents(out, height, width, ref.vae_scale_factor).numpy()


@pytest.mark.parametrize("out_size, ref_size", [((48, 32), (48, 32)), ((64, 48), (32, 64))])
def test_kontext_matches_diffusers(pipes, tiny_kontext, torch_ref, out_size, ref_size):
    """The reference image's tokens ride along with their own ids (first axis 1); only the output's
    are denoised; the reference may differ from the output in size."""
    kontext = pipes["kontext"]
    assert kontext.variant == "kontext" and kontext.default_guidance == 2.5
    (w, h), image = out_size, picture(*ref_size)
    eps = noise(w, h)
    ours = kontext.generate(PROMPT, image=image, width=w, height=h, steps=3, latents=eps, seed=1)
    ref = diffusers_kontext(tiny_kontext, image, eps, w, h, 3, torch_ref)
    err = rel_err(ours.latents, ref)
    print(f"kontext {out_size} ref {ref_size}: max rel err {err:.2e}")
    assert err < 5e-5
    assert ours.request.mode == "edit" and ours.request.guidance == 2.5 and ours.request.strength is None
    assert ours.request.image == ImageRef(load_image(image).ref.fingerprint, *ref_size)


def test_kontext_without_a_size_takes_the_nearest_trained_resolution(pipes):
    image = picture(300, 100)
    r = pipes["kontext"].resolve(GenerationRequest(PROMPT), image)
    assert (r.width, r.height) == kontext_size(load_image(image)) == (1568, 672)
    assert (r.image.width, r.image.height) == (1568, 672)
    with pytest.raises(InputError, match="takes no strength"):
        pipes["kontext"].resolve(GenerationRequest(PROMPT, strength=0.5), image)


def test_kontext_without_an_image_is_a_dev_model(pipes, tiny_dev, tiny_kontext):
    """Same weights as tiny dev, other default guidance: with the same guidance, the same image."""
    a = pipes["kontext"].generate(PROMPT, width=32, height=32, steps=2, guidance=3.5, seed=4)
    b = pipes["dev"].generate(PROMPT, width=32, height=32, steps=2, guidance=3.5, seed=4)
    np.testing.assert_array_equal(a.latents, b.latents)
    assert a.request.mode == "text-to-image"


def test_low_memory_quantized_and_previews_work_for_both_modes(tiny_schnell, tiny_kontext, pipes):
    image, eps = picture(48, 32), noise(48, 32)
    low = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", low_memory=True)
    a = low.generate(PROMPT, image=image, width=48, height=32, steps=3, latents=eps, seed=1)
    b = pipes["schnell"].generate(PROMPT, image=image, width=48, height=32, steps=3, latents=eps, seed=1)
    np.testing.assert_array_equal(a.latents, b.latents)
    q = FluxPipeline.from_pretrained(tiny_kontext, dtype="float32", quantize=8)
    previews = []
    edited = q.generate(PROMPT, image=image, width=48, height=32, steps=3, latents=eps, seed=1,
                        callback=lambda e: previews.append(e.preview()))
    full = pipes["kontext"].generate(PROMPT, image=image, width=48, height=32, steps=3, latents=eps, seed=1)
    assert rel_err(edited.latents, full.latents) < 0.05 and edited.request.quantize == 8
    assert len(previews) == 3 and previews[0].size == (6, 4)  # the output's tokens only, not the reference's


def test_masks_and_expand_need_a_fill_model(pipes):
    for kwargs in (dict(mask=picture(32, 32)), dict(expand=(16, 0, 16, 0))):
        with pytest.raises(InputError, match="needs a FLUX.1 Fill model"):
            pipes["schnell"].generate(PROMPT, image=picture(32, 32), steps=1, seed=1, **kwargs)
