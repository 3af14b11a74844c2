"""LoRAs on a loaded pipeline, against diffusers + peft loading the same LoRA, from injected latents.

Every layout is compared with diffusers running the diffusers-layout file of the same updates
(`load_lora_weights`, i.e. peft): reading a layout right means computing what diffusers
computes for that LoRA. diffusers' own readings of the other layouts are checked in
test_lora_formats (where it drops layers, we keep them).

The reference files fold each alpha into B: given `.alpha` keys, diffusers hands peft the
alphas as name patterns, and the top-level `proj_out`'s pattern also matches every single
block's `proj_out`, which then gets the final layer's alpha (found while writing these tests).
"""

from __future__ import annotations

import numpy as np
import pytest
from mlx.utils import tree_flatten

import lora_files
from mlx_flux import FluxPipeline
from mlx_flux.lora import LoraLinear, active_layers
from mlx_flux.lora_formats import LoraError
from mlx_flux.request import LoraRef

PROMPT = "a watercolour fox in the snow"
W, H, STEPS = 48, 32, 2
# tests/tiny_models.py's sizes
DIMS = lora_files.Dims(hidden=32, mlp_ratio=4, in_channels=64, context=32, vec=24, depth=2, depth_single=2,
                       clip_hidden=24, clip_layers=2, clip_mlp=48)


@pytest.fixture(scope="module")
def schnell(tiny_schnell):
    return FluxPipeline.from_pretrained(tiny_schnell, dtype="float32")


@pytest.fixture(scope="module")
def latents():
    return np.random.default_rng(3).standard_normal((1, 16, H // 8, W // 8)).astype(np.float32)


def description(layout: str, seed: int, clip: bool = True) -> lora_files.Description:
    """Random updates on every layer `layout` can hold (XLabs' single-block qkv has no mlp rows)."""
    desc = lora_files.random_description(DIMS, rank=4, seed=seed, clip=clip, targets=[
        t for t in {**lora_files.flux_targets(DIMS, guidance=False), **lora_files.clip_targets(DIMS)}
        if lora_files._holds(layout, t) and (clip or not t.startswith("encoder."))])
    if layout == "xlabs":
        for target, pieces in desc.items():
            if target.endswith("linear1"):
                down, up, alpha = pieces[3]
                pieces[3] = (down, np.zeros_like(up), alpha)
    # updates as strong as a trained LoRA's, relative to the tiny model's random weights
    return {t: ([(d, u * 0.3, a) for d, u, a in v] if isinstance(v, list) else (v[0], v[1] * 0.3, v[2]))
            for t, v in desc.items()}


def reference(root, files_scales, latents, torch):
    """diffusers' FluxPipeline with the LoRAs loaded by peft, from the same initial noise."""
    from diffusers import FluxPipeline as Reference

    ref = Reference.from_pretrained(root, dtype=torch.float32)
    ref.set_progress_bar_config(disable=True)
    names = []
    for i, (path, _) in enumerate(files_scales):
        ref.load_lora_weights(str(path), adapter_name=f"l{i}")
        names.append(f"l{i}")
    if names:
        ref.set_adapters(names, adapter_weights=[s for _, s in files_scales])
    packed = Reference._pack_latents(torch.from_numpy(latents), 1, 16, H // 8, W // 8)
    with torch.no_grad():
        out = ref(prompt=PROMPT, width=W, height=H, num_inference_steps=STEPS, latents=packed,
                  max_sequence_length=256, guidance_scale=0.0, output_type="latent").images
    return Reference._unpack_latents(out, H, W, ref.vae_scale_factor).numpy()


def rel_err(a, b):
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


@pytest.mark.parametrize("layout", sorted(lora_files.WRITERS))
def test_each_layout_matches_diffusers(layout, schnell, tiny_schnell, latents, tmp_path, torch_ref):
    desc = description(layout, seed=1)
    ours_file = lora_files.WRITERS[layout](tmp_path / f"{layout}.safetensors", DIMS, desc)
    ref_file = lora_files.write_diffusers(tmp_path / "reference.safetensors", DIMS, desc, alpha="fold")
    base = schnell.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
    schnell.set_loras([(ours_file, 1.0)])
    try:
        ours = schnell.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
    finally:
        schnell.set_loras([])
    ref = reference(tiny_schnell, [(ref_file, 1.0)], latents, torch_ref)
    err = rel_err(ours.latents, ref)
    print(f"{layout}: max rel err {err:.2e}, LoRA moved the latents by {rel_err(ours.latents, base.latents):.2f}")
    assert rel_err(ours.latents, base.latents) > 0.05  # the LoRA changes the image
    assert err < 1e-4


def test_two_loras_with_scales_and_a_text_encoder_part(schnell, tiny_schnell, latents, tmp_path, torch_ref):
    """A kohya file with a CLIP part at 0.8 and a diffusers one at -0.5, as diffusers' set_adapters."""
    a, b = description("kohya", seed=2), description("diffusers", seed=3, clip=False)
    assert any(t.startswith("encoder.") for t in a)
    kohya = lora_files.write_kohya(tmp_path / "a.safetensors", DIMS, a)
    ref_a = lora_files.write_diffusers(tmp_path / "ref-a.safetensors", DIMS, a, alpha="fold")
    other = lora_files.write_diffusers(tmp_path / "b.safetensors", DIMS, b, alpha="fold")
    schnell.set_loras([(kohya, 0.8), (other, -0.5)])
    try:
        ours = schnell.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
        assert [(r.name, r.scale) for r in ours.request.loras] == [("a.safetensors", 0.8), ("b.safetensors", -0.5)]
    finally:
        schnell.set_loras([])
    ref = reference(tiny_schnell, [(ref_a, 0.8), (other, -0.5)], latents, torch_ref)
    assert rel_err(ours.latents, ref) < 1e-4


def test_switching_without_reloading_and_back_to_the_base_exactly(schnell, latents, tmp_path):
    base = schnell.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
    weights = {k: id(v) for k, v in tree_flatten(schnell.transformer.parameters())}
    a = lora_files.write_diffusers(tmp_path / "a.safetensors", DIMS, description("diffusers", seed=4))
    b = lora_files.write_kohya(tmp_path / "b.safetensors", DIMS, description("kohya", seed=5))
    results = {}
    for name, loras in (("a", [(a, 1.0)]), ("b", [(b, 1.0)]), ("none", [])):
        schnell.set_loras(loras)
        results[name] = schnell.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
    assert not np.allclose(results["a"].latents, results["b"].latents)
    np.testing.assert_array_equal(results["none"].latents, base.latents)  # [] is the base model, exactly
    assert active_layers(schnell.transformer) == [] and results["none"].request.loras == ()
    # the base layers were never replaced or rewritten
    assert {k: id(v) for k, v in tree_flatten(schnell.transformer.parameters())} == weights
    # a again gives a's image
    schnell.set_loras([(a, 1.0)])
    try:
        again = schnell.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
    finally:
        schnell.set_loras([])
    np.testing.assert_array_equal(again.latents, results["a"].latents)


def test_the_request_records_each_lora_by_name_hash_and_scale(schnell, tmp_path):
    path = lora_files.write_bfl(tmp_path / "style.safetensors", DIMS, description("bfl", seed=6))
    schnell.set_loras([(str(path), 0.75)])
    try:
        r = schnell.generate(PROMPT, width=32, height=32, steps=1, seed=2)
    finally:
        schnell.set_loras([])
    (ref,) = r.request.loras
    assert ref == LoraRef("style.safetensors", ref.fingerprint, 0.75) and len(ref.fingerprint) == 12
    assert r.metadata["loras"] == [{"name": "style.safetensors", "fingerprint": ref.fingerprint, "scale": 0.75}]
    assert str(tmp_path) not in str(r.metadata)


def test_clip_loras_invalidate_cached_prompt_embeddings(schnell, tmp_path):
    clip_only = {t: v for t, v in description("kohya", seed=7).items() if t.startswith("encoder.")}
    path = lora_files.write_kohya(tmp_path / "te.safetensors", DIMS, clip_only)
    before = schnell.encode_prompt(PROMPT)
    schnell.set_loras([(path, 1.0)])
    try:
        with_te = schnell.encode_prompt(PROMPT)
        assert isinstance(schnell._clip.encoder.layers[0].self_attn.q_proj, LoraLinear)
    finally:
        schnell.set_loras([])
    after = schnell.encode_prompt(PROMPT)
    assert not np.allclose(np.array(with_te.pooled), np.array(before.pooled))
    np.testing.assert_array_equal(np.array(after.pooled), np.array(before.pooled))


def test_a_failing_lora_leaves_the_previous_set(schnell, tmp_path):
    good = lora_files.write_diffusers(tmp_path / "good.safetensors", DIMS, description("diffusers", seed=8))
    wide = lora_files.Dims(hidden=48, mlp_ratio=4, in_channels=64, context=32, vec=24, depth=2, depth_single=2)
    other = lora_files.write_diffusers(tmp_path / "other.safetensors", wide,
                                       lora_files.random_description(wide, seed=9, clip=False))
    schnell.set_loras([(good, 1.0)])
    try:
        layers = active_layers(schnell.transformer)
        with pytest.raises(LoraError, match="other.safetensors: diffusers LoRA for .* another model"):
            schnell.set_loras([(good, 0.5), (other, 1.0)])
        assert active_layers(schnell.transformer) == layers
        assert [r.scale for r in schnell.loras] == [1.0]
    finally:
        schnell.set_loras([])


def test_a_quantized_base_takes_loras(tiny_schnell, schnell, latents, tmp_path):
    q = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", quantize=8)
    path = lora_files.write_diffusers(tmp_path / "a.safetensors", DIMS, description("diffusers", seed=10))
    base = q.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
    q.set_loras([(path, 1.0)])
    with_lora = q.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
    schnell.set_loras([(path, 1.0)])
    try:
        float_lora = schnell.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
    finally:
        schnell.set_loras([])
    assert rel_err(with_lora.latents, base.latents) > 0.05          # the LoRA acts on the quantized model
    assert rel_err(with_lora.latents, float_lora.latents) < 0.05    # and lands near the float result
    assert with_lora.request.quantize == 8 and len(with_lora.request.loras) == 1


def test_from_pretrained_applies_loras(tiny_schnell, schnell, latents, tmp_path):
    path = lora_files.write_comfyui(tmp_path / "c.safetensors", DIMS, description("comfyui", seed=11))
    loaded = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", loras=[(path, 0.5)])
    schnell.set_loras([(path, 0.5)])
    try:
        expect = schnell.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
    finally:
        schnell.set_loras([])
    got = loaded.generate(PROMPT, width=W, height=H, steps=STEPS, latents=latents, seed=1)
    np.testing.assert_array_equal(got.latents, expect.latents)


@pytest.mark.parametrize("scale, message", [(float("nan"), "finite"), ("x", "must be a number")])
def test_bad_scales_are_refused(schnell, tmp_path, scale, message):
    from mlx_flux.request import InputError

    path = lora_files.write_bfl(tmp_path / "s.safetensors", DIMS, description("bfl", seed=12))
    with pytest.raises(InputError, match=message):
        schnell.set_loras([(path, scale)])
