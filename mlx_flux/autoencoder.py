"""The FLUX.1 autoencoder (VAE) in MLX: encoder, decoder, weight mapping, loader.

Tensors are NHWC. Module names follow BFL's `ae.safetensors` (`decoder.up.3.block.0.conv1`,
`mid.attn_1.q`, `nin_shortcut`), so this file reads side by side with BFL's autoencoder.py;
`sanitize` maps the diffusers `vae/` layout onto the same names.

Memory is the point of most of the machinery here. A 3x3 convolution on MLX's CPU backend
unfolds its input nine-fold (im2col), and a lazy graph keeps the intermediates of a whole
decoder alive; a straightforward port peaks near 10 GB for one 512x512 decode. So every
convolution runs over bands of output rows (`_conv`), group-norm statistics are gathered
band by band in float32 (`GroupNorm.stats`), the norm + swish in front of a convolution
is applied per band on the fly instead of materialising the normalised tensor, and each
step is evaluated before the next starts (`_chain`). An untiled float32 decode then needs
about three full-resolution activations (~0.6 GB at 512x512, ~2.1 GB at 1024x1024 on top
of the weights); larger images are decoded in tiles (`AutoEncoder.decode`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, NamedTuple

import mlx.core as mx
import mlx.nn as nn

from .fanout import concat_fan_out
from .loader import ComponentSpec, load_component
from .schema import Field, check
from .weights import WeightError

# Working-set target of one band of a convolution (im2col + float32 norm temporaries).
# Small bands are also faster on the CPU (they stay in cache); a GPU gets 8x larger bands,
# since it prefers fewer, larger launches.
_BAND_BYTES = 32 * 2**20
# Largest attention score matrix computed at once (the mid-block attends over all h*w
# latent pixels: 16k tokens at 1024x1024 would be a 1 GiB float32 matrix).
_SCORES_BYTES = 128 * 2**20
# Automatic tiling kicks in when an untiled decode would need more than this (estimate):
# float32 above 1024x1024, bfloat16 above 2 Mpx. Below it the exact path is cheap enough.
_TILE_ABOVE_BYTES = 2 * 2**30
_AUTO_TILE = 64  # latent pixels per tile side (512 image pixels) when tiling automatically
_BLEND = 4  # latent pixels on each side of a tile boundary over which neighbours are blended


_FIELDS = {
    "in_channels": Field(int, 1, 64, required=False),
    "out_channels": Field(int, 1, 64, required=False),
    "block_out_channels": Field(list, 1, 2**14, required=False, item=int),
    "layers_per_block": Field(int, 1, 100, required=False),
    "latent_channels": Field(int, 1, 1024, required=False),
    "norm_num_groups": Field(int, 1, 2**14, required=False),
    "scaling_factor": Field(float, required=False),
    "shift_factor": Field(float, required=False),
    "mid_block_add_attention": Field(bool, required=False),
    "act_fn": Field(str, required=False),
    "use_quant_conv": Field(bool, required=False),
    "use_post_quant_conv": Field(bool, required=False),
    "down_block_types": Field(list, required=False, item=str),
    "up_block_types": Field(list, required=False, item=str),
}


@dataclass(frozen=True)
class AutoEncoderConfig:
    """Shape of the VAE. Defaults are FLUX.1's (BFL `AutoEncoderParams`)."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2  # the decoder has one more resnet per level
    latent_channels: int = 16
    norm_num_groups: int = 32
    scale_factor: float = 0.3611
    shift_factor: float = 0.1159
    mid_attention: bool = True

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        if not self.block_out_channels or self.layers_per_block < 1 or len(self.block_out_channels) > 8:
            raise ValueError("VAE config needs one to eight levels and at least one resnet per level")
        if self.norm_num_groups < 1:
            raise ValueError(f"VAE norm_num_groups must be at least 1, not {self.norm_num_groups}")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"VAE widths {bad} are not divisible by norm_num_groups={self.norm_num_groups}")
        if self.scale_factor == 0 or not math.isfinite(self.scale_factor) or not math.isfinite(self.shift_factor):
            raise ValueError("VAE scaling_factor must be a non-zero finite number and shift_factor finite")

    @property
    def num_levels(self) -> int:
        return len(self.block_out_channels)

    @property
    def downscale(self) -> int:
        """Image pixels per latent pixel along each axis (8 for FLUX)."""
        return 2 ** (self.num_levels - 1)

    @classmethod
    def from_dict(cls, config: Mapping) -> "AutoEncoderConfig":
        """From a diffusers `vae/config.json` (AutoencoderKL); unknown keys are ignored."""
        config = check(config, _FIELDS, "VAE config")  # null: the default
        unsupported = {
            "act_fn": config.get("act_fn", "silu") != "silu",
            "use_quant_conv": bool(config.get("use_quant_conv", False)),
            "use_post_quant_conv": bool(config.get("use_post_quant_conv", False)),
            "down_block_types": any(t != "DownEncoderBlock2D" for t in config.get("down_block_types", [])),
            "up_block_types": any(t != "UpDecoderBlock2D" for t in config.get("up_block_types", [])),
        }
        bad = [k for k, v in unsupported.items() if v]
        if bad:
            raise ValueError(f"unsupported VAE config ({', '.join(f'{k}={config[k]}' for k in bad)})")
        defaults = cls()
        shift = config.get("shift_factor")
        return cls(
            in_channels=config.get("in_channels", defaults.in_channels),
            out_channels=config.get("out_channels", defaults.out_channels),
            block_out_channels=config.get("block_out_channels", defaults.block_out_channels),
            layers_per_block=config.get("layers_per_block", defaults.layers_per_block),
            latent_channels=config.get("latent_channels", defaults.latent_channels),
            norm_num_groups=config.get("norm_num_groups", defaults.norm_num_groups),
            scale_factor=config.get("scaling_factor", defaults.scale_factor),
            shift_factor=0.0 if shift is None else shift,  # SD-style VAEs have no shift
            mid_attention=config.get("mid_block_add_attention", True),
        )

    @classmethod
    def from_weights(cls, weights: Mapping[str, mx.array], **overrides) -> "AutoEncoderConfig":
        """Infer the shape from sanitized weights (BFL `ae.safetensors` carries no config)."""
        levels = {int(k.split(".")[2]) for k in weights if k.startswith("decoder.up.")}
        if not levels:
            raise WeightError("not an autoencoder checkpoint: it has no decoder.up.* tensors")
        blocks = {k.split(".")[4] for k in weights if k.startswith("decoder.up.0.block.")}
        try:
            found = dict(
                in_channels=weights["encoder.conv_in.weight"].shape[-1],
                out_channels=weights["decoder.conv_out.weight"].shape[0],
                block_out_channels=[weights[f"decoder.up.{i}.block.0.conv1.weight"].shape[0]
                                    for i in range(max(levels) + 1)],
                layers_per_block=len(blocks) - 1,
                latent_channels=weights["decoder.conv_in.weight"].shape[-1],
                mid_attention="decoder.mid.attn_1.q.weight" in weights,
            )
        except KeyError as e:
            raise WeightError(f"autoencoder checkpoint: cannot infer its shape without tensor {e}") from e
        return cls(**{**found, **overrides})


# --- weights --------------------------------------------------------------------------------

# diffusers attention names (and the older query/key/value/proj_attn ones) -> BFL's.
_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
         "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}


def sanitize(weights: Mapping[str, mx.array]) -> dict[str, mx.array]:
    """Map a diffusers `vae/` or a BFL `ae.safetensors` state dict onto this module's names.

    The one place that knows checkpoint key names. BFL keys are already ours; diffusers keys
    are renamed and its up blocks re-indexed (diffusers counts up_blocks in execution order,
    BFL by resolution: `up_blocks.0` is `up.3`). Conv kernels go from PyTorch's [O,I,kh,kw]
    to MLX's [O,kh,kw,I]; BFL's 1x1-conv attention projections become Linear [O,I].
    """
    ups = [int(k.split(".")[2]) for k in weights if k.startswith("decoder.up_blocks.")]
    last_up = max(ups, default=0)
    out: dict[str, mx.array] = {}
    for key, value in weights.items():
        name = _rename(key, last_up)
        if value.ndim == 4:
            if ".attn_1." in name:
                value = value.reshape(value.shape[0], -1)
            else:
                value = value.transpose(0, 2, 3, 1)
        out[name] = value
    return out


def _rename(key: str, last_up: int) -> str:
    key = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
    key = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
    key = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.",
                 lambda m: f"decoder.up.{last_up - int(m[1])}.block.", key)
    key = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                 lambda m: f"decoder.up.{last_up - int(m[1])}.upsample.", key)
    key = re.sub(r"\.mid_block\.resnets\.([01])\.", lambda m: f".mid.block_{int(m[1]) + 1}.", key)
    key = re.sub(r"\.mid_block\.attentions\.0\.(\w+(?:\.0)?)\.",
                 lambda m: f".mid.attn_1.{_ATTN.get(m[1], m[1])}.", key)
    key = key.replace(".conv_shortcut.", ".nin_shortcut.")
    key = key.replace(".conv_norm_out.", ".norm_out.")
    return key


# --- banded building blocks -----------------------------------------------------------------

def _band_rows(bytes_per_row: int, rows: int) -> int:
    budget = _BAND_BYTES * (8 if mx.default_device() == mx.gpu else 1)
    return max(1, min(rows, budget // max(1, bytes_per_row)))


class GroupNorm(nn.Module):
    """GroupNorm with PyTorch's grouping (contiguous channels), statistics in float32.

    The statistics are split from their application so that (a) a convolution can
    normalise its input band by band and (b) tiled decoding can impose statistics
    gathered over the whole image on every tile.
    """

    def __init__(self, groups: int, dims: int, eps: float = 1e-6):
        super().__init__()
        self.groups = groups
        self.eps = eps
        self.weight = mx.ones((dims,))
        self.bias = mx.zeros((dims,))

    def stats(self, x: mx.array) -> tuple[mx.array, mx.array]:
        """Per-sample, per-group mean and variance [B, G], float32, gathered band by band.

        Bands are merged with Chan's formula, so no float32 copy of `x` is ever whole.
        """
        B, H, W, C = x.shape
        rows = _band_rows(W * C * 4 * 2, H)
        total = None
        for r in range(0, H, rows):
            band = x[:, r : r + rows].astype(mx.float32).reshape(B, -1, self.groups, C // self.groups)
            n = band.shape[1] * band.shape[3]
            part = (n, band.mean(axis=(1, 3)), band.var(axis=(1, 3)) * n)
            if total is not None:
                total = _merge(total, part)
                mx.eval(total[1:])
            else:
                total = part
        n, mean, m2 = total
        return mean, m2 / n

    def activation(
        self, x: mx.array, stats: "Stats | None" = None, swish: bool = True
    ) -> Callable[[mx.array], mx.array]:
        """The elementwise map band -> swish(groupnorm(band)), with the statistics of all of `x`.

        Applied in float32 and cast back, one band at a time.
        """
        mean, var = stats(self, x) if stats is not None else self.stats(x)
        B, G = mean.shape
        per_channel = lambda t: mx.repeat(t, x.shape[-1] // G, axis=1).reshape(B, 1, 1, -1)
        mean = per_channel(mean)
        scale = per_channel(mx.rsqrt(var + self.eps)) * self.weight.astype(mx.float32)
        bias, dtype = self.bias.astype(mx.float32), x.dtype

        def apply(band: mx.array) -> mx.array:
            h = (band.astype(mx.float32) - mean) * scale + bias
            return (nn.silu(h) if swish else h).astype(dtype)

        return apply

    def __call__(self, x: mx.array) -> mx.array:
        return self.activation(x, swish=False)(x)


def _merge(a: tuple, b: tuple) -> tuple:
    """Chan's parallel merge of (count, mean, sum of squared deviations) of two samples."""
    (na, ma, m2a), (nb, mb, m2b) = a, b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), m2a + m2b + delta * delta * (na * nb / n)


# A source of group-norm statistics: (norm, x) -> (mean, var). None means "from x itself".
Stats = Callable[[GroupNorm, mx.array], "tuple[mx.array, mx.array]"]


def _conv(
    conv: nn.Conv2d,
    x: mx.array,
    pre: Callable[[mx.array], mx.array] | None = None,
    *,
    pad: tuple[int, int, int, int] = (1, 1, 1, 1),
    upsample: bool = False,
    residual: Callable[[int, int], mx.array] | None = None,
) -> mx.array:
    """conv(zero_pad(pre(upsample2x(x)))) + residual, computed a band of output rows at a time.

    `pad` is (top, bottom, left, right); `residual(r0, r1)` gives output rows r0:r1 of a
    tensor to add. Only one band's unfolded input and float32 temporaries exist at once.
    """
    B, H, W, C = x.shape
    O, k, _, _ = conv.weight.shape
    s = conv.stride[0]
    top, bottom, left, right = pad
    f = 2 if upsample else 1
    Hin, Win = H * f, W * f
    Hout, Wout = (Hin + top + bottom - k) // s + 1, (Win + left + right - k) // s + 1
    rows = _band_rows(B * (Wout * k * k * C * x.dtype.size + s * Win * C * 4), Hout)

    def band(o0: int, o1: int) -> mx.array:
        i0, i1 = o0 * s - top, (o1 - 1) * s - top + k  # input rows needed, in padded coordinates
        a, b = max(i0, 0), min(i1, Hin)
        h = x[:, a // f : -(-b // f)]
        if pre is not None:  # elementwise: on the CPU its row slices run on separate streams
            h = concat_fan_out(pre, [h], axis=1, out_axis=1)
        if upsample:  # nearest neighbour; the first source row may contribute only its second copy
            h = mx.repeat(mx.repeat(h, 2, axis=1), 2, axis=2)[:, a % 2 : a % 2 + b - a]
        if a - i0 or i1 - b or left or right:
            h = mx.pad(h, [(0, 0), (a - i0, i1 - b), (left, right), (0, 0)])
        y = mx.conv2d(h, conv.weight, stride=s) + conv.bias
        return y + residual(o0, o1) if residual is not None else y

    if rows >= Hout:
        return band(0, Hout)
    out = mx.zeros((B, Hout, Wout, O), dtype=conv.weight.dtype)
    for o0 in range(0, Hout, rows):
        o1 = min(o0 + rows, Hout)
        out[:, o0:o1] = band(o0, o1)
        mx.eval(out)  # in place: `out` is the only reference to its buffer
    return out


class ResnetBlock(nn.Module):
    """GN -> swish -> conv3x3 -> GN -> swish -> conv3x3, plus the (1x1-projected) input."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def skip(self, x: mx.array) -> Callable[[int, int], mx.array]:
        if "nin_shortcut" not in self:
            return lambda r0, r1: x[:, r0:r1]
        w, b = self.nin_shortcut.weight, self.nin_shortcut.bias
        return lambda r0, r1: mx.conv2d(x[:, r0:r1], w) + b

    def __call__(self, x: mx.array, stats: Stats | None = None) -> mx.array:
        h = _conv(self.conv1, x, self.norm1.activation(x, stats))
        mx.eval(h)
        return _conv(self.conv2, h, self.norm2.activation(h, stats), residual=self.skip(x))


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W pixels (the mid block; runs at 1/8 scale)."""

    def __init__(self, dims: int, groups: int):
        super().__init__()
        self.norm = GroupNorm(groups, dims)
        self.q = nn.Linear(dims, dims)
        self.k = nn.Linear(dims, dims)
        self.v = nn.Linear(dims, dims)
        self.proj_out = nn.Linear(dims, dims)

    def __call__(self, x: mx.array) -> mx.array:
        B, H, W, C = x.shape
        h = self.norm(x).reshape(B, 1, H * W, C)
        q, k, v = self.q(h), self.k(h), self.v(h)
        # Queries in chunks: the (queries x H*W) score matrix is the only large temporary.
        step = max(1, _SCORES_BYTES // (B * H * W * 4))
        chunks = []
        for i in range(0, H * W, step):
            chunk = mx.fast.scaled_dot_product_attention(q[:, :, i : i + step], k, v, scale=C**-0.5)
            if step < H * W:
                mx.eval(chunk)
            chunks.append(chunk)
        out = mx.concatenate(chunks, axis=2) if len(chunks) > 1 else chunks[0]
        return x + self.proj_out(out).reshape(B, H, W, C)


class MidBlock(nn.Module):
    def __init__(self, dims: int, groups: int, attention: bool):
        super().__init__()
        self.block_1 = ResnetBlock(dims, dims, groups)
        if attention:
            self.attn_1 = AttnBlock(dims, groups)
        self.block_2 = ResnetBlock(dims, dims, groups)

    def __call__(self, x: mx.array) -> mx.array:
        x = self.block_1(x)
        if "attn_1" in self:
            x = self.attn_1(x)
            mx.eval(x)
        return self.block_2(x)


class Downsample(nn.Module):
    def __init__(self, dims: int):
        super().__init__()
        self.conv = nn.Conv2d(dims, dims, 3, stride=2)

    def __call__(self, x: mx.array) -> mx.array:
        # Asymmetric zero padding (right and bottom only), as the checkpoint was trained with.
        return _conv(self.conv, x, pad=(0, 1, 0, 1))


class Upsample(nn.Module):
    def __init__(self, dims: int):
        super().__init__()
        self.conv = nn.Conv2d(dims, dims, 3, padding=1)

    def __call__(self, x: mx.array) -> mx.array:
        return _conv(self.conv, x, upsample=True)  # nearest x2 happens band by band


class Level(nn.Module):
    """One resolution of the encoder (`down[i]`) or decoder (`up[i]`): resnets, then resampling."""

    def __init__(self, cin: int, cout: int, blocks: int, groups: int, resample: type | None = None):
        super().__init__()
        self.block = [ResnetBlock(cin if j == 0 else cout, cout, groups) for j in range(blocks)]
        if resample is Downsample:
            self.downsample = Downsample(cout)
        elif resample is Upsample:
            self.upsample = Upsample(cout)

    def steps(self, stats: Stats | None = None) -> list[Callable[[mx.array], mx.array]]:
        """The level as a chain of one-tensor steps (see `_chain`): resnets, then resampling."""
        return [partial(block, stats=stats) for block in self.block] + self.resampling()

    def resampling(self) -> list[nn.Module]:
        return [self[name] for name in ("downsample", "upsample") if name in self]


def _chain(x: mx.array, steps: list[Callable[[mx.array], mx.array]]) -> mx.array:
    """Apply `steps` in turn, evaluating each result.

    Flat on purpose: with nested calls (`h = level(h)`) every caller's variable would keep
    its input alive until the whole level returned (a stale 1 GiB at 1024x1024).
    """
    for step in steps:
        x = step(x)
        mx.eval(x)
    return x


# --- encoder and decoder --------------------------------------------------------------------

class Encoder(nn.Module):
    """Image [B,H,W,3] in [-1,1] -> posterior moments [B,H/8,W/8,2*latent] (mean, logvar)."""

    def __init__(self, cfg: AutoEncoderConfig):
        super().__init__()
        ch, groups = cfg.block_out_channels, cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down = [
            Level(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block, groups,
                  Downsample if i < cfg.num_levels - 1 else None)
            for i in range(cfg.num_levels)
        ]
        self.mid = MidBlock(ch[-1], groups, cfg.mid_attention)
        self.norm_out = GroupNorm(groups, ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg.latent_channels, 3, padding=1)

    def __call__(self, x: mx.array) -> mx.array:
        steps = [lambda x: _conv(self.conv_in, x)]
        for level in self.down:
            steps += level.steps()
        steps += [self.mid, lambda h: _conv(self.conv_out, h, self.norm_out.activation(h))]
        return _chain(x, steps)


class Decoder(nn.Module):
    """Latent [B,h,w,latent] (unscaled) -> image [B,8h,8w,3] in [-1,1].

    Split in two stages for tiling: `latent_stage` runs everything at latent resolution
    (conv_in, the mid block with its global attention, the first level's resnets);
    `image_stage` runs the upsampling levels, which are local (no attention).
    """

    def __init__(self, cfg: AutoEncoderConfig):
        super().__init__()
        ch, groups = cfg.block_out_channels, cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[-1], 3, padding=1)
        self.mid = MidBlock(ch[-1], groups, cfg.mid_attention)
        # up[i] works at resolution i (0 = full image); it runs from the top level down.
        self.up = [
            Level(ch[min(i + 1, cfg.num_levels - 1)], ch[i], cfg.layers_per_block + 1, groups,
                  Upsample if i > 0 else None)
            for i in range(cfg.num_levels)
        ]
        self.norm_out = GroupNorm(groups, ch[0])
        self.conv_out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1)

    def latent_stage(self, z: mx.array) -> mx.array:
        return _chain(z, [lambda z: _conv(self.conv_in, z), self.mid, *self.up[-1].block])

    def image_stage(self, h: mx.array, stats: Stats | None = None) -> mx.array:
        steps = self.up[-1].resampling()
        for level in reversed(self.up[:-1]):
            steps += level.steps(stats)
        steps.append(lambda h: _conv(self.conv_out, h, self.norm_out.activation(h, stats)))
        return _chain(h, steps)

    def __call__(self, z: mx.array) -> mx.array:
        return self.image_stage(self.latent_stage(z))

    def receptive_radius(self) -> int:
        """How far (in latent pixels) `image_stage` looks beyond an output pixel."""
        radius, scale = 0.0, 1
        for level in reversed(self.up[:-1]):
            scale *= 2
            radius += (1 + 2 * len(level.block)) / scale  # upsample conv + two convs per resnet
        return math.ceil(radius + 1 / scale)  # + conv_out


# --- the autoencoder ------------------------------------------------------------------------

class AutoEncoder(nn.Module):
    """The VAE as the pipeline uses it: latents in the transformer's (scaled, shifted) space."""

    def __init__(self, config: AutoEncoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    @property
    def dtype(self) -> mx.Dtype:
        return self.decoder.conv_in.weight.dtype

    def encode(self, image: mx.array) -> mx.array:
        """Image NHWC in [-1,1] -> scaled posterior mean NHWC (float32), as the transformer sees it."""
        cfg = self.config
        if image.ndim != 4 or image.shape[-1] != cfg.in_channels:
            raise ValueError(f"encode expects NHWC images with {cfg.in_channels} channels, got {image.shape}")
        moments = self.encoder(image.astype(self.dtype))
        mean = moments[..., : cfg.latent_channels].astype(mx.float32)  # BFL: the mean, not a sample
        return cfg.scale_factor * (mean - cfg.shift_factor)

    def decode(self, z: mx.array, tile: int | None = None) -> mx.array:
        """Latent NHWC (as the transformer sees it) -> image NHWC in [-1,1], unclamped.

        tile: None tiles when an untiled decode would need more than 2 GiB (float32
        beyond 1024x1024 pixels, bfloat16 beyond 2 Mpx), 0 never tiles, n > 0 uses tiles
        of n x n latent pixels. Only the upsampling levels are tiled: everything at latent
        resolution, the global attention included, always sees the whole latent, and each
        tile sees its whole receptive field. Group norm makes tiling inexact: statistics
        gathered over all tiles in an extra pass (about 2x the time of the tiled part)
        keep the difference to a few percent of tile-local normalisation's, without seams.
        """
        cfg = self.config
        if z.ndim != 4 or z.shape[-1] != cfg.latent_channels:
            raise ValueError(f"decode expects NHWC latents with {cfg.latent_channels} channels, "
                             f"got {z.shape}")
        z = (z.astype(mx.float32) / cfg.scale_factor + cfg.shift_factor).astype(self.dtype)
        if tile is None:
            tile = _AUTO_TILE if self.decode_bytes(z.shape) > _TILE_ABOVE_BYTES else 0
        h = self.decoder.latent_stage(z)
        if tile <= 0 or tile >= max(z.shape[1], z.shape[2]):
            return self.decoder.image_stage(h)
        return self._decode_tiles(h, tile)

    def decode_bytes(self, shape: tuple[int, ...]) -> int:
        """Rough peak memory of an untiled decode of latents of `shape` (beyond the weights).

        The last level dominates: its upsampled input plus two tensors of its own width,
        all at full image resolution.
        """
        B, h, w, _ = shape
        ch, f = self.config.block_out_channels, self.config.downscale
        widest = ch[1] if len(ch) > 1 else ch[0]
        return B * h * w * f * f * (widest + 2 * ch[0]) * self.dtype.size

    # --- tiling -------------------------------------------------------------------------

    def _decode_tiles(self, h: mx.array, tile: int, stats: Stats | None = None) -> mx.array:
        """Run `image_stage` on overlapping tiles of the latent-stage output and blend them.

        Each tile is extended by the stage's receptive radius plus the blend band, so every
        pixel it contributes sees the same neighbourhood as in an untiled decode. Group norm
        is then the only global operation left: unless `stats` is given, a first pass over
        the tiles gathers every norm's statistics over the whole image, and the second pass
        decodes with those, so that all tiles agree on the normalisation.
        """
        B, H, W, _ = h.shape
        f = self.config.downscale
        tiles, blend = _tiles(H, W, tile, self.decoder.receptive_radius())
        if stats is None:
            book = _StatsBook()
            for t in tiles:
                book.tile = t
                self.decoder.image_stage(h[:, t.rows, t.cols], stats=book.record)
            stats = book.replay
        out = mx.zeros((B, H * f, W * f, self.config.out_channels), dtype=mx.float32)
        for t in tiles:
            y = self.decoder.image_stage(h[:, t.rows, t.cols], stats=stats)
            weight = t.weight(H, W, f, blend)
            region = (slice(None), slice(t.rows.start * f, t.rows.stop * f),
                      slice(t.cols.start * f, t.cols.stop * f))
            out[region] = out[region] + weight * y.astype(mx.float32)
            mx.eval(out)
        return out.astype(self.dtype)


class _Tile(NamedTuple):
    rows: slice  # extent in the latent: the core plus a margin, clipped to the image
    cols: slice
    core: tuple[int, int, int, int]  # core rows and cols, relative to the extent

    def weight(self, H: int, W: int, f: int, blend: float) -> mx.array:
        """Blend weights [1, rows, cols, 1] over the extent, at image resolution."""
        r0, r1, c0, c1 = self.core
        wy = _ramp(self.rows.start, self.rows.stop, self.rows.start + r0, self.rows.start + r1, H, f, blend)
        wx = _ramp(self.cols.start, self.cols.stop, self.cols.start + c0, self.cols.start + c1, W, f, blend)
        return (wy[:, None] * wx[None, :])[None, :, :, None]


def _tiles(H: int, W: int, tile: int, radius: int) -> tuple[list[_Tile], float]:
    """Cover an H x W latent with near-equal cores of at most tile x tile, plus margins."""
    rows, cols = _spans(H, tile), _spans(W, tile)
    # The blend bands on a core's two edges must not overlap (partition of unity).
    blend = min([_BLEND] + [(b - a) / 2 for a, b in rows + cols])
    margin = radius + math.ceil(blend)
    tiles = []
    for r0, r1 in rows:
        for c0, c1 in cols:
            a0, a1 = max(0, r0 - margin), min(H, r1 + margin)
            b0, b1 = max(0, c0 - margin), min(W, c1 + margin)
            tiles.append(_Tile(slice(a0, a1), slice(b0, b1), (r0 - a0, r1 - a0, c0 - b0, c1 - b0)))
    return tiles, blend


def _spans(n: int, tile: int) -> list[tuple[int, int]]:
    """Split [0, n) into near-equal cores of at most `tile`."""
    count = -(-n // tile)
    edges = [round(i * n / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _ramp(e0: int, e1: int, c0: int, c1: int, n: int, f: int, blend: float) -> mx.array:
    """Blend weight along one axis of a tile with extent [e0, e1) and core [c0, c1) (latent units).

    1 inside the core, falling linearly to 0 across a 2*blend band centred on each core
    edge shared with a neighbour. Neighbours' ramps sum to 1 (a partition of unity), so
    where the tiles agree the blend changes nothing.
    """
    u = (mx.arange(e0 * f, e1 * f, dtype=mx.float32) + 0.5) / f  # pixel centres
    w = mx.ones(u.shape)
    if c0 > 0:
        w = mx.minimum(w, mx.clip((u - c0) / (2 * blend) + 0.5, 0.0, 1.0))
    if c1 < n:
        w = mx.minimum(w, mx.clip((c1 - u) / (2 * blend) + 0.5, 0.0, 1.0))
    return w


class _StatsBook:
    """Group-norm statistics of the whole image, gathered tile by tile.

    `record` (first pass) normalises each tile with the statistics of its own core and
    merges those into a per-norm total; `replay` (second pass) hands every tile the
    whole-image totals. Not bit-exact, since the first pass feeds local statistics
    forward, but the cores partition the image, so their deviations from the global
    statistics cancel to first order in the totals. (Measured: normalising with the
    whole tile, or with the running total, instead of the core is 2-3x less accurate.)
    """

    def __init__(self):
        self.tile: _Tile | None = None  # the tile being decoded
        self.totals: dict[int, tuple[int, mx.array, mx.array]] = {}  # id(norm) -> (n, mean, m2)

    def record(self, norm: GroupNorm, x: mx.array) -> tuple[mx.array, mx.array]:
        r0, r1, c0, c1 = self.tile.core
        s = x.shape[2] // (self.tile.cols.stop - self.tile.cols.start)  # pixels of x per latent pixel
        mean, var = norm.stats(x[:, r0 * s : r1 * s, c0 * s : c1 * s])
        n = (r1 - r0) * (c1 - c0) * s * s
        part = (n, mean, var * n)
        total = _merge(self.totals[id(norm)], part) if id(norm) in self.totals else part
        mx.eval(total[1:])
        self.totals[id(norm)] = total
        return mean, var

    def replay(self, norm: GroupNorm, x: mx.array) -> tuple[mx.array, mx.array]:
        n, mean, m2 = self.totals[id(norm)]
        return mean, m2 / n

# --- loading --------------------------------------------------------------------------------

def _config_of_file(weights: Mapping[str, mx.array], given: AutoEncoderConfig | None) -> AutoEncoderConfig:
    # BFL's ae.safetensors carries no config: the shape comes from the tensors (names only, unread)
    return given if given is not None else AutoEncoderConfig.from_weights(sanitize(weights))


def _layout(c: AutoEncoderConfig):
    """What the config promises of the (sanitized) tensors: `loader.check_layout`."""
    ch = c.block_out_channels
    return ({"encoder.down": c.num_levels, "decoder.up": c.num_levels,
             "encoder.down.0.block": c.layers_per_block, "decoder.up.0.block": c.layers_per_block + 1},
            {"encoder.conv_in.bias": (ch[0],), "decoder.conv_in.bias": (ch[-1],),
             "decoder.conv_out.bias": (c.out_channels,), "encoder.conv_out.bias": (2 * c.latent_channels,),
             "decoder.conv_in.weight": (ch[-1], 3, 3, c.latent_channels)})


SPEC = ComponentSpec(
    name="VAE",
    build=AutoEncoder,
    sanitize=sanitize,
    config_from_dict=AutoEncoderConfig.from_dict,
    config_from_weights=_config_of_file,
    config_error="VAE config in {where}: {error}",
    single_file="ae.safetensors",
    float16_as=mx.bfloat16,  # the FLUX VAE overflows in float16 (NaN, black images)
    layout=_layout,
)


def load_autoencoder(path: str | Path, dtype: mx.Dtype | str | None = None) -> AutoEncoder:
    """Load the VAE from a diffusers `vae/` folder or a BFL `ae.safetensors` file.

    The shape comes from config.json, or for the single file from the tensor shapes.
    dtype None picks `weights.default_dtype()` (bfloat16 on a GPU, float32 on the CPU).
    float16 gives bfloat16: the FLUX VAE overflows in float16 (NaN, black images), and a
    pipeline running its transformer in float16 should still get an image.
    """
    return load_component(SPEC, path, dtype)
