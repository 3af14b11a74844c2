"""One staged loader for every component (transformer, VAE, CLIP, T5), as mlx-lm's `load_model`:

    find files -> read config -> build model (its layout checked first) -> sanitize -> adapters
        -> quantize (stored plan) -> strict apply (cast once) -> quantize (on load) -> evaluate

The same pipeline loads a float checkpoint (a diffusers/transformers folder or a single
file), quantizes one block by block as it is read, and loads our quantized folders
(`mlx-flux quantize`): there the stored plan gives the model its quantized structure
before the stored integers and scales are put in, so full precision is never computed.
What differs between components is described once, in each model module's
`ComponentSpec`; checkpoint key names stay in that module's `sanitize`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import mlx.core as mx
import mlx.nn as nn

from .errors import FluxError
from .quantize import QuantPlan, apply_plan, quantize_blockwise
from .schema import ConfigError
from .quantized_io import MANIFEST, FormatError, is_quantized_folder, read_manifest
from .weights import WeightError, apply_weights, default_dtype, load_config, load_safetensors, parse_dtype, shard_files

Weights = dict[str, mx.array]
# An adapter (a LoRA, later) sees the built model and the sanitized weights and returns the
# weights to load instead. It runs before the strict apply, so what it returns is checked too.
Adapter = Callable[[nn.Module, Weights], Weights]


def _no_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return []


@dataclass(frozen=True)
class ComponentSpec:
    """What the staged loader needs to know about one component (its model module owns it)."""

    name: str                                                  # in messages: "transformer", "VAE", ...
    build: Callable[[Any], nn.Module]                          # config -> model (lazy init, never evaluated)
    sanitize: Callable[[Mapping[str, mx.array]], Weights]      # checkpoint names -> the model's
    config_from_dict: Callable[[Mapping[str, Any]], Any]       # config.json (or our manifest's copy) -> config
    # The config of a config-less single file, from its (raw, lazy) tensors and the config
    # given with it, if any. None: the component only comes as a folder with config.json.
    config_from_weights: Callable[[Mapping[str, mx.array], Any], Any] | None = None
    label: str = "{name}"                                      # names it in strict-apply errors ({where})
    config_error: str = "invalid {name} config for {where}: {error}"
    subfolder: str | None = None       # its folder in a whole repository, also its part in our manifest
    single_file: str | None = None     # a config-less file a folder may hold instead ("ae.safetensors")
    keep_float32: tuple[str, ...] = ()  # parameter-name pieces kept float32 when loading float16 (overflow)
    float16_as: mx.Dtype | None = None  # the dtype used when float16 is asked and the model overflows in it
    blocks: Callable[[nn.Module], list[tuple[str, nn.Module]]] = _no_blocks  # evaluated one at a time
    # What a config promises of the sanitized tensors, checked before the model is built (a
    # config saying 10**9 layers must not build them): {prefix: how many `prefix.N.` blocks}
    # and {tensor name: shape} (a tensor absent here is left to the strict apply).
    layout: Callable[[Any], tuple[Mapping[str, int], Mapping[str, tuple[int, ...]]]] | None = None


@dataclass(frozen=True)
class Checkpoint:
    """Where one component's tensors and config are (the answer of `find_checkpoint`)."""

    files: tuple[Path, ...]                # safetensors files, all checked to exist
    where: Path                            # the folder or file, named in messages
    folder: bool = True                    # has config.json beside it (else a config-less single file)
    config: Mapping[str, Any] | None = None  # a config in hand (our manifest's copy) instead of config.json
    plan: QuantPlan | None = None          # our quantized folder: path -> (bits, group size) as stored
    manifest: Path | None = None           # that folder's manifest (its problems are FormatErrors)


def load_component(spec: ComponentSpec, source: str | Path | Checkpoint, dtype: str | mx.Dtype | None = None, *,
                   config: Any = None, quantize: int | None = None, adapters: Sequence[Adapter] = (),
                   select: Callable[[nn.Module, Weights], Weights] | None = None) -> nn.Module:
    """Load one component through the staged pipeline and return the evaluated model.

    `source` is a folder, a single file, a whole repository (with `spec.subfolder`), the
    component's folder inside our quantized folder, or an already found `Checkpoint`.
    `dtype` None means the device's best (`weights.default_dtype`). `config` overrides the
    checkpoint's (a config object or a config.json dict). `quantize` 4 or 8 quantizes each
    block as it is read, so the full-precision model never exists. `adapters` transform
    the sanitized weights before the strict apply. `select` keeps part of the model and of
    its weights (model parallel, see `transformer.keep_blocks`). Problems raise
    `WeightError` (or `FormatError` for our quantized folders) with a one-line message.
    """
    dtype = parse_dtype(dtype) or default_dtype()
    if dtype == mx.float16 and spec.float16_as is not None:
        dtype = spec.float16_as

    # 1. find files: every file checked before anything is read; the tensors are mapped lazily
    ckpt = source if isinstance(source, Checkpoint) else find_checkpoint(spec, source)
    if ckpt.plan is not None and quantize:
        raise ValueError(f"{ckpt.where} is already quantized; it cannot be quantized again on load")
    weights = load_safetensors(ckpt.files)
    # 2. read config (a single file's from its tensor shapes: nothing is read)
    config = read_config(spec, ckpt, weights, config)
    # 3. build the model: its random init stays lazy, the strict apply replaces all of it. First the
    #    config is checked against the tensors present: a config that says 10**9 blocks builds none
    check_layout(spec, config, weights, f"{spec.name} checkpoint {ckpt.where}")
    model = spec.build(config)
    # 4. sanitize: the model module's one place for checkpoint key names
    weights = spec.sanitize(weights)
    if select is not None:
        weights = select(model, weights)
    # 5. adapters
    for adapter in adapters:
        weights = adapter(model, weights)
    # 6. quantize, stored: the structure first, so the stored integers and scales load directly
    if ckpt.plan is not None:
        _apply_stored_plan(spec, ckpt, model)
    # 7. strict apply, cast once (packed integers kept as they are)
    keep = spec.keep_float32 if dtype == mx.float16 else ()
    label = spec.label.format(name=spec.name, where=ckpt.where)
    apply_weights(model, weights, f"quantized {spec.name}" if ckpt.plan else label, dtype=dtype, keep_float32=keep)
    del weights
    # 8. quantize on load, from the lazy weights: each block quantized before the next is read
    if quantize:
        quantize_blockwise(model, quantize)
    # 9. evaluate block by block, bounding the peak to one block's tensors beyond the result
    evaluate(spec, model)
    return model


def find_checkpoint(spec: ComponentSpec, path: str | Path) -> Checkpoint:
    """Stage 1: the files of `spec`'s component at `path` (raises WeightError when missing)."""
    path = Path(path)
    if path.is_dir() and not (path / "config.json").is_file():
        if spec.subfolder and (path / spec.subfolder).is_dir():
            path = path / spec.subfolder  # a whole repository folder
        elif spec.single_file and (path / spec.single_file).is_file():
            path = path / spec.single_file
    if path.is_dir():
        stored = _stored_checkpoint(spec, path)
        return stored if stored is not None else Checkpoint(tuple(shard_files(path)), path)
    if spec.config_from_weights is None:
        shard_files(path)  # raises: only a folder with config.json will do
    if not path.is_file():
        raise WeightError(f"missing {spec.name} weights: {path}")
    return Checkpoint((path,), path, folder=False)


def _stored_checkpoint(spec: ComponentSpec, path: Path) -> Checkpoint | None:
    """`path` is `spec`'s part of our quantized folder: its stored file, plan and config."""
    if spec.subfolder is None or not is_quantized_folder(path.parent):
        return None
    root = path.parent
    part = read_manifest(root)["components"].get(spec.subfolder)
    if part is None or (root / part["file"]).parent != path:
        return None  # kept as it was (CLIP, VAE): an ordinary folder
    return Checkpoint((root / part["file"],), path, config=part.get("config"), plan=part["plan"],
                      manifest=root / MANIFEST)


def read_config(spec: ComponentSpec, ckpt: Checkpoint, weights: Mapping[str, mx.array], given: Any = None) -> Any:
    """Stage 2: the component's config object, from `given`, the checkpoint, or its tensors."""
    in_hand = ckpt.config is not None and given is None
    try:
        config = given
        if given is None or isinstance(given, Mapping):
            raw = given if given is not None else ckpt.config
            if raw is None and ckpt.folder:
                raw = load_config(ckpt.where)
            config = None if raw is None else spec.config_from_dict(raw)
        if not ckpt.folder:
            config = spec.config_from_weights(weights, config)
        return config
    except FluxError as e:
        if not isinstance(e, ConfigError):
            raise
        if in_hand and ckpt.manifest is not None:
            raise FormatError(f"invalid {spec.name} config in {ckpt.manifest}: {e}") from None
        raise WeightError(spec.config_error.format(name=spec.name, where=ckpt.where, error=e)) from None
    except (TypeError, ValueError, KeyError) as e:
        if in_hand and ckpt.manifest is not None:
            raise FormatError(f"invalid {spec.name} config in {ckpt.manifest}: {e}") from None
        raise WeightError(spec.config_error.format(name=spec.name, where=ckpt.where, error=e)) from e


def check_layout(spec: ComponentSpec, config: Any, weights: Mapping[str, mx.array], label: str) -> None:
    """The config's block counts and dimensions against the checkpoint's tensors, by their
    sanitized names and header shapes (nothing is read). Packed quantized matrices (with
    `.scales` beside them) are skipped; the strict apply checks every tensor later."""
    if spec.layout is None or config is None:
        return
    weights = spec.sanitize(weights)
    counts, shapes = spec.layout(config)
    for prefix, n in counts.items():
        pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
        found = {int(m.group(1)) for k in weights if (m := pattern.match(k))}
        if found != set(range(n)):
            missing = next((i for i in range(min(n, len(found) + 1)) if i not in found), None)
            odd = f"missing {prefix}.{missing}.*" if missing is not None else \
                f"unexpected {prefix}.{max(found)}.*"
            raise WeightError(f"{label}: its config says {n} {prefix} but the checkpoint holds {len(found)} "
                              f"({odd})")
    for key, shape in shapes.items():
        if key in weights and key.rsplit(".", 1)[0] + ".scales" not in weights:
            if tuple(weights[key].shape) != tuple(shape):
                raise WeightError(f"{label}: tensor {key} has shape {tuple(weights[key].shape)}, "
                                  f"its config says {tuple(shape)}")


def _apply_stored_plan(spec: ComponentSpec, ckpt: Checkpoint, model: nn.Module) -> None:
    # Linear -> QuantizedLinear with lazy placeholders the stored tensors then replace, unevaluated.
    try:
        apply_plan(model, ckpt.plan)
    except ValueError as e:
        folder = ckpt.manifest.parent if ckpt.manifest is not None else ckpt.where
        raise FormatError(f"{spec.name} in {folder} does not fit this mlx-flux's model: {e}") from None


def evaluate(spec: ComponentSpec, model: nn.Module) -> None:
    """Stage 9: read the weights in, one block at a time, then the rest of the model."""
    for _, block in spec.blocks(model):
        mx.eval(block.parameters())
    mx.eval(model.parameters())
