"""The FLUX.1 flow transformer (schnell and dev) and its loader for both checkpoint layouts.

    model = load_transformer(path)                  # diffusers transformer/ folder or BFL single file
    cond = model.prepare(txt, y, img_ids, txt_ids, guidance)   # once per generation
    v = model.step(img, t, cond)                    # once per step (or model.compiled_step)

`step` is three stages that can also run apart (`--split-model` runs a slice of the blocks
per process): `embed` -> `blocks` -> `head`.

`Flux.sanitize` is the only place that knows checkpoint key names.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import mlx.core as mx
import mlx.nn as nn

from .layers import (
    DoubleStreamBlock,
    LastLayer,
    MLPEmbedder,
    SingleStreamBlock,
    embed_nd,
    silu,
    timestep_embedding,
)
from .loader import Adapter, ComponentSpec, load_component
from .quantize import blocks as quantize_blocks
from .schema import Field, check
from .weights import WeightError

TIME_DIM = 256  # width of the timestep / guidance sinusoid
# Bounds of a config's numbers: far above FLUX.1's (3072 wide, 19 + 38 blocks), far below what
# would exhaust memory just building the model.
MAX_DIM, MAX_LAYERS = 2**17, 1000

# Our own field names (a quantized folder's manifest copy), and diffusers' config.json.
_FIELDS = {
    **{k: Field(int, 1, MAX_DIM, required=False)
       for k in ("in_channels", "out_channels", "vec_in_dim", "context_in_dim", "hidden_size")},
    "mlp_ratio": Field(float, 1e-3, 64, required=False),
    "num_heads": Field(int, 1, 1024, required=False),
    "depth": Field(int, 0, MAX_LAYERS, required=False),
    "depth_single_blocks": Field(int, 0, MAX_LAYERS, required=False),
    "axes_dim": Field(list, 0, MAX_DIM, required=False, item=int),
    "theta": Field(float, 1, 1e12, required=False),
    "qkv_bias": Field(bool, required=False),
    "guidance_embed": Field(bool, required=False),
}
_DIFFUSERS_FIELDS = {
    "patch_size": Field(int, 1, 64, required=False),
    **{k: Field(int, 1, MAX_DIM, required=False)
       for k in ("in_channels", "out_channels", "pooled_projection_dim", "joint_attention_dim")},
    "num_attention_heads": Field(int, 1, 1024, required=False),
    "attention_head_dim": Field(int, 2, 4096, required=False),
    "num_layers": Field(int, 0, MAX_LAYERS, required=False),
    "num_single_layers": Field(int, 0, MAX_LAYERS, required=False),
    "axes_dims_rope": Field(list, 0, 4096, required=False, item=int),
    "guidance_embeds": Field(bool, required=False),
}


@dataclass(frozen=True)
class FluxConfig:
    """Hyper-parameters of the flow transformer (BFL `FluxParams`; defaults are FLUX.1's)."""

    in_channels: int = 64
    out_channels: int = 64
    vec_in_dim: int = 768
    context_in_dim: int = 4096
    hidden_size: int = 3072
    mlp_ratio: float = 4.0
    num_heads: int = 24
    depth: int = 19
    depth_single_blocks: int = 38
    axes_dim: tuple[int, ...] = (16, 56, 56)
    theta: int = 10_000
    qkv_bias: bool = True
    guidance_embed: bool = False

    def __post_init__(self):
        object.__setattr__(self, "axes_dim", tuple(int(d) for d in self.axes_dim))
        if not 1 <= self.num_heads <= self.hidden_size <= MAX_DIM:
            raise ValueError(f"hidden_size {self.hidden_size} and num_heads {self.num_heads} must be in 1..{MAX_DIM}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if sum(self.axes_dim) != self.head_dim or any(d % 2 for d in self.axes_dim):
            raise ValueError(f"axes_dim {self.axes_dim} must be even and sum to head_dim {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FluxConfig":
        """From our own field names; unknown keys are ignored."""
        d = check(d, _FIELDS, "transformer config")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_diffusers(cls, d: Mapping[str, Any]) -> "FluxConfig":
        """From a diffusers `FluxTransformer2DModel` config.json."""
        d = check(d, _DIFFUSERS_FIELDS, "transformer config")  # null: the default
        if d.get("patch_size", 1) != 1:
            raise ValueError(f"patch_size {d['patch_size']} is not supported (FLUX.1 packs patches into channels)")
        in_channels = d.get("in_channels", 64)
        return cls(
            in_channels=in_channels,
            out_channels=d.get("out_channels") or in_channels,
            vec_in_dim=d.get("pooled_projection_dim", 768),
            context_in_dim=d.get("joint_attention_dim", 4096),
            hidden_size=d.get("num_attention_heads", 24) * d.get("attention_head_dim", 128),
            num_heads=d.get("num_attention_heads", 24),
            depth=d.get("num_layers", 19),
            depth_single_blocks=d.get("num_single_layers", 38),
            axes_dim=tuple(d.get("axes_dims_rope", (16, 56, 56))),
            guidance_embed=bool(d.get("guidance_embeds", False)),
        )

    @classmethod
    def from_weights(cls, weights: Mapping[str, mx.array]) -> "FluxConfig":
        """Infer the config from the shapes of sanitized (BFL-named) weights, without reading them.

        Single files carry no config. The RoPE split is not in the weights: we scale FLUX.1's
        [16, 56, 56] of head_dim 128 (1/8, 7/16, 7/16) and refuse when that is not exact.
        """

        def shape(key: str) -> tuple[int, ...]:
            if key not in weights:
                raise WeightError(f"transformer checkpoint: missing tensor {key}")
            return tuple(weights[key].shape)

        def count(prefix: str) -> int:
            found = {int(m.group(1)) for k in weights if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
            return max(found) + 1 if found else 0

        hidden, in_channels = shape("img_in.weight")
        depth, depth_single = count("double_blocks"), count("single_blocks")
        if depth:
            head_dim = shape("double_blocks.0.img_attn.norm.query_norm.scale")[0]
            mlp_hidden = shape("double_blocks.0.img_mlp.0.weight")[0]
        else:
            head_dim = shape("single_blocks.0.norm.query_norm.scale")[0]
            mlp_hidden = shape("single_blocks.0.linear1.weight")[0] - 3 * hidden
        axes_dim = (head_dim // 8, 7 * head_dim // 16, 7 * head_dim // 16)
        if sum(axes_dim) != head_dim or any(d % 2 for d in axes_dim):
            raise WeightError(
                f"cannot infer the RoPE axes for head_dim {head_dim} from a single-file checkpoint; "
                "pass a config (e.g. FluxConfig.from_diffusers(config.json))"
            )
        return cls(
            in_channels=in_channels,
            out_channels=shape("final_layer.linear.weight")[0],
            vec_in_dim=shape("vector_in.in_layer.weight")[1],
            context_in_dim=shape("txt_in.weight")[1],
            hidden_size=hidden,
            mlp_ratio=mlp_hidden / hidden,
            num_heads=hidden // head_dim,
            depth=depth,
            depth_single_blocks=depth_single,
            axes_dim=axes_dim,
            qkv_bias=depth == 0 or "double_blocks.0.img_attn.qkv.bias" in weights,
            guidance_embed="guidance_in.in_layer.weight" in weights,
        )


class Conditioning(NamedTuple):
    """Everything `step` needs that does not change across the steps of one generation.

    A tuple of arrays (no Python state), so it passes through `mx.compile`.
    """

    txt: mx.array               # txt_in(T5 states)             [B, L, hidden]
    vec: mx.array               # vector_in(CLIP pooled)        [B, hidden]
    guidance: mx.array | None   # guidance_in(sinusoid(g)), dev [B, hidden]; None for schnell
    pe: mx.array                # RoPE table of [txt_ids ; img_ids], float32 [(B, 1,) L+N, head_dim/2, 2, 2]


class Hidden(NamedTuple):
    """The residual streams between the stages: text and image tokens, kept apart.

    The double blocks update each stream with its own weights; the single blocks run on
    the joined sequence [txt ; img] and `blocks` splits it again on the way out (exact:
    a concatenation and two slices), so a slice of the model can start or stop anywhere.
    """

    txt: mx.array  # [B, L, hidden]
    img: mx.array  # [B, N, hidden]


class Flux(nn.Module):
    """Flow transformer: packed latents [B, N, in_channels] -> velocity [B, N, out_channels]."""

    def __init__(self, config: FluxConfig):
        super().__init__()
        self.config = config
        c = config
        self.img_in = nn.Linear(c.in_channels, c.hidden_size)
        self.time_in = MLPEmbedder(TIME_DIM, c.hidden_size)
        self.vector_in = MLPEmbedder(c.vec_in_dim, c.hidden_size)
        if c.guidance_embed:
            self.guidance_in = MLPEmbedder(TIME_DIM, c.hidden_size)
        self.txt_in = nn.Linear(c.context_in_dim, c.hidden_size)
        self.double_blocks = [
            DoubleStreamBlock(c.hidden_size, c.num_heads, c.mlp_ratio, c.qkv_bias) for _ in range(c.depth)
        ]
        self.single_blocks = [
            SingleStreamBlock(c.hidden_size, c.num_heads, c.mlp_ratio) for _ in range(c.depth_single_blocks)
        ]
        self.final_layer = LastLayer(c.hidden_size, c.out_channels)
        self._compiled_step = None

    @property
    def dtype(self) -> mx.Dtype:
        # A bias, not a weight: biases stay in the model dtype when Linear layers are quantized.
        return self.img_in.bias.dtype

    # --- forward -----------------------------------------------------------------------------

    def prepare(self, txt: mx.array, y: mx.array, img_ids: mx.array, txt_ids: mx.array,
                guidance: mx.array | float | None = None) -> Conditioning:
        """Per-generation conditioning.

        txt [B, L, context_in_dim] (T5), y [B, vec_in_dim] (CLIP pooled), img_ids [N, 3] and
        txt_ids [L, 3] (or with a leading batch axis), guidance [B] (the scale, e.g. 3.5;
        required by dev, ignored by schnell).
        """
        dtype = self.dtype
        txt = self.txt_in(txt.astype(dtype))
        vec = self.vector_in(y.astype(dtype))
        g = None
        if self.config.guidance_embed:
            if guidance is None:
                raise ValueError("this model (FLUX.1-dev) needs a guidance scale")
            g = mx.array(guidance).reshape(-1).astype(dtype)
            g = self.guidance_in(timestep_embedding(g, TIME_DIM))
        pe = self.rope(self.token_ids(img_ids, txt_ids))
        return Conditioning(txt=txt, vec=vec, guidance=g, pe=pe)

    @staticmethod
    def token_ids(img_ids: mx.array, txt_ids: mx.array) -> mx.array:
        """The position ids of the joint sequence, [txt_ids ; img_ids]: [(B,) L+N, 3] float32.

        A batch axis on either side is given to both.
        """
        img_ids, txt_ids = mx.array(img_ids), mx.array(txt_ids)
        if img_ids.ndim != txt_ids.ndim:
            if img_ids.ndim == 2:
                img_ids = mx.broadcast_to(img_ids, (txt_ids.shape[0], *img_ids.shape))
            else:
                txt_ids = mx.broadcast_to(txt_ids, (img_ids.shape[0], *txt_ids.shape))
        return mx.concatenate([txt_ids, img_ids], axis=-2).astype(mx.float32)

    def rope(self, ids: mx.array) -> mx.array:
        """RoPE table pe of `token_ids` [(B,) L+N, 3]: float32 [(B, 1,) L+N, head_dim/2, 2, 2]."""
        pe = embed_nd(ids, self.config.axes_dim, self.config.theta)
        if pe.ndim == 5:  # batched ids: add the head axis
            pe = pe[:, None]
        return pe

    def embed(self, img: mx.array, t: mx.array | float, cond: Conditioning) -> tuple[Hidden, mx.array]:
        """First stage: the streams entering the blocks and SiLU(vec), which modulates them all.

        img [B, N, in_channels] packed latents at sigma t [B] (or a scalar). One prompt's
        text is broadcast to a batch of latents.
        """
        dtype = self.dtype
        img = self.img_in(img.astype(dtype))
        B = img.shape[0]
        t = mx.broadcast_to(mx.array(t), (B,)).astype(dtype)
        txt = cond.txt
        if txt.shape[0] != B:  # one prompt for a batch of latents
            txt = mx.broadcast_to(txt, (B, *txt.shape[1:]))

        # vec = time + guidance + pooled text, added in the reference's order (bf16 rounding)
        vec = self.time_in(timestep_embedding(t, TIME_DIM))
        if cond.guidance is not None:
            vec = vec + cond.guidance
        vec = vec + cond.vec
        silu_vec = silu(vec)  # every modulation starts with SiLU(vec): once here, not per block
        return Hidden(txt=txt, img=img), silu_vec

    def blocks(self, h: Hidden, silu_vec: mx.array, pe: mx.array,
               double: range | None = None, single: range | None = None) -> Hidden:
        """Middle stage: double_blocks[double], then single_blocks[single] (None: all of them).

        The single blocks run on [txt ; img], joined where the reference joins them; a
        process holding a slice of the model runs its own slice here.
        """
        txt, img = h
        double = range(len(self.double_blocks)) if double is None else double
        single = range(len(self.single_blocks)) if single is None else single

        for i in double:
            img, txt = self.double_blocks[i](img, txt, silu_vec, pe)

        if len(single):
            L = txt.shape[1]
            x = mx.concatenate([txt, img], axis=1)
            for i in single:
                x = self.single_blocks[i](x, silu_vec, pe)
            txt, img = x[:, :L], x[:, L:]
        return Hidden(txt=txt, img=img)

    def head(self, h: Hidden, silu_vec: mx.array) -> mx.array:
        """Last stage: the final layer on the image tokens (the text's are dropped) -> velocity
        [B, N, out_channels]."""
        return self.final_layer(h.img, silu_vec)

    def step(self, img: mx.array, t: mx.array | float, cond: Conditioning) -> mx.array:
        """Velocity for packed latents img [B, N, in_channels] at sigma t [B] (or a scalar).

        Pure in its arrays and free of data-dependent Python branches, so it can be wrapped
        in `mx.compile` (see `compiled_step`).
        """
        h, silu_vec = self.embed(img, t, cond)
        h = self.blocks(h, silu_vec, cond.pe)
        return self.head(h, silu_vec)

    def __call__(self, img: mx.array, img_ids: mx.array, txt: mx.array, txt_ids: mx.array,
                 t: mx.array | float, y: mx.array, guidance: mx.array | float | None = None) -> mx.array:
        return self.step(img, t, self.prepare(txt, y, img_ids, txt_ids, guidance))

    def compiled_step(self, img: mx.array, t: mx.array, cond: Conditioning) -> mx.array:
        """`step` under `mx.compile`: the elementwise work between the matmuls (modulation,
        gates, GELU, the float32 RoPE) fuses into few kernels. Traced once per set of shapes.

        Meant for the GPU. On the CPU (matmul- and attention-bound) it measured no faster,
        and its first call JIT-compiles C++ for ~20 s, so use `step` there.

        The parameters are implicit inputs of the compiled function, not constants, so
        loading or quantizing weights afterwards is picked up.
        """
        if self._compiled_step is None:
            self._compiled_step = mx.compile(self.step, inputs=self.state)
        # a Python number would be a constant of the trace: one retrace per step
        return self._compiled_step(img, mx.array(t), cond)

    # --- checkpoints -------------------------------------------------------------------------

    @staticmethod
    def sanitize(weights: Mapping[str, mx.array]) -> dict[str, mx.array]:
        """Checkpoint tensors -> our (BFL) parameter names, for either layout.

        BFL single files need only the optional `model.diffusion_model.` prefix stripped.
        diffusers keys are renamed, separate q/k/v (and single blocks' mlp input) are
        concatenated into the fused projections, and the final modulation's halves are
        swapped ([scale; shift] -> [shift; scale]). Keys that are not recognised are
        passed through, so strict loading names them.
        """
        weights = {k.removeprefix("model.diffusion_model."): v for k, v in weights.items()}
        diffusers_roots = ("transformer_blocks.", "single_transformer_blocks.", "x_embedder.")
        if not any(k.startswith(diffusers_roots) for k in weights):
            return weights

        out: dict[str, mx.array] = {}
        fused: dict[tuple[str, str, str], dict] = {}  # (block, fused name, kind) -> {part: (key, tensor)}
        for key, value in weights.items():
            name, kind = key.rsplit(".", 1)
            m = re.fullmatch(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)", name)
            if m:
                double = m.group(1) == "transformer_blocks"
                table, fuse = (_DOUBLE, _DOUBLE_FUSED) if double else (_SINGLE, _SINGLE_FUSED)
                prefix = f"{'double_blocks' if double else 'single_blocks'}.{m.group(2)}"
                rest = m.group(3)
                if f"{rest}.{kind}" in table:  # norm weights, whose own name changes to `scale`
                    out[f"{prefix}.{table[f'{rest}.{kind}']}"] = value
                elif rest in table:
                    out[f"{prefix}.{table[rest]}.{kind}"] = value
                elif rest in fuse:
                    fused.setdefault((prefix, fuse[rest], kind), {})[rest] = (key, value)
                else:
                    out[key] = value
            elif name == "norm_out.linear":
                scale, shift = mx.split(value, 2, axis=0)
                out[f"final_layer.adaLN_modulation.1.{kind}"] = mx.concatenate([shift, scale], axis=0)
            elif name in _TOP:
                out[f"{_TOP[name]}.{kind}"] = value
            else:
                out[key] = value

        for (prefix, fused_name, kind), parts in fused.items():
            order = _FUSION_ORDER[fused_name]
            if set(parts) == set(order):
                out[f"{prefix}.{fused_name}.{kind}"] = mx.concatenate([parts[p][1] for p in order], axis=0)
            else:  # incomplete: keep the pieces under their own names, strict loading reports them
                out.update(parts.values())
        return out


# diffusers -> BFL names (DIF single_file_utils.convert_flux_transformer_checkpoint_to_diffusers, inverted)
_TOP = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "proj_out": "final_layer.linear",
}
_DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
    "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
}
_SINGLE = {
    "norm.linear": "modulation.lin",
    "attn.norm_q.weight": "norm.query_norm.scale",
    "attn.norm_k.weight": "norm.key_norm.scale",
    "proj_out": "linear2",
}
# diffusers pieces concatenated (rows, in this order) into one fused BFL projection
_FUSION_ORDER = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
}
_DOUBLE_FUSED = {p: f for f in ("img_attn.qkv", "txt_attn.qkv") for p in _FUSION_ORDER[f]}
_SINGLE_FUSED = {p: "linear1" for p in _FUSION_ORDER["linear1"]}


def _config_from_dict(d: Mapping[str, Any]) -> FluxConfig:
    """A diffusers config.json, or our own field names (as our quantized folder stores them)."""
    diffusers = isinstance(d, Mapping) and ("num_layers" in d or "attention_head_dim" in d)
    return FluxConfig.from_diffusers(d) if diffusers else FluxConfig.from_dict(d)


def _config_of_file(weights: Mapping[str, mx.array], given: FluxConfig | None) -> FluxConfig:
    """A single file carries no config: infer it from the tensor shapes unless one is given.

    Either way the variant is what the tensors say (a dev file with a schnell base is dev).
    """
    weights = Flux.sanitize(weights)  # names only: the tensors stay unread
    config = given if given is not None else FluxConfig.from_weights(weights)
    return dataclasses.replace(config, guidance_embed="guidance_in.in_layer.weight" in weights)


def _layout(c: FluxConfig):
    """What the config promises of the (sanitized) tensors: `loader.check_layout`."""
    h = c.hidden_size
    return ({"double_blocks": c.depth, "single_blocks": c.depth_single_blocks},
            {"img_in.weight": (h, c.in_channels), "img_in.bias": (h,), "txt_in.weight": (h, c.context_in_dim),
             "vector_in.in_layer.weight": (h, c.vec_in_dim), "final_layer.linear.weight": (c.out_channels, h),
             "double_blocks.0.img_attn.norm.query_norm.scale": (c.head_dim,),
             "double_blocks.0.img_mlp.0.bias": (c.mlp_hidden_dim,),
             "single_blocks.0.norm.query_norm.scale": (c.head_dim,),
             "single_blocks.0.linear1.bias": (3 * h + c.mlp_hidden_dim,)})


SPEC = ComponentSpec(
    name="transformer",
    build=Flux,
    sanitize=Flux.sanitize,
    config_from_dict=_config_from_dict,
    config_from_weights=_config_of_file,
    config_error="invalid transformer config for {where}: {error}",
    subfolder="transformer",
    blocks=quantize_blocks,
    layout=_layout,
)


def load_transformer(path: str | Path, dtype: str | mx.Dtype | None = None,
                     config: FluxConfig | Mapping[str, Any] | None = None,
                     blocks: tuple[range, range] | None = None, quantize: int | None = None,
                     adapters: Sequence[Adapter] = ()) -> Flux:
    """Load the flow transformer from a diffusers `transformer/` folder or a BFL single file.

    `dtype` None means the device's best (bfloat16 on a GPU, float32 on the CPU). A single
    file carries no config: it is inferred from tensor shapes unless `config` is given
    (a FluxConfig, our field names, or a diffusers config.json dict).

    `blocks` = (double, single) index ranges loads only those blocks (model parallel, see
    `keep_blocks`); the small embedders and final layer are always loaded.

    `quantize` 4 or 8 quantizes each block as it is read (see `quantize.quantize_blockwise`),
    so the full-precision model never exists in memory. The `transformer/` folder of our
    quantized folder loads as stored. `adapters` change the weights before they are loaded
    (e.g. LoRAs baked in, `lora.merge_adapter`). The stages are `loader.load_component`'s.
    """
    select = None if blocks is None else (lambda model, weights: keep_blocks(model, weights, *blocks))
    return load_component(SPEC, path, dtype, config=config, quantize=quantize, select=select, adapters=adapters)


def keep_blocks(model: Flux, weights: Mapping[str, mx.array], double: range,
                single: range) -> dict[str, mx.array]:
    """Keep only blocks double[i] and single[j] in `model`, and only their tensors in `weights`.

    For model parallelism: a process holding a slice of the blocks never reads the others'
    tensors (they are lazy and simply dropped), and the other blocks' random init, never
    evaluated, costs nothing. Kept blocks are renumbered from 0, in order.
    """
    model.double_blocks = model.double_blocks[double.start:double.stop]
    model.single_blocks = model.single_blocks[single.start:single.stop]
    kept: dict[str, mx.array] = {}
    for key, value in weights.items():
        m = re.match(r"(double_blocks|single_blocks)\.(\d+)\.(.+)", key)
        if m:
            span = double if m.group(1) == "double_blocks" else single
            i = int(m.group(2))
            if i not in span:
                continue
            key = f"{m.group(1)}.{i - span.start}.{m.group(3)}"
        kept[key] = value
    return kept
