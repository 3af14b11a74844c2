"""The Flux transformer against diffusers' FluxTransformer2DModel, and its loader for both layouts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_flux.transformer import Conditioning, Flux, FluxConfig, load_transformer
from mlx_flux.weights import WeightError, load_safetensors

B, H, W, L = 2, 4, 6, 16  # batch, packed latent grid (non-square), text length
SIGMAS = np.array([0.75, 0.3], np.float32)
GUIDANCE = np.array([3.5, 3.5], np.float32)
REL_TOL = 5e-5  # float32 agrees to ~3e-6 of the output's range (to ~2e-5 with guidance 3.5, whose
                # 3500-rad timestep arguments differ by float32 ulps between torch builds); a swapped
                # tensor is O(1)


def image_ids(h: int, w: int) -> np.ndarray:
    ids = np.zeros((h * w, 3), np.float32)
    ids[:, 1] = np.repeat(np.arange(h), w)  # row
    ids[:, 2] = np.tile(np.arange(w), h)  # column
    return ids


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return dict(
        img=rng.standard_normal((B, H * W, 64)).astype(np.float32),
        txt=rng.standard_normal((B, L, 32)).astype(np.float32),
        y=rng.standard_normal((B, 24)).astype(np.float32),
        img_ids=image_ids(H, W),
        txt_ids=np.zeros((L, 3), np.float32),
    )


def tiny_root(request, variant: str) -> Path:
    return request.getfixturevalue(f"tiny_{variant}")


def diffusers_velocity(torch, root: Path, inputs, dtype=None, img_ids=None, txt_ids=None) -> np.ndarray:
    from diffusers import FluxTransformer2DModel

    dtype = dtype or torch.float32
    ref = FluxTransformer2DModel.from_pretrained(root / "transformer", dtype=dtype).eval()
    guided = ref.config.guidance_embeds
    with torch.no_grad():
        out = ref(
            hidden_states=torch.tensor(inputs["img"]).to(dtype),
            encoder_hidden_states=torch.tensor(inputs["txt"]).to(dtype),
            pooled_projections=torch.tensor(inputs["y"]).to(dtype),
            timestep=torch.tensor(SIGMAS).to(dtype),  # diffusers multiplies by 1000 inside
            img_ids=torch.tensor(inputs["img_ids"] if img_ids is None else img_ids),
            txt_ids=torch.tensor(inputs["txt_ids"] if txt_ids is None else txt_ids),
            guidance=torch.tensor(GUIDANCE).to(dtype) if guided else None,
        ).sample
    return out.float().numpy()


@pytest.fixture(scope="module")
def reference(request, torch_ref, inputs):
    """diffusers' velocity per variant, computed once."""
    cache: dict[str, np.ndarray] = {}

    def get(variant: str) -> np.ndarray:
        if variant not in cache:
            cache[variant] = diffusers_velocity(torch_ref, tiny_root(request, variant), inputs)
        return cache[variant]

    return get


def run(model: Flux, inputs, img_ids=None, txt_ids=None) -> mx.array:
    g = mx.array(GUIDANCE) if model.config.guidance_embed else None
    return model(
        mx.array(inputs["img"]),
        mx.array(inputs["img_ids"] if img_ids is None else img_ids),
        mx.array(inputs["txt"]),
        mx.array(inputs["txt_ids"] if txt_ids is None else txt_ids),
        mx.array(SIGMAS),
        mx.array(inputs["y"]),
        guidance=g,
    )


def rel_err(ours, ref: np.ndarray) -> float:
    return float(np.abs(np.array(ours.astype(mx.float32)) - ref).max() / np.abs(ref).max())


def diffusers_config(root: Path) -> dict:
    return json.loads((root / "transformer" / "config.json").read_text())


def load_layout(root: Path, variant: str, layout: str, dtype="float32") -> Flux:
    if layout == "diffusers":
        return load_transformer(root / "transformer", dtype=dtype)
    # The tiny head_dim 16 admits no inferred RoPE split: take it from the diffusers config,
    # as the pipeline does for a single file.
    return load_transformer(root / f"flux1-{variant}.safetensors", dtype=dtype, config=diffusers_config(root))


# --- parity with diffusers -----------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["schnell", "dev"])
@pytest.mark.parametrize("layout", ["diffusers", "bfl"])  # tiny_dev's BFL file carries the prefix
def test_parity_with_diffusers(request, reference, inputs, variant, layout):
    model = load_layout(tiny_root(request, variant), variant, layout)
    assert model.config.guidance_embed == (variant == "dev")
    ours = run(model, inputs)
    assert ours.shape == (B, H * W, 64) and ours.dtype == mx.float32
    err = rel_err(ours, reference(variant))
    print(f"{variant}/{layout}: max abs {err * np.abs(reference(variant)).max():.3g}, relative {err:.3g}")
    assert err < REL_TOL


def test_parity_with_arbitrary_positions(request, torch_ref, inputs):
    """Non-zero ids on every axis (text too), so all three RoPE axes are exercised."""
    root = tiny_root(request, "schnell")
    rng = np.random.default_rng(5)
    img_ids = rng.integers(0, 30, size=(H * W, 3)).astype(np.float32)
    txt_ids = rng.integers(0, 30, size=(L, 3)).astype(np.float32)
    ref = diffusers_velocity(torch_ref, root, inputs, img_ids=img_ids, txt_ids=txt_ids)
    ours = run(load_transformer(root / "transformer", dtype="float32"), inputs, img_ids, txt_ids)
    assert rel_err(ours, ref) < REL_TOL


def test_prepare_step_and_batching(request, reference, inputs):
    model = load_transformer(tiny_root(request, "dev") / "transformer", dtype="float32")
    cond = model.prepare(mx.array(inputs["txt"]), mx.array(inputs["y"]), mx.array(inputs["img_ids"]),
                         mx.array(inputs["txt_ids"]), guidance=mx.array(GUIDANCE))
    assert isinstance(cond, Conditioning)
    v = model.step(mx.array(inputs["img"]), mx.array(SIGMAS), cond)
    assert rel_err(v, reference("dev")) < REL_TOL

    # batched ids, one prompt for a batch of latents, a scalar t and a scalar guidance
    one = model.prepare(mx.array(inputs["txt"][:1]), mx.array(inputs["y"][:1]),
                        mx.array(np.stack([inputs["img_ids"]] * B)), mx.array(inputs["txt_ids"]), guidance=3.5)
    both = model.step(mx.array(np.stack([inputs["img"][0]] * B)), 0.75, one)
    single = model.step(mx.array(inputs["img"][:1]), mx.array(SIGMAS[:1]), cond._replace(
        txt=cond.txt[:1], vec=cond.vec[:1], guidance=cond.guidance[:1]))
    np.testing.assert_allclose(np.array(both[0]), np.array(single[0]), rtol=0, atol=1e-5 * np.abs(np.array(single)).max())
    np.testing.assert_allclose(np.array(both[1]), np.array(both[0]), rtol=0, atol=1e-5 * np.abs(np.array(single)).max())


def test_dev_requires_guidance(request, inputs):
    model = load_transformer(tiny_root(request, "dev") / "transformer", dtype="float32")
    with pytest.raises(ValueError, match="guidance"):
        model.prepare(mx.array(inputs["txt"]), mx.array(inputs["y"]), inputs["img_ids"], inputs["txt_ids"])


@pytest.mark.slow  # ~20 s the first time on a machine: the CPU backend JIT-compiles C++
def test_compiled_step_matches_and_sees_new_weights(request, inputs):
    model = load_transformer(tiny_root(request, "schnell") / "transformer", dtype="float32")
    cond = model.prepare(mx.array(inputs["txt"]), mx.array(inputs["y"]), inputs["img_ids"], inputs["txt_ids"])
    img, t = mx.array(inputs["img"]), mx.array(SIGMAS)
    eager = model.step(img, t, cond)
    compiled = model.compiled_step(img, t, cond)
    np.testing.assert_allclose(np.array(compiled), np.array(eager), rtol=0, atol=1e-5 * np.abs(np.array(eager)).max())
    # weights are inputs of the compiled graph, not baked-in constants
    model.final_layer.linear.bias = model.final_layer.linear.bias + 1
    np.testing.assert_allclose(np.array(model.compiled_step(img, t, cond)), np.array(eager) + 1, atol=1e-3)


def step_before_the_stages(model: Flux, img: mx.array, t: mx.array, cond: Conditioning) -> mx.array:
    """`Flux.step` as it was written before it was split into embed / blocks / head (frozen copy)."""
    from mlx_flux.layers import silu, timestep_embedding
    from mlx_flux.transformer import TIME_DIM

    txt, vec_y, vec_g, pe = cond
    dtype = model.dtype
    img = model.img_in(img.astype(dtype))
    B, L = img.shape[0], txt.shape[1]
    t = mx.broadcast_to(mx.array(t), (B,)).astype(dtype)
    if txt.shape[0] != B:
        txt = mx.broadcast_to(txt, (B, *txt.shape[1:]))
    vec = model.time_in(timestep_embedding(t, TIME_DIM))
    if vec_g is not None:
        vec = vec + vec_g
    vec = vec + vec_y
    silu_vec = silu(vec)
    for block in model.double_blocks:
        img, txt = block(img, txt, silu_vec, pe)
    x = mx.concatenate([txt, img], axis=1)
    for block in model.single_blocks:
        x = block(x, silu_vec, pe)
    img = x[:, L:]
    return model.final_layer(img, silu_vec)


@pytest.mark.parametrize("variant", ["schnell", "dev"])
def test_step_is_its_stages_and_equals_the_unstaged_step_bit_for_bit(request, inputs, variant):
    """step = embed -> blocks -> head changes no rounding; and the blocks run in any slices
    (as the ranks of --split-model run them) give the same velocity bit for bit."""
    model = load_transformer(tiny_root(request, variant) / "transformer", dtype="float32")
    assert (len(model.double_blocks), len(model.single_blocks)) == (2, 2)
    g = mx.array(GUIDANCE) if model.config.guidance_embed else None
    cond = model.prepare(mx.array(inputs["txt"][:1]), mx.array(inputs["y"][:1]), inputs["img_ids"],
                         inputs["txt_ids"], guidance=g if g is None else g[:1])  # one prompt, a batch of 2
    img, t = mx.array(inputs["img"]), mx.array(SIGMAS)
    expected = np.array(step_before_the_stages(model, img, t, cond))
    np.testing.assert_array_equal(np.array(model.step(img, t, cond)), expected)

    for cuts in ([(range(0, 1), range(0)), (range(1, 2), range(0, 1)), (range(0), range(1, 2))],  # mid-singles
                 [(range(0, 2), range(0)), (range(0), range(0)), (range(0), range(0, 2))],      # an empty slice
                 [(range(0, 1), range(0)), (range(1, 2), range(0, 2))]):
        h, silu_vec = model.embed(img, t, cond)
        for double, single in cuts:
            h = model.blocks(h, silu_vec, cond.pe, double=double, single=single)
            h = type(h)(*(mx.array(np.array(a)) for a in h))  # as if sent to another process
        np.testing.assert_array_equal(np.array(model.head(h, silu_vec)), expected)


def test_rope_is_built_from_the_token_ids_prepare_gets(request, inputs):
    model = load_transformer(tiny_root(request, "schnell") / "transformer", dtype="float32")
    cond = model.prepare(mx.array(inputs["txt"]), mx.array(inputs["y"]), inputs["img_ids"], inputs["txt_ids"])
    ids = model.token_ids(mx.array(inputs["img_ids"]), mx.array(inputs["txt_ids"]))
    assert ids.shape == (L + H * W, 3) and ids.dtype == mx.float32
    np.testing.assert_array_equal(np.array(ids[L:]), inputs["img_ids"])
    np.testing.assert_array_equal(np.array(model.rope(ids)), np.array(cond.pe))
    batched = model.token_ids(mx.array(np.stack([inputs["img_ids"]] * B)), mx.array(inputs["txt_ids"]))
    assert batched.shape == (B, L + H * W, 3) and model.rope(batched).shape[:3] == (B, 1, L + H * W)


@pytest.mark.parametrize("layout", ["diffusers", "bfl"])
def test_bfloat16_keeps_stream_in_bf16_and_rounds_time_like_reference(request, torch_ref, inputs, layout):
    """bf16 end to end (a float32 RoPE table must not promote it), and the same bf16 rounding of
    1000*t and 1000*g as diffusers: without it the tiny model's output moves by ~80%."""
    root = tiny_root(request, "dev")
    model = load_layout(root, "dev", layout, dtype="bfloat16")
    assert {v.dtype for _, v in tree_flatten(model.parameters())} == {mx.bfloat16}
    cond = model.prepare(mx.array(inputs["txt"]), mx.array(inputs["y"]), inputs["img_ids"], inputs["txt_ids"],
                         guidance=mx.array(GUIDANCE))
    assert cond.txt.dtype == cond.vec.dtype == cond.guidance.dtype == mx.bfloat16
    assert cond.pe.dtype == mx.float32
    img, txt = model.img_in(mx.array(inputs["img"]).astype(mx.bfloat16)), cond.txt
    img, txt = model.double_blocks[0](img, txt, cond.vec, cond.pe)
    assert img.dtype == txt.dtype == mx.bfloat16  # an intermediate of the residual stream
    v = model.step(mx.array(inputs["img"]), mx.array(SIGMAS), cond)
    assert v.dtype == mx.bfloat16
    ref = diffusers_velocity(torch_ref, root, inputs, dtype=torch_ref.bfloat16)
    assert rel_err(v, ref) < 3e-2


# --- checkpoint keys -----------------------------------------------------------------------------

def _expected_keys(config: FluxConfig) -> set[str]:
    return {k for k, _ in tree_flatten(Flux(config).parameters())}


@pytest.mark.parametrize("variant", ["schnell", "dev"])
def test_sanitize_maps_every_key_of_both_layouts(request, variant):
    root = tiny_root(request, variant)
    config = FluxConfig.from_diffusers(diffusers_config(root))
    expected = _expected_keys(config)
    from mlx_flux.weights import shard_files

    diffusers = load_safetensors(shard_files(root / "transformer"))
    bfl = load_safetensors(root / f"flux1-{variant}.safetensors")
    assert any(k.startswith("model.diffusion_model.") for k in bfl) == (variant == "dev")
    for weights in (diffusers, bfl):
        sanitized = Flux.sanitize(weights)
        assert set(sanitized) == expected
    # the prefix is optional either way
    assert set(Flux.sanitize({"model.diffusion_model." + k.removeprefix("model.diffusion_model."): v
                              for k, v in bfl.items()})) == expected

    # identical tensors from both layouts, fused q|k|v and all
    a, b = Flux.sanitize(diffusers), Flux.sanitize(bfl)
    for k in expected:
        assert a[k].shape == b[k].shape
        assert mx.array_equal(a[k], b[k]), k


def test_sanitize_swaps_final_modulation_halves():
    scale, shift = mx.full((6, 3), 1.0), mx.full((6, 3), 2.0)
    out = Flux.sanitize({"x_embedder.weight": mx.zeros((6, 4)),
                         "norm_out.linear.weight": mx.concatenate([scale, shift])})
    np.testing.assert_array_equal(np.array(out["final_layer.adaLN_modulation.1.weight"]),
                                  np.array(mx.concatenate([shift, scale])))
    assert set(out) == {"img_in.weight", "final_layer.adaLN_modulation.1.weight"}


def test_sanitize_keeps_unknown_and_incomplete_keys_for_strict_loading():
    w = {
        "transformer_blocks.0.attn.to_q.weight": mx.zeros((2, 2)),
        "transformer_blocks.0.attn.to_k.weight": mx.zeros((2, 2)),  # to_v missing
        "transformer_blocks.0.attn.something.weight": mx.zeros((2,)),
    }
    assert set(Flux.sanitize(w)) == set(w)


# --- config inference and errors (on a synthetic single file that admits inference) -------------

SMALL = FluxConfig(in_channels=64, out_channels=64, vec_in_dim=24, context_in_dim=32, hidden_size=64,
                   num_heads=2, depth=1, depth_single_blocks=2, axes_dim=(4, 14, 14), guidance_embed=True)


@pytest.fixture
def single_file(tmp_path) -> tuple[Path, dict[str, mx.array]]:
    """A BFL-keyed `flux1-dev.safetensors` with head_dim 32, whose RoPE split (4, 14, 14) can be inferred."""
    mx.random.seed(0)
    model = Flux(SMALL)
    weights = {"model.diffusion_model." + k: mx.random.normal(v.shape) * 0.1
               for k, v in tree_flatten(model.parameters())}
    path = tmp_path / "flux1-dev.safetensors"
    mx.save_safetensors(str(path), weights)
    return path, weights


def test_config_inferred_from_single_file(single_file):
    path, _ = single_file
    model = load_transformer(path, dtype="float32")
    assert model.config == SMALL
    assert FluxConfig.from_weights(Flux.sanitize(load_safetensors(path))) == SMALL
    schnell = {k: v for k, v in load_safetensors(path).items() if ".guidance_in." not in k}
    assert not FluxConfig.from_weights(Flux.sanitize(schnell)).guidance_embed


def test_real_size_rule_gives_flux1_axes():
    weights = {"img_in.weight": mx.zeros((3072, 64)),
               "double_blocks.0.img_attn.norm.query_norm.scale": mx.zeros((128,)),
               "single_blocks.37.linear1.weight": mx.zeros((21504, 3072)),
               "single_blocks.0.linear1.weight": mx.zeros((21504, 3072)),
               "final_layer.linear.weight": mx.zeros((64, 3072)), "vector_in.in_layer.weight": mx.zeros((3072, 768)),
               "txt_in.weight": mx.zeros((3072, 4096)), "double_blocks.0.img_mlp.0.weight": mx.zeros((12288, 3072)),
               "double_blocks.18.img_attn.qkv.bias": mx.zeros((9216,)),
               "double_blocks.0.img_attn.qkv.bias": mx.zeros((9216,))}
    assert FluxConfig.from_weights(weights) == FluxConfig()


def test_tiny_single_file_without_config_asks_for_one(request):
    root = tiny_root(request, "schnell")
    with pytest.raises(WeightError, match="config"):
        load_transformer(root / "flux1-schnell.safetensors")


def test_single_file_variant_follows_its_tensors(request):
    """A dev file with a schnell config.json (e.g. a mismatched base folder) still loads as dev."""
    dev, schnell = tiny_root(request, "dev"), tiny_root(request, "schnell")
    model = load_transformer(dev / "flux1-dev.safetensors", dtype="float32", config=diffusers_config(schnell))
    assert model.config.guidance_embed


def test_repository_root_is_accepted(request):
    assert load_transformer(tiny_root(request, "schnell"), dtype="float32").config.depth == 2


def _rewrite(path: Path, weights: dict[str, mx.array]) -> None:
    path.unlink()
    mx.save_safetensors(str(path), weights)


def test_missing_tensor_is_named(single_file):
    path, weights = single_file
    name = "double_blocks.0.txt_attn.norm.key_norm.scale"
    _rewrite(path, {k: v for k, v in weights.items() if not k.endswith(name)})
    with pytest.raises(WeightError, match=f"missing {name}"):
        load_transformer(path, dtype="float32")
    _rewrite(path, {k: v for k, v in weights.items() if not k.endswith("img_in.weight")})
    with pytest.raises(WeightError, match="img_in.weight"):
        load_transformer(path, dtype="float32")  # needed to infer the config


def test_misshapen_tensor_is_named(single_file):
    path, weights = single_file
    name = "model.diffusion_model.single_blocks.1.linear2.weight"
    weights = dict(weights, **{name: mx.zeros((64, 10))})
    _rewrite(path, weights)
    with pytest.raises(WeightError, match=r"single_blocks\.1\.linear2\.weight has shape \(64, 10\)"):
        load_transformer(path, dtype="float32")


def test_unexpected_tensor_is_named(single_file):
    path, weights = single_file
    _rewrite(path, dict(weights, **{"model.diffusion_model.lora_up.weight": mx.zeros((2, 2))}))
    with pytest.raises(WeightError, match="unexpected lora_up.weight"):
        load_transformer(path, dtype="float32")


def test_truncated_file_is_named(single_file):
    path, _ = single_file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(WeightError, match="flux1-dev.safetensors"):
        load_transformer(path)


def test_missing_diffusers_piece_is_named(request, tmp_path):
    import shutil

    src = tiny_root(request, "schnell") / "transformer"
    folder = shutil.copytree(src, tmp_path / "transformer")
    weights = load_safetensors(sorted(folder.glob("*.safetensors")))
    weights = {k: v for k, v in weights.items() if k != "single_transformer_blocks.1.proj_mlp.weight"}
    for f in folder.glob("*.safetensors*"):
        f.unlink()
    mx.save_safetensors(str(folder / "diffusion_pytorch_model.safetensors"), weights)
    with pytest.raises(WeightError, match=r"missing single_blocks\.1\.linear1\.weight.*unexpected"):
        load_transformer(folder)


def test_missing_path():
    with pytest.raises(WeightError, match="missing"):
        load_transformer(Path("/nonexistent/flux1-dev.safetensors"))


def test_config_checks():
    with pytest.raises(ValueError, match="axes_dim"):
        dataclasses.replace(SMALL, axes_dim=(4, 12, 14))
    assert FluxConfig.from_dict({"depth": 3, "unknown": 1}).depth == 3
