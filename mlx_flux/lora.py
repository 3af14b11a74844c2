"""LoRA adapters on a loaded model, as low-rank side paths that switch without touching the weights.

Every Linear a set of LoRAs covers is wrapped in a `LoraLinear`:

    y = base(x) + (x @ down.T) @ up.T

where `down` stacks the A matrices of every update on that layer and `up` the matching B
matrices, each scaled by scale_i * alpha_i / rank_i and placed at the rows it updates (a
piece of a fused qkv or linear1), so W' = W + sum_i scale_i * (alpha_i / rank_i) * B_i A_i
is computed as two thin matmuls, whatever the number of LoRAs. The base layer (float or
quantized) is never changed: `remove_loras` unwraps it and gives the base model exactly, and
switching LoRAs costs building the small stacked matrices, not reloading or re-quantizing
anything. Why side paths and not merged weights is measured in BENCHMARKS.md (LoRA section).

The file formats (which keys map to which of our layers) are `lora_formats`'s business.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import mlx.core as mx
import mlx.nn as nn

from .lora_formats import LoraError, LoraFile, LoraUpdate
from .request import InputError


class LoraLinear(nn.Module):
    """A Linear (or QuantizedLinear) plus a stacked low-rank side path."""

    def __init__(self, base: nn.Module, down: mx.array, up: mx.array):
        super().__init__()
        self.base = base
        self.down = down  # [R, in]: every update's A, stacked
        self.up = up      # [out, R]: every update's B, scaled and placed at its rows

    # The wrapped layer's parameters stay readable where code looks at them (dtype probes).
    @property
    def weight(self) -> mx.array:
        return self.base.weight

    @property
    def bias(self) -> mx.array:
        return self.base.bias

    def __call__(self, x: mx.array) -> mx.array:
        return self.base(x) + (x @ self.down.T) @ self.up.T


@dataclass(frozen=True)
class ActiveLora:
    """One LoRA file applied at a scale."""

    file: LoraFile
    scale: float


def apply_loras(model: nn.Module, loras: Sequence[ActiveLora], component: str,
                blocks: dict[str, int] | None = None) -> int:
    """Wrap every Linear of `model` that `loras` update for `component`; returns how many.

    Replaces whatever LoRAs were applied before (the model is unwrapped first), so
    `apply_loras(model, [], ...)` leaves the base model. `blocks` maps a block list name
    ("double_blocks", "single_blocks") to the index of the model's first block, for a model
    that holds a slice of the blocks (`--split-model`): updates of other blocks are skipped.
    Raises LoraError (one line, naming the file) for an update that does not fit its layer.
    """
    remove_loras(model)
    grouped: dict[str, list[tuple[LoraUpdate, float, LoraFile]]] = defaultdict(list)
    for active in loras:
        for update in active.file.updates:
            if update.component != component:
                continue
            target = _local_target(update.target, model, blocks)
            if target is not None:
                grouped[target].append((update, active.scale, active.file))
    modules = dict(model.named_modules())
    for target, updates in grouped.items():
        layer = modules.get(target)
        if not isinstance(layer, (nn.Linear, nn.QuantizedLinear)):
            file = updates[0][2]
            raise LoraError(f"{file.path.name}: {file.format} LoRA updates {target}, which this model "
                            f"does not have as a linear layer")
        _set(model, target, LoraLinear(layer, *_stack(layer, updates, _dtype(layer))))
    return len(grouped)


def remove_loras(model: nn.Module) -> None:
    """Put every wrapped layer's base layer back (the base model, exactly)."""
    for path, module in list(model.named_modules()):
        if isinstance(module, LoraLinear):
            _set(model, path, module.base)


def lora_scale(value: float) -> float:
    """A scale as given by a caller, checked: any finite number (negative ones too)."""
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise InputError(f"a LoRA scale must be a number, not {value!r}") from None
    if not math.isfinite(scale):
        raise InputError(f"a LoRA scale must be a finite number, not {value!r}")
    return scale


def text_encoder_part(loras: Sequence[ActiveLora]) -> list[tuple[str, float]]:
    """What of a LoRA set changes the text encoder (and so the prompt embeddings)."""
    return [(str(a.file.path), a.scale) for a in loras if any(u.component == "text_encoder" for u in a.file.updates)]


def lora_target(transformer) -> tuple[nn.Module, dict[str, int] | None]:
    """The Flux module LoRAs go on, and its first block indices when it holds a slice
    (`--split-model`'s rank 0 stands in for the whole model and holds the first blocks)."""
    model = getattr(transformer, "model", transformer)
    if model is transformer:
        return model, None
    return model, {"double_blocks": 0, "single_blocks": 0}


def active_layers(model: nn.Module) -> list[str]:
    """Paths of the layers that carry a LoRA side path."""
    return [path for path, m in model.named_modules() if isinstance(m, LoraLinear)]


def _stack(layer: nn.Module, updates: Iterable[tuple[LoraUpdate, float, LoraFile]],
           dtype: mx.Dtype) -> tuple[mx.array, mx.array]:
    out_features, in_features = _shape(layer)
    downs, ups = [], []
    for update, scale, file in updates:
        rank, d_in = update.down.shape
        down = update.down.astype(mx.float32)
        if d_in < in_features and _zero_pad_ok(update, in_features):
            # A 64-channel x_embedder update on a Fill base (384 inputs): the extra inputs
            # (masked image, mask) get no update, as diffusers pads it.
            down = mx.pad(down, [(0, 0), (0, in_features - d_in)])
        elif d_in != in_features:
            raise LoraError(f"{file.path.name}: {file.format} LoRA for {update.target} takes {d_in} inputs, "
                            f"the model's layer {in_features}: a LoRA for another model")
        stop = update.row_offset + update.up.shape[0]
        if stop > out_features:
            raise LoraError(f"{file.path.name}: {file.format} LoRA for {update.target} updates rows up to {stop}, "
                            f"the model's layer has {out_features}: a LoRA for another model")
        up = mx.zeros((out_features, rank), mx.float32)
        up[update.row_offset : stop] = (scale * update.alpha / rank) * update.up.astype(mx.float32)
        downs.append(down)
        ups.append(up)
    down, up = mx.concatenate(downs, axis=0).astype(dtype), mx.concatenate(ups, axis=1).astype(dtype)
    mx.eval(down, up)
    return down, up


def _zero_pad_ok(update: LoraUpdate, in_features: int) -> bool:
    return update.component == "transformer" and update.target == "img_in"


def _shape(layer: nn.Module) -> tuple[int, int]:
    """(out, in) features of a Linear or a QuantizedLinear (whose weight is packed)."""
    if isinstance(layer, nn.QuantizedLinear):
        return layer.weight.shape[0], layer.weight.shape[1] * 32 // layer.bits
    return tuple(layer.weight.shape)


def _dtype(layer: nn.Module) -> mx.Dtype:
    # A quantized layer's scales (and bias) are in the model's float dtype; its weight is packed.
    return layer.scales.dtype if isinstance(layer, nn.QuantizedLinear) else layer.weight.dtype


def _local_target(target: str, model: nn.Module, blocks: dict[str, int] | None) -> str | None:
    """`target` in the numbering of a model that may hold only a slice of the blocks."""
    if blocks is None:
        return target
    head, sep, rest = target.partition(".")
    if head not in blocks:
        return target
    index, _, tail = rest.partition(".")
    local = int(index) - blocks[head]
    if not 0 <= local < len(getattr(model, head)):
        return None
    return f"{head}.{local}.{tail}"


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted `path` (list indices included)."""
    *parents, last = path.split(".")
    owner = model
    for part in parents:
        owner = owner[int(part)] if isinstance(owner, list) else getattr(owner, part)
    if isinstance(owner, list):
        owner[int(last)] = module
    else:
        setattr(owner, last, module)


def merge_adapter(loras: Sequence[ActiveLora], component: str):
    """A loader adapter (`loader.Adapter`) that adds `loras`' updates into the weights themselves.

    For baking LoRAs into a model that is then quantized (`mlx-flux quantize --lora`): there a
    side path would have to stay in full precision beside every quantized layer. The sum is
    taken in float32 and cast back to the weight's dtype.
    """

    def adapt(model: nn.Module, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        weights = dict(weights)
        for active in loras:
            for update in active.file.updates:
                if update.component != component:
                    continue
                key = f"{update.target}.weight"
                if key not in weights:
                    raise LoraError(f"{active.file.path.name}: {active.file.format} LoRA updates {update.target}, "
                                    "which this model does not have")
                w = weights[key]
                delta = update.delta(active.scale)
                if delta.shape[1] < w.shape[1] and _zero_pad_ok(update, w.shape[1]):
                    delta = mx.pad(delta, [(0, 0), (0, w.shape[1] - delta.shape[1])])
                stop = update.row_offset + delta.shape[0]
                if delta.shape[1] != w.shape[1] or stop > w.shape[0]:
                    raise LoraError(f"{active.file.path.name}: {active.file.format} LoRA for {update.target} has "
                                    f"shape {tuple(delta.shape)}, the model's layer {tuple(w.shape)}")
                merged = w.astype(mx.float32)
                merged[update.row_offset : stop] = merged[update.row_offset : stop] + delta
                weights[key] = merged.astype(w.dtype)
        return weights

    return adapt
