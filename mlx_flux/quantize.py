"""Affine weight quantization of the big matrices (transformer and T5), via MLX.

Norms, embeddings, biases and small projections stay in full precision: they are a tiny
part of the memory and the part where quantization error hurts quality most.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

GROUP_SIZES = (64, 32)


def group_size_for(in_features: int) -> int | None:
    for g in GROUP_SIZES:
        if in_features % g == 0:
            return g
    return None


def should_quantize(path: str, module: nn.Module, min_features: int = 64) -> bool | dict:
    """Only Linear layers whose input size fits a group and is not tiny."""
    if not isinstance(module, nn.Linear):
        return False
    out_features, in_features = module.weight.shape
    if in_features < min_features or out_features < min_features:
        return False
    g = group_size_for(in_features)
    return {"group_size": g} if g else False


def quantize_module(model: nn.Module, bits: int, min_features: int = 64) -> nn.Module:
    """Quantize `model` in place to `bits` (4 or 8) and evaluate it."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, not {bits}")

    def predicate(path: str, module: nn.Module):
        choice = should_quantize(path, module, min_features)
        return {**choice, "bits": bits} if isinstance(choice, dict) else choice

    nn.quantize(model, class_predicate=predicate)
    mx.eval(model.parameters())
    return model
