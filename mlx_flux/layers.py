"""Building blocks of the FLUX.1 flow transformer (BFL `modules/layers.py`, `math.py`).

Attribute names follow the BFL checkpoint (`img_mod.lin`, `img_attn.qkv`,
`norm.query_norm.scale`, `img_mlp.0`, `adaLN_modulation.1`), so a BFL file loads without
renaming and the code can be read side by side with the reference.

Dtypes: everything runs in the model dtype (bfloat16 on a GPU). Only the pieces the
reference computes in float32 do so here, inside one expression that casts back, so
that no float32 tensor ever leaks into the residual stream: the sinusoid embedding,
the QK RMSNorm statistics (inside `mx.fast.rms_norm`), the RoPE rotation, the softmax
(inside `mx.fast.scaled_dot_product_attention`) and the GELU/SiLU nonlinearities
(single fused kernels in PyTorch, so one rounding there).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .fanout import concat_fan_out, fan_out

EPS = 1e-6  # LayerNorm and QK RMSNorm epsilon of FLUX (MLX's nn defaults are 1e-5)
# CPU attention works on groups of heads whose float32 scores fit this (512x512: two heads).
ATTENTION_PIECE_BYTES = 16 * 1024**2


# --- elementwise helpers ---------------------------------------------------------------------

def _f32(fn, x: mx.array) -> mx.array:
    """fn(x) computed in float32 and rounded once to x's dtype, like PyTorch's fused kernels."""
    if x.dtype == mx.float32:
        return fn(x)
    return fn(x.astype(mx.float32)).astype(x.dtype)


def silu(x: mx.array) -> mx.array:
    return _f32(nn.silu, x)


_GELU_C = 2 * math.sqrt(2 / math.pi)


def _gelu_tanh_f32(x: mx.array) -> mx.array:
    # 0.5 * x * (1 + tanh(u)) == x * sigmoid(2u): the same function with one
    # transcendental and fewer passes (MLX's CPU tanh is its slowest elementwise op).
    return x * mx.sigmoid(x * (_GELU_C + (_GELU_C * 0.044715) * (x * x)))


def gelu_tanh(x: mx.array) -> mx.array:
    """tanh-approximated GELU ("gelu_pytorch_tanh"), computed in float32."""
    return _f32(_gelu_tanh_f32, x)


def gelu_tanh_parts(x: mx.array) -> list[mx.array]:
    """`gelu_tanh` of x in feature slices, one per CPU stream (see `fanout`); join with concatenate."""
    return fan_out(gelu_tanh, [x], axis=-1)


def layer_norm(x: mx.array) -> mx.array:
    """LayerNorm without affine parameters (all FLUX transformer norms)."""
    return mx.fast.layer_norm(x, None, None, EPS)


def modulate(x: mx.array, shift: mx.array, scale: mx.array) -> mx.array:
    return (1 + scale) * x + shift


# --- embeddings ------------------------------------------------------------------------------

def timestep_embedding(t: mx.array, dim: int = 256, max_period: float = 10000.0,
                       time_factor: float = 1000.0) -> mx.array:
    """Sinusoid [cos | sin] of `time_factor * t`, t of shape [B] -> [B, dim] in t's dtype.

    The multiplication by 1000 happens in t's dtype on purpose: both references round
    1000*t to bfloat16 in a bfloat16 model (750 -> 752), and we reproduce that.
    """
    t = t * time_factor
    args = t.astype(mx.float32)[:, None] * mx.array(_timestep_freqs(dim // 2, max_period))[None]
    emb = mx.concatenate([mx.cos(args), mx.sin(args)], axis=-1)
    if dim % 2:
        emb = mx.concatenate([emb, mx.zeros_like(emb[:, :1])], axis=-1)
    return emb.astype(t.dtype)


@lru_cache
def _timestep_freqs(half: int, max_period: float) -> np.ndarray:
    """exp(-ln(max_period) * k / half) as the references get it in float32.

    The exponent is rounded in float32 like theirs; the exp is done in float64 and
    rounded once, because MLX's float32 exp is off by an ulp for most k, and an ulp of
    a frequency times 3500 (guidance) moves the sinusoid by 1e-4.
    """
    exponent = np.float32(-math.log(max_period)) * np.arange(half, dtype=np.float32) / np.float32(half)
    return np.exp(exponent.astype(np.float64)).astype(np.float32)


@lru_cache
def _rope_freqs(dim: int, theta: float) -> np.ndarray:
    """theta^(-2k/dim), k < dim/2, correctly rounded to float32."""
    return (1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)).astype(np.float32)


class MLPEmbedder(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_dim)
        self.out_layer = nn.Linear(hidden_dim, hidden_dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.out_layer(silu(self.in_layer(x)))


# --- 3-axis RoPE -----------------------------------------------------------------------------

def rope(pos: mx.array, dim: int, theta: float) -> mx.array:
    """Rotation matrices for one position axis: pos [..., S] -> [..., S, dim/2, 2, 2] float32."""
    angles = pos.astype(mx.float32)[..., None] * mx.array(_rope_freqs(dim, theta))
    cos, sin = mx.cos(angles), mx.sin(angles)
    return mx.stack([cos, -sin, sin, cos], axis=-1).reshape(*angles.shape, 2, 2)


def embed_nd(ids: mx.array, axes_dim: tuple[int, ...], theta: float) -> mx.array:
    """RoPE table for ids [..., S, n_axes]: [..., S, head_dim/2, 2, 2] in float32.

    Each axis rotates its own slice of the head dim (axis 0 the first axes_dim[0] dims,
    ...). Built once per generation; a leading batch axis of ids is kept, and the caller
    adds the head axis.
    """
    return mx.concatenate([rope(ids[..., i], d, theta) for i, d in enumerate(axes_dim)], axis=-3)


def apply_rope(x: mx.array, pe: mx.array) -> mx.array:
    """Rotate adjacent pairs (x[2k], x[2k+1]) of x [B, H, S, D] by pe [..., S, D/2, 2, 2].

    In float32 like the reference, and cast straight back so q and k keep the model
    dtype: a float32 table must not promote the attention (and everything after it).
    """
    xr = x.astype(mx.float32).reshape(*x.shape[:-1], -1, 1, 2)
    out = pe[..., 0] * xr[..., 0] + pe[..., 1] * xr[..., 1]
    return out.reshape(x.shape).astype(x.dtype)


# --- attention -------------------------------------------------------------------------------

def attention(q: mx.array, k: mx.array, v: mx.array, pe: mx.array) -> mx.array:
    """Unmasked attention with RoPE: q, k, v [B, H, S, D] -> [B, S, H*D] (head-major features).

    Heads are independent: on the CPU groups of them run on separate streams (the
    softmax is single-threaded there), and in groups small enough that the float32
    scores the CPU materialises stay under ATTENTION_PIECE_BYTES each; on a GPU this is
    one fused call.
    """
    B, H, S, D = q.shape
    pieces = math.ceil(B * H * S * S * 4 / ATTENTION_PIECE_BYTES)

    def heads(q: mx.array, k: mx.array, v: mx.array) -> mx.array:
        x = mx.fast.scaled_dot_product_attention(apply_rope(q, pe), apply_rope(k, pe), v, scale=D**-0.5)
        return x.transpose(0, 2, 1, 3).reshape(B, S, -1)

    return concat_fan_out(heads, [q, k, v], axis=1, out_axis=-1, cpu_pieces=pieces)


def split_heads(qkv: mx.array, num_heads: int) -> tuple[mx.array, mx.array, mx.array]:
    """[B, S, 3*H*D] laid out as q | k | v, each head-major -> three [B, H, S, D]."""
    B, S, _ = qkv.shape
    q, k, v = qkv.reshape(B, S, 3, num_heads, -1).transpose(2, 0, 3, 1, 4)
    return q, k, v


class RMSNorm(nn.Module):
    """RMSNorm with a learned `scale` (BFL's name), eps 1e-6, statistics in float32."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = mx.ones((dim,))

    def __call__(self, x: mx.array) -> mx.array:
        return mx.fast.rms_norm(x, self.scale, EPS)


class QKNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.query_norm = RMSNorm(dim)
        self.key_norm = RMSNorm(dim)

    def __call__(self, q: mx.array, k: mx.array, v: mx.array) -> tuple[mx.array, mx.array]:
        return self.query_norm(q).astype(v.dtype), self.key_norm(k).astype(v.dtype)


class SelfAttention(nn.Module):
    """Per-stream attention weights of a double block; the attention itself is joint."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.norm = QKNorm(dim // num_heads)
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """One fused projection, split into QK-normed heads [B, H, S, D]."""
        q, k, v = split_heads(self.qkv(x), self.num_heads)
        q, k = self.norm(q, k, v)
        return q, k, v


# --- modulation ------------------------------------------------------------------------------

class ModulationOut(NamedTuple):
    shift: mx.array
    scale: mx.array
    gate: mx.array


class Modulation(nn.Module):
    """adaLN parameters from the conditioning vector: (shift, scale, gate) x 1 or 2.

    Takes SiLU(vec), not vec: every block applies the same SiLU to the same vector, so
    the model computes it once per step instead of once per block.
    """

    def __init__(self, dim: int, double: bool):
        super().__init__()
        self.multiplier = 6 if double else 3
        self.lin = nn.Linear(dim, self.multiplier * dim)

    def __call__(self, silu_vec: mx.array) -> tuple[ModulationOut, ModulationOut | None]:
        out = mx.split(self.lin(silu_vec)[:, None, :], self.multiplier, axis=-1)
        return ModulationOut(*out[:3]), ModulationOut(*out[3:]) if self.multiplier == 6 else None


def _mlp(layers: list, x: mx.array) -> mx.array:
    """[Linear, GELU, Linear] with the GELU fanned out over CPU streams (see `fanout`)."""
    fc1, _, fc2 = layers
    return fc2(concat_fan_out(gelu_tanh, [fc1(x)], axis=-1, out_axis=-1))


class GELU(nn.Module):
    """tanh-approximated GELU, computed in float32 (see `gelu_tanh`)."""

    def __call__(self, x: mx.array) -> mx.array:
        return gelu_tanh(x)


# --- blocks ----------------------------------------------------------------------------------

class DoubleStreamBlock(nn.Module):
    """Separate weights for the image and text streams, one joint attention over [txt ; img]."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True):
        super().__init__()
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.img_mod = Modulation(hidden_size, double=True)
        self.img_attn = SelfAttention(hidden_size, num_heads, qkv_bias)
        # Lists, not nn.Sequential, so the parameter names are BFL's `img_mlp.0` / `img_mlp.2`.
        self.img_mlp = [nn.Linear(hidden_size, mlp_hidden), GELU(), nn.Linear(mlp_hidden, hidden_size)]
        self.txt_mod = Modulation(hidden_size, double=True)
        self.txt_attn = SelfAttention(hidden_size, num_heads, qkv_bias)
        self.txt_mlp = [nn.Linear(hidden_size, mlp_hidden), GELU(), nn.Linear(mlp_hidden, hidden_size)]

    def __call__(self, img: mx.array, txt: mx.array, silu_vec: mx.array,
                 pe: mx.array) -> tuple[mx.array, mx.array]:
        L = txt.shape[1]
        img_mod1, img_mod2 = self.img_mod(silu_vec)
        txt_mod1, txt_mod2 = self.txt_mod(silu_vec)

        # prepare image and text for attention
        img_modulated = modulate(layer_norm(img), img_mod1.shift, img_mod1.scale)
        img_q, img_k, img_v = self.img_attn.qkv_heads(img_modulated)
        txt_modulated = modulate(layer_norm(txt), txt_mod1.shift, txt_mod1.scale)
        txt_q, txt_k, txt_v = self.txt_attn.qkv_heads(txt_modulated)

        # run actual attention on the joint sequence [txt ; img]
        q = mx.concatenate([txt_q, img_q], axis=2)
        k = mx.concatenate([txt_k, img_k], axis=2)
        v = mx.concatenate([txt_v, img_v], axis=2)
        attn = attention(q, k, v, pe)
        txt_attn, img_attn = attn[:, :L], attn[:, L:]

        # image stream
        img = img + img_mod1.gate * self.img_attn.proj(img_attn)
        img_modulated = modulate(layer_norm(img), img_mod2.shift, img_mod2.scale)
        img = img + img_mod2.gate * _mlp(self.img_mlp, img_modulated)

        # text stream
        txt = txt + txt_mod1.gate * self.txt_attn.proj(txt_attn)
        txt_modulated = modulate(layer_norm(txt), txt_mod2.shift, txt_mod2.scale)
        txt = txt + txt_mod2.gate * _mlp(self.txt_mlp, txt_modulated)
        return img, txt


class SingleStreamBlock(nn.Module):
    """Parallel attention + MLP on the joint sequence, with fused input and output projections."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.mlp_hidden_dim = int(hidden_size * mlp_ratio)
        # linear1 = qkv | mlp_in, linear2 = attn_out + mlp_out, each one matmul
        self.linear1 = nn.Linear(hidden_size, 3 * hidden_size + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(hidden_size + self.mlp_hidden_dim, hidden_size)
        self.norm = QKNorm(hidden_size // num_heads)
        self.modulation = Modulation(hidden_size, double=False)

    def __call__(self, x: mx.array, silu_vec: mx.array, pe: mx.array) -> mx.array:
        mod, _ = self.modulation(silu_vec)
        x_mod = modulate(layer_norm(x), mod.shift, mod.scale)
        qkv, mlp = mx.split(self.linear1(x_mod), [3 * self.hidden_size], axis=-1)

        q, k, v = split_heads(qkv, self.num_heads)
        q, k = self.norm(q, k, v)
        attn = attention(q, k, v, pe)

        output = self.linear2(mx.concatenate([attn, *gelu_tanh_parts(mlp)], axis=-1))
        return x + mod.gate * output


class LastLayer(nn.Module):
    def __init__(self, hidden_size: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, out_channels)
        # [SiLU, Linear] as a list: the checkpoint key is `adaLN_modulation.1`. The SiLU is
        # applied by the caller, once per step (see `Modulation`).
        self.adaLN_modulation = [nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size)]

    def __call__(self, x: mx.array, silu_vec: mx.array) -> mx.array:
        shift, scale = mx.split(self.adaLN_modulation[1](silu_vec), 2, axis=-1)
        x = modulate(layer_norm(x), shift[:, None, :], scale[:, None, :])
        return self.linear(x)
