"""Unit tests of the transformer building blocks against explicit formulas and diffusers/torch."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from mlx_flux import layers
from mlx_flux.layers import (
    DoubleStreamBlock,
    QKNorm,
    SingleStreamBlock,
    apply_rope,
    embed_nd,
    gelu_tanh,
    layer_norm,
    timestep_embedding,
)

AXES = (4, 6, 6)  # the tiny model's RoPE split of head_dim 16


def np_rope(x: np.ndarray, ids: np.ndarray, axes_dim, theta: float = 10000.0) -> np.ndarray:
    """The reference formula, spelled out in float64: per axis a and pair k,
    angle = pos_a * theta^(-2k/d_a); pairs (x[2k], x[2k+1]) of the axis's slice rotate by it."""
    out = np.array(x, dtype=np.float64)
    start = 0
    for a, d in enumerate(axes_dim):
        for k in range(d // 2):
            angle = ids[:, a] * theta ** (-2.0 * k / d)  # [S]
            c, s = np.cos(angle), np.sin(angle)
            i, j = start + 2 * k, start + 2 * k + 1
            xi, xj = x[..., i].astype(np.float64), x[..., j].astype(np.float64)
            out[..., i] = c * xi - s * xj
            out[..., j] = s * xi + c * xj
        start += d
    return out


def test_rope_matches_reference_formula():
    rng = np.random.default_rng(0)
    S, D = 20, sum(AXES)
    ids = rng.integers(0, 40, size=(S, 3)).astype(np.float32)  # every axis non-zero somewhere
    x = rng.standard_normal((2, 3, S, D)).astype(np.float32)
    ours = np.array(apply_rope(mx.array(x), embed_nd(mx.array(ids), AXES, 10000)))
    np.testing.assert_allclose(ours, np_rope(x, ids, AXES), atol=2e-5, rtol=0)


def test_rope_batched_ids():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 10, size=(2, 7, 3)).astype(np.float32)
    x = rng.standard_normal((2, 1, 7, 16)).astype(np.float32)
    pe = embed_nd(mx.array(ids), AXES, 10000)[:, None]  # head axis, as Flux.prepare adds it
    ours = np.array(apply_rope(mx.array(x), pe))
    for b in range(2):
        np.testing.assert_allclose(ours[b], np_rope(x[b], ids[b], AXES), atol=2e-5, rtol=0)


def test_rope_leaves_text_tokens_and_axis0_unrotated():
    L, h, w = 5, 3, 4
    img_ids = np.zeros((h * w, 3), np.float32)
    img_ids[:, 1] = np.repeat(np.arange(h), w)
    img_ids[:, 2] = np.tile(np.arange(w), h)
    ids = np.concatenate([np.zeros((L, 3), np.float32), img_ids])
    x = np.random.default_rng(2).standard_normal((1, 2, L + h * w, 16)).astype(np.float32)
    out = np.array(apply_rope(mx.array(x), embed_nd(mx.array(ids), AXES, 10000)))
    np.testing.assert_array_equal(out[:, :, :L], x[:, :, :L])  # text ids are all zero
    np.testing.assert_array_equal(out[..., : AXES[0]], x[..., : AXES[0]])  # axis 0 is always 0
    assert not np.allclose(out[:, :, L + 1 :], x[:, :, L + 1 :])  # but the image does rotate


def test_rope_keeps_model_dtype():
    x = mx.random.normal((1, 2, 6, 16)).astype(mx.bfloat16)
    pe = embed_nd(mx.zeros((6, 3)) + 3, AXES, 10000)
    assert pe.dtype == mx.float32
    assert apply_rope(x, pe).dtype == mx.bfloat16


def test_timestep_embedding_matches_diffusers(torch_ref):
    from diffusers.models.embeddings import get_timestep_embedding

    t = np.array([0.0, 0.001, 0.3, 0.75, 1.0, 3.5], np.float32)  # sigmas and a guidance scale
    ref = get_timestep_embedding(torch_ref.tensor(t * 1000), 256, flip_sin_to_cos=True, downscale_freq_shift=0)
    ours = np.array(timestep_embedding(mx.array(t)))
    assert ours.shape == (6, 256)
    # Arguments reach 3500 rad, where one float32 ulp of the argument is 2.4e-4 of the sinusoid:
    # two float32 implementations may differ by that much (torch's vectorised exp on AVX-512
    # differs from its AVX2 one in a few frequencies), while a wrong formula is off by O(1).
    np.testing.assert_allclose(ours, ref.numpy(), atol=2.5e-4, rtol=0)
    small = t < 1.5  # the sigmas: arguments up to 1000 rad, where the two agree to 6e-5
    np.testing.assert_allclose(ours[small], ref.numpy()[small], atol=6e-5, rtol=0)


def test_timestep_rounds_like_bfloat16_reference():
    # 1000 * 0.75 = 750 is not a bfloat16; the references embed 752 (and 3504 for 3.5).
    ours = timestep_embedding(mx.array([0.75, 3.5], mx.bfloat16))
    assert ours.dtype == mx.bfloat16
    expected = timestep_embedding(mx.array([752.0, 3504.0]), time_factor=1.0).astype(mx.bfloat16)
    np.testing.assert_array_equal(np.array(ours.astype(mx.float32)), np.array(expected.astype(mx.float32)))


def test_norms_use_flux_epsilon(torch_ref):
    """Inputs small enough that eps 1e-5 vs 1e-6 shows, against torch's own norms."""
    torch = torch_ref
    from diffusers.models.normalization import RMSNorm

    rng = np.random.default_rng(3)
    x = (1e-3 * rng.standard_normal((2, 2, 5, 16))).astype(np.float32)
    scale = (1 + 0.2 * rng.standard_normal(16)).astype(np.float32)

    ref_norm = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ref_norm.weight.copy_(torch.tensor(scale))
        ref = ref_norm(torch.tensor(x)).numpy()
    norm = QKNorm(16)
    norm.query_norm.scale = mx.array(scale)
    q, _ = norm(mx.array(x), mx.array(x), mx.array(x))
    np.testing.assert_allclose(np.array(q), ref, rtol=1e-5, atol=0)

    ref_ln = torch.nn.functional.layer_norm(torch.tensor(x), (16,), eps=1e-6).numpy()
    np.testing.assert_allclose(np.array(layer_norm(mx.array(x))), ref_ln, rtol=1e-4, atol=1e-5)


def test_gelu_is_tanh_form(torch_ref):
    x = np.linspace(-6, 6, 101, dtype=np.float32)
    ref = torch_ref.nn.functional.gelu(torch_ref.tensor(x), approximate="tanh").numpy()
    np.testing.assert_allclose(np.array(gelu_tanh(mx.array(x))), ref, atol=1e-6)
    assert gelu_tanh(mx.array(x).astype(mx.bfloat16)).dtype == mx.bfloat16


def _spy_attention(monkeypatch) -> list:
    seen = []
    real = layers.attention

    def spy(q, k, v, pe):
        out = real(q, k, v, pe)
        seen.append((q.dtype, k.dtype, v.dtype, out.dtype))
        return out

    monkeypatch.setattr(layers, "attention", spy)
    return seen


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_blocks_keep_the_residual_stream_in_model_dtype(monkeypatch, dtype):
    seen = _spy_attention(monkeypatch)
    hidden, heads, L, N = 32, 2, 3, 5
    double = DoubleStreamBlock(hidden, heads, 4.0)
    single = SingleStreamBlock(hidden, heads, 4.0)
    double.set_dtype(dtype)
    single.set_dtype(dtype)
    img = mx.random.normal((1, N, hidden)).astype(dtype)
    txt = mx.random.normal((1, L, hidden)).astype(dtype)
    vec = mx.random.normal((1, hidden)).astype(dtype)
    pe = embed_nd(mx.ones((L + N, 3)), AXES, 10000)  # float32, as always

    img, txt = double(img, txt, vec, pe)
    x = single(mx.concatenate([txt, img], axis=1), vec, pe)
    assert (img.dtype, txt.dtype, x.dtype) == (dtype, dtype, dtype)
    assert seen and all(d == (dtype,) * 4 for d in seen)
    assert np.isfinite(np.array(x.astype(mx.float32))).all()


def test_attention_output_layout():
    """[B, H, S, D] in, [B, S, H*D] out with head-major features (feature = h*D + d)."""
    B, H, S, D = 1, 2, 4, 16
    q, k, v = (mx.random.normal((B, H, S, D)) for _ in range(3))
    pe = embed_nd(mx.zeros((S, 3)), AXES, 10000)  # identity rotation
    out = np.array(layers.attention(q, k, v, pe))
    qn, kn, vn = (np.array(a, dtype=np.float64) for a in (q, k, v))
    scores = qn @ kn.transpose(0, 1, 3, 2) / math.sqrt(D)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    ref = (p / p.sum(-1, keepdims=True)) @ vn  # [B, H, S, D]
    np.testing.assert_allclose(out, ref.transpose(0, 2, 1, 3).reshape(B, S, H * D), atol=1e-5)
