"""Affine weight quantization of the big matrices (transformer and T5), via MLX.

Which layers: every Linear inside the transformer blocks (attention, MLP and the adaLN
modulations, ~99% of the weights), the T5 text projection `txt_in`, and every Linear of
T5's blocks. Kept in full precision: norms, embeddings (T5's token table and relative
position bias), biases, and the small projections at the ends of the transformer
(`img_in`, the timestep / pooled-text / guidance embedders and the final layer): they are
a tiny part of the memory and the part where quantization error hurts most, since their
error reaches every block or lands directly in the predicted velocity.

Group size: 64 (MLX's default, what FLUX's dims all divide) where the input width allows,
else 32; a layer whose input width fits neither stays in full precision. The choice per
layer is returned so a quantized folder can record exactly what was done (see
`quantized_io`), and reloading never has to re-derive it.
"""

from __future__ import annotations

import re
from typing import Mapping

import mlx.core as mx
import mlx.nn as nn

BITS = (4, 8)
GROUP_SIZES = (64, 32)
MODE = "affine"

# Transformer modules (by full path) that stay in full precision, see the module docstring.
_KEEP = re.compile(r"^(img_in|time_in|vector_in|guidance_in|final_layer)(\.|$)")

# path -> (bits, group_size): the record of what was quantized, as stored in a manifest
QuantPlan = dict[str, tuple[int, int]]


def group_size_for(in_features: int) -> int | None:
    for g in GROUP_SIZES:
        if in_features % g == 0:
            return g
    return None


def choose(path: str, module: nn.Module, bits: int) -> tuple[int, int] | None:
    """(bits, group size) for the Linear at `path`, or None to keep it in full precision."""
    if not isinstance(module, nn.Linear) or _KEEP.match(path):
        return None
    g = group_size_for(module.weight.shape[1])
    return (bits, g) if g else None


def check_bits(bits: int) -> int:
    if bits not in BITS:
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    return bits


def quantize_module(model: nn.Module, bits: int, prefix: str = "", evaluate: bool = True) -> QuantPlan:
    """Quantize the chosen Linear layers of `model` in place; return what was done.

    `prefix` is `model`'s own path inside the whole model, so that `choose` and the
    returned plan see full paths when a loader quantizes one block at a time. Lazy
    weights stay lazy until `evaluate`: a loader can then quantize a block straight from
    the file's tensors, holding the float copy of that one block only.
    """
    check_bits(bits)
    plan: QuantPlan = {}

    def predicate(path: str, module: nn.Module):
        full = f"{prefix}.{path}" if prefix else path
        spec = choose(full, module, bits)
        if spec is None:
            return False
        plan[full] = spec
        return {"bits": spec[0], "group_size": spec[1], "mode": MODE}

    nn.quantize(model, class_predicate=predicate)
    if evaluate:
        mx.eval(model.parameters())
    return plan


def apply_plan(model: nn.Module, plan: Mapping[str, tuple[int, int]]) -> None:
    """Give `model` the quantized structure `plan` describes, without computing anything.

    Used before loading already-quantized weights: the Linear layers named in the plan
    become QuantizedLinear layers whose (lazy, never evaluated) placeholder parameters
    the loaded tensors then replace. Raises ValueError when a path is not a Linear.
    """
    found: set[str] = set()

    def predicate(path: str, module: nn.Module):
        if path not in plan:
            return False
        if not isinstance(module, nn.Linear):
            raise ValueError(f"{path} is not a linear layer")
        found.add(path)
        bits, group_size = plan[path]
        return {"bits": int(bits), "group_size": int(group_size), "mode": MODE}

    nn.quantize(model, class_predicate=predicate)
    missing = sorted(set(plan) - found)
    if missing:
        raise ValueError(f"no linear layer {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The repeated blocks of a transformer or T5 encoder, with their paths, in order.

    Loaders evaluate (and quantize) these one at a time to bound the peak memory.
    """
    named = []
    for attr in ("double_blocks", "single_blocks"):
        for i, b in enumerate(getattr(model, attr, [])):
            named.append((f"{attr}.{i}", b))
    encoder = getattr(model, "encoder", None)
    for i, b in enumerate(getattr(encoder, "block", []) if encoder is not None else []):
        named.append((f"encoder.block.{i}", b))
    return named


def quantize_blockwise(model: nn.Module, bits: int) -> QuantPlan:
    """Quantize a model whose weights are still lazy (mapped from a file), block by block.

    Each block is quantized and evaluated before the next is read, so the float weights
    are only ever held for one block at a time; then the rest of the model.
    """
    plan: QuantPlan = {}
    for path, block in blocks(model):
        plan.update(quantize_module(block, bits, prefix=path))
    plan.update(quantize_module(model, bits))  # what is left outside the blocks
    return plan


def plan_of(model: nn.Module) -> QuantPlan:
    """What is quantized in `model`: path -> (bits, group size) of each QuantizedLinear."""
    return {path: (m.bits, m.group_size) for path, m in model.named_modules()
            if isinstance(m, nn.QuantizedLinear)}
