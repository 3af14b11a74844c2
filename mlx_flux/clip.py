"""CLIP text tower (transformers `CLIPTextModel`) in MLX: FLUX's pooled prompt vector.

FLUX uses only the pooled output (the final-normed hidden state at the prompt's EOS
token) as its `vec`/`y` conditioning. Module and attribute names follow transformers'
checkpoint keys, so `sanitize` only strips a prefix and errors name the tensors the
user's file actually holds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import mlx.core as mx
import mlx.nn as nn

from .loader import ComponentSpec, load_component
from .schema import Field, check

# transformers' ACT2FN names -> MLX. "quick_gelu" (x * sigmoid(1.702 x)) is what
# OpenAI's CLIP was trained with; "gelu" there is the exact erf form.
_ACTIVATIONS = {"quick_gelu": nn.gelu_fast_approx, "gelu": nn.gelu}

# CLIP configs written before transformers PR #24773 carry eos_token_id 2; for those,
# transformers keeps the original rule "EOS is the largest id in the sequence".
_LEGACY_EOS_TOKEN_ID = 2


_FIELDS = {
    "vocab_size": Field(int, 1, 2**22),
    "hidden_size": Field(int, 1, 2**16),
    "intermediate_size": Field(int, 1, 2**18),
    "num_hidden_layers": Field(int, 1, 1000),
    "num_attention_heads": Field(int, 1, 1024),
    "max_position_embeddings": Field(int, 1, 2**16),
    "hidden_act": Field(str, required=False),
    "layer_norm_eps": Field(float, 0, 1, required=False),
    "eos_token_id": Field(int, 0, 2**22, required=False),
}


@dataclass(frozen=True)
class CLIPConfig:
    """The fields of a transformers `CLIPTextConfig` (text_encoder/config.json) we use."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 49407  # transformers' default; FLUX's config says 2 (legacy)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CLIPConfig":
        """Build from a config.json dict, ignoring keys we do not use (4.x and 5.x styles)."""
        d = check(d, _FIELDS, "CLIP config")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r} (supported: {', '.join(_ACTIVATIONS)})")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class CLIPAttention(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        dims = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.scale = config.head_dim**-0.5
        self.q_proj = nn.Linear(dims, dims)
        self.k_proj = nn.Linear(dims, dims)
        self.v_proj = nn.Linear(dims, dims)
        self.out_proj = nn.Linear(dims, dims)

    def __call__(self, x: mx.array) -> mx.array:
        B, L, _ = x.shape
        q, k, v = (
            proj(x).reshape(B, L, self.num_heads, -1).transpose(0, 2, 1, 3)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        # CLIP's text tower is causal even though FLUX only reads it once, at the EOS token.
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask="causal")
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class CLIPMLP(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = _ACTIVATIONS[config.hidden_act]

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = CLIPAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)

    def __call__(self, x: mx.array) -> mx.array:
        x = x + self.self_attn(self.layer_norm1(x))
        x = x + self.mlp(self.layer_norm2(x))
        return x


class CLIPEmbeddings(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def __call__(self, input_ids: mx.array) -> mx.array:
        L = input_ids.shape[-1]
        return self.token_embedding(input_ids) + self.position_embedding(mx.arange(L))


class CLIPEncoder(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.layers = [CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers)]

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers:
            x = layer(x)
        return x


class CLIPTextModel(nn.Module):
    """CLIP text transformer: token ids -> (last hidden state, pooled EOS state)."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.embeddings = CLIPEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def __call__(self, input_ids: mx.array) -> tuple[mx.array, mx.array]:
        """Encode `input_ids` [B, S] (S <= max_position_embeddings, usually 77).

        Returns `hidden` [B, S, hidden_size] (after the final LayerNorm, like transformers'
        last_hidden_state) and `pooled` [B, hidden_size], the row of `hidden` at the first EOS.
        """
        B, S = input_ids.shape
        if S > self.config.max_position_embeddings:
            raise ValueError(
                f"CLIP input has {S} tokens, the model takes at most {self.config.max_position_embeddings}"
            )
        x = self.embeddings(input_ids)
        hidden = self.final_layer_norm(self.encoder(x))
        eos = self.eos_positions(input_ids)
        pooled = mx.take_along_axis(hidden, eos[:, None, None], axis=1).squeeze(1)
        return hidden, pooled

    def eos_positions(self, input_ids: mx.array) -> mx.array:
        """Index [B] of the token whose state is pooled, by transformers' rule for this config.

        Legacy configs (eos_token_id 2) take the first position of the largest id, which is
        EOS (49407) for CLIP's tokenizer; others take the first position equal to
        eos_token_id, or 0 if there is none (what torch's argmax over all-False gives).
        Written as a min over positions so it does not depend on which maximum argmax picks.
        """
        S = input_ids.shape[-1]
        if self.config.eos_token_id == _LEGACY_EOS_TOKEN_ID:
            is_eos = input_ids == input_ids.max(axis=-1, keepdims=True)
        else:
            is_eos = input_ids == self.config.eos_token_id
        first = mx.where(is_eos, mx.arange(S), S).min(axis=-1)
        return mx.where(first == S, 0, first)

    @staticmethod
    def sanitize(weights: Mapping[str, mx.array]) -> dict[str, mx.array]:
        """Map a transformers CLIPTextModel checkpoint onto this module's parameter names.

        transformers 4.x saves keys under `text_model.`, 5.x without it. Old checkpoints also
        carry the `embeddings.position_ids` buffer, which is just 0..76 and not a parameter.
        """
        out = {}
        for key, value in weights.items():
            key = key.removeprefix("text_model.")
            if key == "embeddings.position_ids":
                continue
            out[key] = value
        return out


def _layout(c: CLIPConfig):
    """What the config promises of the (sanitized) tensors: `loader.check_layout`."""
    return ({"encoder.layers": c.num_hidden_layers},
            {"embeddings.token_embedding.weight": (c.vocab_size, c.hidden_size),
             "embeddings.position_embedding.weight": (c.max_position_embeddings, c.hidden_size),
             "encoder.layers.0.mlp.fc1.bias": (c.intermediate_size,), "final_layer_norm.weight": (c.hidden_size,)})


SPEC = ComponentSpec(
    name="CLIP text encoder",
    build=CLIPTextModel,
    sanitize=CLIPTextModel.sanitize,
    config_from_dict=CLIPConfig.from_dict,
    label="CLIP text encoder ({where})",
    config_error="unusable CLIP config.json in {where}: {error}",
    layout=_layout,
)


def load_clip(folder: str | Path, dtype: mx.Dtype | str | None = None) -> CLIPTextModel:
    """Load a transformers-format CLIP text encoder folder (FLUX's `text_encoder/`).

    `dtype` None means `weights.default_dtype()` (float32 on CPU, bfloat16 on GPU).
    Raises `WeightError` naming the file or tensor when the folder is missing, a file is
    corrupt, or the checkpoint does not fit its config.
    """
    return load_component(SPEC, folder, dtype)
