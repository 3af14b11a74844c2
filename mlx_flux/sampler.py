"""Flow-matching Euler sampling: the schedule, the noise, latent packing, the step and the loop.

Follows the BFL reference (`get_schedule`, `get_noise`, `prepare`, `unpack`, `denoise`):
x_t = t * noise + (1 - t) * x0, the model predicts v = noise - x0, and each Euler step
moves x by (t_next - t) * v with t going from 1 (or a partial schedule's start) to 0.

    sampler = FlowMatchEuler.for_model(steps, seq_len, scheduler_config, shift)
    for step, latents, x0 in denoise(model, cond, latents, sampler): ...

A new sampler is anything with `sigmas`, `step` and `x0` (the `Sampler` protocol);
a partial schedule (img2img) is `sampler.start_at(index)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, Sequence

import mlx.core as mx
import numpy as np

from .schema import ConfigError, Field, check

LATENT_CHANNELS = 16  # used only to shape the noise when no VAE config is at hand; pipeline passes its own


def time_shift(mu: float, t: np.ndarray) -> np.ndarray:
    """Shift t towards 1 (more steps at high noise) by exp(mu), keeping the endpoints 1 and 0."""
    with np.errstate(divide="ignore"):
        return np.where(t > 0, math.exp(mu) / (math.exp(mu) + (1.0 / np.maximum(t, 1e-30) - 1.0)), 0.0)


def shift_mu(seq_len: int, x1: float = 256, y1: float = 0.5, x2: float = 4096, y2: float = 1.15) -> float:
    """The reference's line through (256, 0.5) and (4096, 1.15); deliberately not clamped."""
    m = (y2 - y1) / (x2 - x1)
    return m * seq_len + (y1 - m * x1)


def schedule(steps: int, seq_len: int, shift: bool) -> list[float]:
    """The steps+1 noise levels from 1 to 0 (dev shifts by resolution, schnell is linear)."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    t = np.linspace(1.0, 0.0, steps + 1, dtype=np.float64)
    if shift:
        t = time_shift(shift_mu(seq_len), t)
    # Computed in float64 then rounded once, like the reference's float32 list.
    return [float(np.float32(x)) for x in t]


_SCHEDULER = {
    "shift": Field(float, 1e-3, 1e3, required=False),
    "use_dynamic_shifting": Field(bool, required=False),
    "base_image_seq_len": Field(int, 1, 2**24, required=False),
    "max_image_seq_len": Field(int, 1, 2**24, required=False),
    "base_shift": Field(float, -10, 10, required=False),
    "max_shift": Field(float, -10, 10, required=False),
}


def check_scheduler_config(cfg: object, where: str) -> Mapping[str, Any]:
    """A scheduler_config.json's values checked once (types, finite, in range), before any use."""
    cfg = check(cfg, _SCHEDULER, where)  # a null shift is no shift given (float(None) would fail later)
    if cfg.get("use_dynamic_shifting") and cfg.get("base_image_seq_len", 256) == cfg.get("max_image_seq_len", 4096):
        raise ConfigError(f"{where}: base_image_seq_len and max_image_seq_len must differ (the shift is a line "
                          "through both)")
    return cfg


def config_schedule(cfg: dict, steps: int, seq_len: int) -> list[float]:
    """The schedule FlowMatchEulerDiscreteScheduler computes from a repo's scheduler_config.json.

    Matches BFL's `get_schedule` for the official configs; fine-tunes may change the shift.
    """
    sigmas = np.linspace(1.0, 1.0 / steps, steps, dtype=np.float64)
    if cfg.get("use_dynamic_shifting"):
        mu = shift_mu(seq_len, cfg.get("base_image_seq_len", 256), cfg.get("base_shift", 0.5),
                      cfg.get("max_image_seq_len", 4096), cfg.get("max_shift", 1.15))
        sigmas = time_shift(mu, sigmas)
    else:
        s = float(cfg.get("shift", 1.0))
        sigmas = s * sigmas / (1 + (s - 1) * sigmas)
    if not np.isfinite(sigmas).all():
        raise ConfigError(f"the scheduler config gives non-finite noise levels for {steps} steps at {seq_len} tokens")
    return [float(np.float32(x)) for x in sigmas] + [0.0]


class Sampler(Protocol):
    """What `denoise` needs from a sampler: the noise levels, one step, and the clean estimate."""

    sigmas: Sequence[float]  # steps + 1 levels, the first where denoising starts, the last 0

    def step(self, x: mx.array, v: mx.array, i: int) -> mx.array:
        """The latents after step i (0-based) from latents x and predicted velocity v."""
        ...

    def x0(self, x: mx.array, v: mx.array, i: int) -> mx.array:
        """The clean latents the model predicts at step i (what previews show)."""
        ...


@dataclass(frozen=True)
class FlowMatchEuler:
    """The reference's Euler step on the flow-matching schedule."""

    sigmas: tuple[float, ...]

    def __post_init__(self):
        if len(self.sigmas) < 2:
            raise ValueError("a schedule needs at least one step")

    @classmethod
    def for_model(cls, steps: int, seq_len: int, scheduler_config: Mapping[str, Any] | None = None,
                  shift: bool = False) -> FlowMatchEuler:
        """The schedule a model runs: from its repo's scheduler config when it has one (as
        diffusers does), else the reference's (shifted by resolution for dev)."""
        if scheduler_config:
            return cls(tuple(config_schedule(scheduler_config, steps, seq_len)))
        return cls(tuple(schedule(steps, seq_len, shift=shift)))

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def start_at(self, index: int) -> FlowMatchEuler:
        """The same schedule from step `index` on (a partial schedule: img2img's strength)."""
        if not 0 <= index < self.steps:
            raise ValueError(f"start index {index} leaves no step of {self.steps}")
        return FlowMatchEuler(self.sigmas[index:])

    def step(self, x: mx.array, v: mx.array, i: int) -> mx.array:
        return x + (self.sigmas[i + 1] - self.sigmas[i]) * v

    def x0(self, x: mx.array, v: mx.array, i: int) -> mx.array:
        return x - self.sigmas[i] * v


def denoise(model: Any, cond: Any, latents: mx.array, sampler: Sampler,
            compiled: bool = False) -> Iterator[tuple[int, mx.array, mx.array]]:
    """Yield (step, latents, predicted clean latents) after each step, step counting from 1.

    model: anything with `step(img, t, cond)` (and `compiled_step`), `dtype`; cond what its
    `prepare` returned; latents packed [B, N, C] float32. Nothing is evaluated here: the
    caller evaluates, reports and may stop between steps.
    """
    step = model.compiled_step if compiled else model.step
    b = latents.shape[0]
    for i in range(len(sampler.sigmas) - 1):
        t = mx.full((b,), sampler.sigmas[i], dtype=mx.float32)
        v = step(latents.astype(model.dtype), t, cond).astype(mx.float32)
        x0 = sampler.x0(latents, v, i)
        latents = sampler.step(latents, v, i)
        yield i + 1, latents, x0


def noise(seed: int, batch: int, height: int, width: int, channels: int = LATENT_CHANNELS) -> mx.array:
    """Seeded standard normal latents in the unpacked NHWC layout [B, H/8, W/8, C], float32."""
    key = mx.random.key(seed)
    return mx.random.normal((batch, height // 8, width // 8, channels), key=key, dtype=mx.float32)


def pack(latents: mx.array) -> mx.array:
    """[B, 2h, 2w, C] -> [B, h*w, 4C] with feature order (c, ph, pw), row-major tokens."""
    b, hh, ww, c = latents.shape
    h, w = hh // 2, ww // 2
    x = latents.reshape(b, h, 2, w, 2, c).transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(b, h * w, c * 4)


def unpack(tokens: mx.array, height: int, width: int) -> mx.array:
    """Inverse of `pack` for an image of height x width pixels -> [B, H/8, W/8, C]."""
    b, n, d = tokens.shape
    h, w, c = height // 16, width // 16, d // 4
    x = tokens.reshape(b, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * 2, w * 2, c)


def image_ids(height: int, width: int) -> mx.array:
    """Position ids (0, row, col) of the packed image tokens, [N, 3] float32.

    Axis 0 stays 0 in text-to-image: it exists so that other conditioning (e.g. a
    reference image) can be told apart; text ids are all zeros.
    """
    h, w = height // 16, width // 16
    rows = mx.broadcast_to(mx.arange(h)[:, None], (h, w))
    cols = mx.broadcast_to(mx.arange(w)[None, :], (h, w))
    ids = mx.stack([mx.zeros((h, w), dtype=mx.int32), rows, cols], axis=-1)
    return ids.reshape(h * w, 3).astype(mx.float32)


def text_ids(length: int) -> mx.array:
    return mx.zeros((length, 3), dtype=mx.float32)


def nchw_to_nhwc(latents: np.ndarray) -> mx.array:
    return mx.array(np.ascontiguousarray(np.asarray(latents, dtype=np.float32).transpose(0, 2, 3, 1)))


def nhwc_to_nchw(latents: mx.array) -> np.ndarray:
    return np.array(latents.astype(mx.float32)).transpose(0, 3, 1, 2).copy()
