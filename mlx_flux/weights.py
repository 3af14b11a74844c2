"""Reading safetensors checkpoints lazily and loading them into MLX modules.

Every model loader goes through here, so the user sees the same clear one-line
message for a missing file, a truncated download or a checkpoint whose tensors do not
fit the model, whatever component it is.
"""

from __future__ import annotations

from math import prod
from pathlib import Path
from typing import Iterable, Mapping

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from .errors import FluxError
from .safetensors_header import DTYPE_SIZES, HeaderError, read_raw_header
from .schema import Field, check, read_json


class WeightError(FluxError, ValueError):
    """A checkpoint is missing, corrupt or does not match the model (user-facing)."""




_INDEX = {"weight_map": Field(dict)}


def read_header(path: Path) -> dict[str, dict]:
    """Return the tensor table of a safetensors file (name -> {dtype, shape, data_offsets}).

    Checks that the file is complete: a download cut short is the commonest corruption,
    and `mx.load` would only notice it when the tensor is first evaluated.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightError(f"missing weight file: {path}")
    size = path.stat().st_size
    try:
        header, n = read_raw_header(path)
    except HeaderError as e:
        raise WeightError(f"corrupt weight file ({e}): {path}") from None
    header.pop("__metadata__", None)
    end = 0
    for name, info in header.items():
        if not _valid_entry(info):
            raise WeightError(f"corrupt weight file (bad entry {name[:80]!r}): {path}")
        end = max(end, info["data_offsets"][1])
    if 8 + n + end != size:
        raise WeightError(
            f"corrupt or incomplete weight file ({size} bytes, expected {8 + n + end}): {path}"
        )
    return header


def _valid_entry(info: object) -> bool:
    """A tensor entry: a known dtype, a shape of non-negative integers, and offsets that span
    exactly its bytes (so a tensor can neither overlap the next nor read past the file)."""
    if not isinstance(info, dict) or info.get("dtype") not in DTYPE_SIZES:
        return False
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 2**40 for d in shape)):
        return False
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        return False
    start, stop = offsets
    return 0 <= start <= stop and stop - start == prod(shape) * DTYPE_SIZES[info["dtype"]]


def shard_files(folder: Path, stem: str | None = None) -> list[Path]:
    """The safetensors files of one component folder, following an index file if present.

    Handles `model.safetensors`, `diffusion_pytorch_model.safetensors` and their sharded
    `*-0000k-of-0000n.safetensors` forms with `*.safetensors.index.json`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightError(f"missing model folder: {folder}")
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if stem is not None:
        indexes = [p for p in indexes if p.name.startswith(stem)]
    if indexes:
        index = check(read_json(indexes[0], "index file", WeightError), _INDEX, f"index file {indexes[0]}", WeightError)
        weight_map = index["weight_map"]
        bad = [v for v in weight_map.values() if not isinstance(v, str) or Path(v).name != v or not v]
        if bad:
            raise WeightError(f"corrupt index file (its weight_map names {bad[0]!r}, not a file beside it): "
                              f"{indexes[0]}")
        files = sorted({folder / name for name in weight_map.values()})
        for f in files:
            if not f.is_file():
                raise WeightError(f"missing weight file: {f} (listed in {indexes[0].name})")
        return files
    files = sorted(p for p in folder.glob("*.safetensors") if stem is None or p.name.startswith(stem))
    if not files:
        raise WeightError(f"no .safetensors weights in {folder}")
    return files


def load_safetensors(paths: Iterable[Path] | Path) -> dict[str, mx.array]:
    """Lazily map the tensors of one or more safetensors files (nothing is read yet)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    weights: dict[str, mx.array] = {}
    for path in paths:
        read_header(path)
        try:
            weights.update(mx.load(str(path)))
        except Exception as e:  # mlx raises RuntimeError/ValueError with C++ text
            raise WeightError(f"corrupt weight file ({e}): {path}") from e
    return weights


def load_config(folder: Path, name: str = "config.json") -> dict:
    """The parsed `folder/name` (a WeightError names a missing or corrupt file)."""
    path = Path(folder) / name
    if not path.is_file():
        raise WeightError(f"missing {name} in {folder}")
    return read_json(path, name, WeightError)


def apply_weights(
    model: nn.Module,
    weights: Mapping[str, mx.array],
    component: str,
    dtype: mx.Dtype | None = None,
    keep_float32: Iterable[str] = (),
) -> None:
    """Put `weights` into `model`, strictly, cast once to `dtype`.

    Every missing, unexpected or misshapen tensor is named in the error, so a wrong or
    partial checkpoint is caught at load time instead of producing a wrong image.
    Parameters whose name contains one of `keep_float32` stay in float32. A tensor must be
    of the kind (floating-point or integer) its parameter is: the packed weights of a
    quantized layer are integers, every other parameter floats.
    """
    expected = dict(tree_flatten(model.parameters()))
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected {_names(unexpected)}")
        raise WeightError(f"{component} checkpoint does not match the model: " + "; ".join(parts))
    loaded = []
    for name, value in weights.items():
        want = expected[name]
        if tuple(value.shape) != tuple(want.shape):
            raise WeightError(
                f"{component} checkpoint: tensor {name} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(want.shape)}"
            )
        if _is_float(value.dtype) != _is_float(want.dtype):
            # a header edited from F32 to I32 would load its bytes as integers: another model
            raise WeightError(
                f"{component} checkpoint: tensor {name} is stored as {_dtype_name(value.dtype)}, "
                f"the model expects {'floating-point' if _is_float(want.dtype) else 'integer'} values"
            )
        target = dtype if dtype is not None else want.dtype
        if any(k in name for k in keep_float32) or not mx.issubdtype(value.dtype, mx.floating):
            target = mx.float32 if mx.issubdtype(value.dtype, mx.floating) else value.dtype
        loaded.append((name, value.astype(target) if value.dtype != target else value))
    model.update(tree_unflatten(loaded))


def _is_float(dtype: mx.Dtype) -> bool:
    return mx.issubdtype(dtype, mx.floating)


def _dtype_name(dtype: mx.Dtype) -> str:
    return str(dtype).removeprefix("mlx.core.")


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def parse_dtype(name: str | mx.Dtype | None) -> mx.Dtype | None:
    if name is None or isinstance(name, mx.Dtype):
        return name
    table = {"float32": mx.float32, "fp32": mx.float32, "bfloat16": mx.bfloat16, "bf16": mx.bfloat16,
             "float16": mx.float16, "fp16": mx.float16}
    if name not in table:
        raise ValueError(f"unknown dtype {name!r}: use float32 or bfloat16")
    return table[name]


def default_dtype() -> mx.Dtype:
    """bfloat16 where a GPU runs MLX (Metal or CUDA); float32 on the CPU, its fast dtype."""
    return mx.bfloat16 if mx.default_device() == mx.gpu else mx.float32
