"""T5 (v1.1) encoder (transformers `T5EncoderModel`) in MLX: FLUX's per-token text conditioning.

Module and attribute names follow transformers' checkpoint keys (`encoder.block.3.layer.1.
DenseReluDense.wi_0`), so `sanitize` stays tiny and errors name the tensors the user's
file actually holds. FLUX runs the encoder without an attention mask: pad tokens attend
and are attended to, and their outputs are part of the conditioning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .fanout import concat_fan_out
from .layers import gelu_tanh
from .loader import ComponentSpec, load_component
from .quantize import blocks as quantize_blocks
from .schema import Field, check

# transformers' ACT2FN names -> MLX. "gelu" is the exact erf form there; "gelu_new" the
# tanh approximation, which is what "gated-gelu" (T5 v1.1, FLUX) means.
_ACTIVATIONS = {"relu": nn.relu, "gelu": nn.gelu, "gelu_new": gelu_tanh, "silu": nn.silu}


_FIELDS = {
    "vocab_size": Field(int, 1, 2**22),
    "d_model": Field(int, 1, 2**16),
    "d_kv": Field(int, 1, 2**12),
    "num_heads": Field(int, 1, 1024),
    "d_ff": Field(int, 1, 2**18),
    "num_layers": Field(int, 1, 1000),
    "feed_forward_proj": Field(str, required=False),
    "relative_attention_num_buckets": Field(int, 4, 4096, required=False),
    "relative_attention_max_distance": Field(int, 1, 2**20, required=False),
    "layer_norm_epsilon": Field(float, 0, 1, required=False),
}


@dataclass(frozen=True)
class T5Config:
    """The fields of a transformers `T5Config` (text_encoder_2/config.json) the encoder uses."""

    vocab_size: int
    d_model: int
    d_kv: int
    num_heads: int
    d_ff: int
    num_layers: int
    feed_forward_proj: str = "relu"  # transformers' default (original T5); v1.1 says "gated-gelu"
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "T5Config":
        """Build from a config.json dict, ignoring keys we do not use (4.x and 5.x styles).

        `dense_act_fn`/`is_gated_act` are ignored on purpose: transformers re-derives both
        from `feed_forward_proj`, so that is the field that decides.
        """
        d = check(d, _FIELDS, "T5 config")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def __post_init__(self) -> None:
        if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 4:
            raise ValueError(f"relative_attention_max_distance {self.relative_attention_max_distance} must exceed "
                             f"a quarter of relative_attention_num_buckets ({self.relative_attention_num_buckets})")
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or self.activation not in _ACTIVATIONS:
            supported = ", ".join(f"{g}{a}" for g in ("", "gated-") for a in ("relu", "gelu", "silu"))
            raise ValueError(f"unsupported feed_forward_proj {self.feed_forward_proj!r} (supported: {supported})")

    @property
    def is_gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        # transformers maps "gated-gelu" to gelu_new for backwards compatibility, but a
        # plain "gelu" or "gated-gelu_new" keep their own names.
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return self.feed_forward_proj.split("-")[-1]

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv


def relative_position_bucket(
    query_length: int, key_length: int, num_buckets: int = 32, max_distance: int = 128
) -> np.ndarray:
    """T5's bidirectional relative-position buckets, an int [query_length, key_length] table.

    Half the buckets are for keys after the query. Within each half, distances below a
    quarter of the buckets get one bucket each and longer ones share log-spaced buckets up
    to `max_distance`. The log is taken in float32 in the same order as transformers, so
    the table matches it exactly, boundaries included. Computed on the host because it
    depends on the lengths only, and so is identical on every device.
    """
    return _bucket_table(query_length, key_length, num_buckets, max_distance).copy()


@lru_cache(maxsize=8)
def _bucket_table(query_length: int, key_length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    relative = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]  # key - query
    half = num_buckets // 2
    max_exact = half // 2
    n = np.abs(relative)
    log_ratio = np.log(np.maximum(n, max_exact).astype(np.float32) / np.float32(max_exact))
    large = max_exact + (
        log_ratio / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
    ).astype(np.int64)
    large = np.minimum(large, half - 1)
    buckets = np.where(relative > 0, half, 0) + np.where(n < max_exact, n, large)
    return buckets.astype(np.int32)


class T5LayerNorm(nn.Module):
    """T5's RMSNorm: no mean subtraction, no bias."""

    def __init__(self, dims: int, eps: float):
        super().__init__()
        self.weight = mx.ones((dims,))
        self.eps = eps

    def __call__(self, x: mx.array) -> mx.array:
        # The fused kernel accumulates the mean square in float32 for 16-bit inputs, like
        # transformers. The result takes the weight's dtype, as there, for the float16 case
        # where the residual stream has been promoted to float32 by the float32 `wo`.
        return mx.fast.rms_norm(x, self.weight.astype(x.dtype), self.eps).astype(self.weight.dtype)


class T5Attention(nn.Module):
    def __init__(self, config: T5Config, has_relative_attention_bias: bool = False):
        super().__init__()
        self.num_heads = config.num_heads
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.q = nn.Linear(config.d_model, config.inner_dim, bias=False)
        self.k = nn.Linear(config.d_model, config.inner_dim, bias=False)
        self.v = nn.Linear(config.d_model, config.inner_dim, bias=False)
        self.o = nn.Linear(config.inner_dim, config.d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(self.num_buckets, self.num_heads)

    def compute_bias(self, length: int) -> mx.array:
        """The additive position bias [1, heads, length, length] (only block 0 owns the table)."""
        buckets = mx.array(_bucket_table(length, length, self.num_buckets, self.max_distance))
        values = self.relative_attention_bias(buckets)  # [L, L, heads]
        return values.transpose(2, 0, 1)[None]

    def __call__(self, x: mx.array, position_bias: mx.array) -> mx.array:
        B, L, _ = x.shape
        q, k, v = (
            proj(x).reshape(B, L, self.num_heads, -1).transpose(0, 2, 1, 3) for proj in (self.q, self.k, self.v)
        )
        # T5 folds 1/sqrt(d_kv) into its initialisation: scores are q.k + bias, unscaled.
        # The kernel does the softmax in float32 for 16-bit inputs, as transformers does.
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0, mask=position_bias)
        return self.o(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class T5DenseActDense(nn.Module):
    """Original T5 feed-forward: wo(act(wi x))."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.act = _ACTIVATIONS[config.activation]

    def __call__(self, x: mx.array) -> mx.array:
        return self.wo(self.act(self.wi(x)))


class T5DenseGatedActDense(nn.Module):
    """T5 v1.1 feed-forward: wo(act(wi_0 x) * wi_1 x)."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.act = _ACTIVATIONS[config.activation]

    def __call__(self, x: mx.array) -> mx.array:
        # the gating is elementwise: on the CPU its feature slices run on separate streams
        gated = concat_fan_out(lambda h0, h1: self.act(h0) * h1, [self.wi_0(x), self.wi_1(x)], axis=-1, out_axis=-1)
        return self.wo(gated)


class T5LayerSelfAttention(nn.Module):
    def __init__(self, config: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        self.SelfAttention = T5Attention(config, has_relative_attention_bias)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def __call__(self, x: mx.array, position_bias: mx.array) -> mx.array:
        return x + self.SelfAttention(self.layer_norm(x), position_bias)


class T5LayerFF(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.DenseReluDense = T5DenseGatedActDense(config) if config.is_gated else T5DenseActDense(config)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def __call__(self, x: mx.array) -> mx.array:
        return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nn.Module):
    def __init__(self, config: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        self.layer = [T5LayerSelfAttention(config, has_relative_attention_bias), T5LayerFF(config)]

    def __call__(self, x: mx.array, position_bias: mx.array) -> mx.array:
        attention, feed_forward = self.layer
        x = attention(x, position_bias)
        x = feed_forward(x)
        return x


class T5Stack(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.block = [T5Block(config, has_relative_attention_bias=i == 0) for i in range(config.num_layers)]
        self.final_layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def __call__(self, x: mx.array) -> mx.array:
        # Block 0's bias table serves every layer: compute it once per call.
        position_bias = self.block[0].layer[0].SelfAttention.compute_bias(x.shape[1])
        for block in self.block:
            x = block(x, position_bias)
        return self.final_layer_norm(x)


class T5Encoder(nn.Module):
    """T5 encoder: token ids [B, L] -> hidden states [B, L, d_model] (no attention mask)."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.config = config
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config)

    def __call__(self, input_ids: mx.array) -> mx.array:
        """Encode `input_ids` [B, L]; every position, pad included, attends to every other.

        T5 has no absolute positions and no embedding scaling: the token table is all.
        """
        return self.encoder(self.shared(input_ids))

    @staticmethod
    def sanitize(weights: Mapping[str, mx.array]) -> dict[str, mx.array]:
        """Map a transformers T5 checkpoint onto this module's parameter names.

        The encoder reads `encoder.embed_tokens`, which transformers ties to `shared`; saved
        files hold `shared.weight` (always in 5.x), `encoder.embed_tokens.weight`, or both.
        When both are there transformers unties them if they differ and the encoder uses
        `encoder.embed_tokens`, so that one wins here too. A full encoder-decoder checkpoint
        also loads: its decoder and LM head are dropped, as transformers' T5EncoderModel does.
        """
        weights = dict(weights)
        embed_tokens = weights.pop("encoder.embed_tokens.weight", None)
        if embed_tokens is not None:
            weights["shared.weight"] = embed_tokens
        return {k: v for k, v in weights.items() if not k.startswith(("decoder.", "lm_head."))}


def _layout(c: T5Config):
    """What the config promises of the (sanitized) tensors: `loader.check_layout`."""
    attn = "encoder.block.0.layer.0."
    return ({"encoder.block": c.num_layers},
            {"shared.weight": (c.vocab_size, c.d_model), attn + "SelfAttention.q.weight": (c.inner_dim, c.d_model),
             attn + "SelfAttention.relative_attention_bias.weight": (c.relative_attention_num_buckets, c.num_heads),
             attn + "layer_norm.weight": (c.d_model,), "encoder.final_layer_norm.weight": (c.d_model,)})


SPEC = ComponentSpec(
    name="T5 text encoder",
    build=T5Encoder,
    sanitize=T5Encoder.sanitize,
    config_from_dict=T5Config.from_dict,
    label="T5 text encoder ({where})",
    config_error="unusable T5 config.json in {where}: {error}",
    subfolder="text_encoder_2",  # its part in our quantized folder
    # T5's feed-forward output overflows float16: transformers keeps `wo` in float32 there
    keep_float32=(".wo.",),
    blocks=quantize_blocks,
    layout=_layout,
)


def load_t5(folder: str | Path, dtype: mx.Dtype | str | None = None) -> T5Encoder:
    """Load a transformers-format T5 encoder folder (FLUX's `text_encoder_2/`, sharded or not).

    `dtype` None means `weights.default_dtype()` (float32 on CPU, bfloat16 on GPU). T5
    overflows in float16; if it is asked for anyway, `wo` stays float32 as transformers
    keeps it. Raises `WeightError` naming the file or tensor when the folder is missing, a
    file is corrupt, or the checkpoint does not fit its config.
    """
    return load_component(SPEC, folder, dtype)
