"""Our quantized model folder: written by `mlx-flux quantize`, loaded by `FluxPipeline.from_pretrained`.

Layout (everything a generation needs, nothing else):

    DIR/mlx-flux.json                  manifest: format, version, bits, group size, what is quantized
    DIR/transformer/model.safetensors  quantized transformer, our (BFL) parameter names
    DIR/text_encoder_2/                quantized T5 (model.safetensors) + its config.json
    DIR/text_encoder/, vae/            copied as they were (CLIP, VAE: small, quality-critical)
    DIR/tokenizer/, tokenizer_2/, scheduler/

The manifest lists every quantized layer with its bits and group size, so loading never
re-derives the choice from code that may have changed since: it gives the model the
quantized structure first and then loads the stored integers and scales directly, so
full precision is never materialised. A manifest from a newer format version, an unknown
format or a missing file is refused with a one-line reason, never loaded half right.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from . import __version__
from .errors import FluxError
from .quantize import MODE, GROUP_SIZES, apply_plan, blocks, check_bits, plan_of, quantize_blockwise
from .weights import apply_weights, default_dtype, load_safetensors, parse_dtype, read_config, shard_files

MANIFEST = "mlx-flux.json"
FORMAT = "mlx-flux-quantized"
FORMAT_VERSION = 1  # bump when a reader of this version could not load the new files correctly
WEIGHTS = "model.safetensors"
QUANTIZED_PARTS = ("transformer", "text_encoder_2")


class FormatError(FluxError, ValueError):
    """A quantized folder this version cannot load (newer format, unknown format, missing files)."""


def is_quantized_folder(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


# --- reading ------------------------------------------------------------------------------------

def read_manifest(folder: Path) -> dict[str, Any]:
    """The checked manifest of `folder`; raises FormatError saying exactly why it cannot be loaded."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError(f"not a quantized mlx-flux folder (no {MANIFEST}): {folder}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"corrupt {MANIFEST} in {folder}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FormatError(f"unknown model format in {path} (expected {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise FormatError(f"unknown format version {version!r} in {path}")
    if version > FORMAT_VERSION:
        writer = manifest.get("mlx_flux_version", "a newer mlx-flux")
        raise FormatError(f"{folder} was written by mlx-flux {writer} in format version {version}; "
                          f"this mlx-flux {__version__} reads up to version {FORMAT_VERSION}: upgrade mlx-flux")
    q = manifest.get("quantization", {})
    if q.get("mode") != MODE:
        raise FormatError(f"unsupported quantization mode {q.get('mode')!r} in {path} (this version reads {MODE!r})")
    components = manifest.get("components")
    if not isinstance(components, dict) or "transformer" not in components:
        raise FormatError(f"{path} lists no quantized transformer")
    for name, comp in components.items():
        try:
            comp["plan"] = _plan(comp)
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"unreadable list of quantized layers for {name} in {path}") from None
        for bits, group_size in set(comp["plan"].values()):
            if bits not in (2, 3, 4, 5, 6, 8) or group_size not in (32, 64, 128):
                raise FormatError(f"unsupported quantization ({bits} bits, group size {group_size}) in {path}")
        weights = folder / comp.get("file", "")
        if not weights.is_file():
            raise FormatError(f"incomplete quantized model {folder}: missing {comp.get('file')}")
    missing = [c for c in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
               if not (folder / c).is_dir()]
    if missing:
        raise FormatError(f"incomplete quantized model {folder}: missing {', '.join(m + '/' for m in missing)}")
    return manifest


def _plan(component: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """The manifest's groups of layers -> path: (bits, group size)."""
    return {path: (int(g["bits"]), int(g["group_size"])) for g in component["quantized"] for path in g["layers"]}


def check_requested_bits(manifest: Mapping[str, Any], folder: Path, requested: int | None) -> int:
    """The folder's bits; a different explicit request is refused rather than silently ignored."""
    bits = int(manifest["quantization"]["bits"])
    if requested is not None and requested != bits:
        raise FormatError(f"{folder} holds a {bits}-bit model; it cannot be loaded as {requested}-bit "
                          "(quantize the original model instead)")
    return bits


def load_quantized(model: nn.Module, folder: Path, component: Mapping[str, Any], dtype: mx.Dtype,
                   name: str) -> nn.Module:
    """Load a stored quantized component into freshly constructed `model`.

    The structure comes first (apply_plan: Linear -> QuantizedLinear, placeholders lazy),
    then the stored tensors replace every parameter; the float placeholders are never
    evaluated, so nothing of full precision is ever computed or held.
    """
    try:
        apply_plan(model, component["plan"])
    except ValueError as e:
        raise FormatError(f"{name} in {folder} does not fit this mlx-flux's model: {e}") from None
    weights = load_safetensors(folder / component["file"])
    apply_weights(model, weights, f"quantized {name}", dtype=dtype)  # floats cast; packed ints kept
    del weights
    for _, block in blocks(model):  # read block by block, as the float loaders do
        mx.eval(block.parameters())
    mx.eval(model.parameters())
    return model


def load_transformer(folder: Path, manifest: Mapping[str, Any], dtype: mx.Dtype | None = None):
    from .transformer import Flux, FluxConfig

    comp = manifest["components"]["transformer"]
    try:
        config = FluxConfig.from_dict(comp["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise FormatError(f"invalid transformer config in {Path(folder) / MANIFEST}: {e}") from None
    return load_quantized(Flux(config), Path(folder), comp, parse_dtype(dtype) or default_dtype(), "transformer")


def load_text_encoder_2(folder: Path, dtype: mx.Dtype | None = None, quantize: int | None = None,
                        manifest: Mapping[str, Any] | None = None):
    """T5 from a float folder (optionally quantized block by block as it is read) or from our folder."""
    from .t5 import T5Config, T5Encoder, load_t5

    folder = Path(folder)
    dtype = parse_dtype(dtype) or default_dtype()
    stored = (manifest or {}).get("components", {}).get("text_encoder_2")
    if stored is None and not quantize:
        return load_t5(folder, dtype=dtype)
    model = T5Encoder(read_config(folder, T5Config.from_dict, "T5"))
    if stored is not None:
        return load_quantized(model, folder.parent, stored, dtype, "T5 text encoder")
    # a float checkpoint quantized on the fly: map lazily, then quantize one block at a time
    weights = model.sanitize(load_safetensors(shard_files(folder)))
    apply_weights(model, weights, f"T5 text encoder ({folder})", dtype=dtype)
    del weights
    quantize_blockwise(model, quantize)
    return model


# --- writing ------------------------------------------------------------------------------------

def quantize_to_folder(model: str | os.PathLike, bits: int, output: Path, base: str | os.PathLike | None = None,
                       dtype: str | mx.Dtype | None = "bfloat16", progress=None) -> Path:
    """Write a quantized copy of `model` (folder, single file + base, or repo id) to `output`.

    Refuses an `output` that exists and is not empty (never overwrite the user's files).
    Work happens in a hidden sibling folder that is renamed into place at the end, so an
    interrupted run leaves no half-written model behind. `dtype` is the precision of the
    scales and of the layers kept unquantized (bfloat16, FLUX's own, by default).
    Returns `output`.
    """
    from .loading import find_files
    from .transformer import load_transformer as load_float_transformer

    try:
        check_bits(bits)
    except ValueError as e:
        raise FormatError(str(e)) from None
    output = Path(output).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FormatError(f"output {output} already exists and is not empty; choose a new folder")
    if not output.parent.is_dir():
        raise FormatError(f"output folder's parent does not exist: {output.parent}")
    dt = parse_dtype(dtype) or default_dtype()
    files = find_files(model, base, progress)
    if files.quantized is not None:
        raise FormatError(f"{model} is already quantized; quantize the original model")

    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        components = {}
        _say(progress, "Quantizing transformer")
        transformer = load_float_transformer(files.transformer, dtype=dt, config=_diffusers_config(files),
                                             quantize=bits)
        components["transformer"] = _save(transformer, tmp, "transformer",
                                           config=_jsonable(dataclasses.asdict(transformer.config)))
        variant = "dev" if transformer.config.guidance_embed else "schnell"
        del transformer
        mx.clear_cache()

        _say(progress, "Quantizing T5")
        t5 = load_text_encoder_2(files.text_encoder_2, dtype=dt, quantize=bits)
        components["text_encoder_2"] = _save(t5, tmp, "text_encoder_2")
        del t5
        mx.clear_cache()
        shutil.copy2(files.text_encoder_2 / "config.json", tmp / "text_encoder_2" / "config.json")

        _say(progress, "Copying CLIP, VAE and tokenizers")
        _copy_weights(files.text_encoder, tmp / "text_encoder")
        if files.vae.is_file():
            (tmp / "vae").mkdir()
            shutil.copy2(files.vae, tmp / "vae" / "ae.safetensors")
        else:
            _copy_weights(files.vae, tmp / "vae")
        shutil.copytree(files.tokenizer, tmp / "tokenizer")
        shutil.copytree(files.tokenizer_2, tmp / "tokenizer_2")
        if files.scheduler is not None:
            (tmp / "scheduler").mkdir()
            (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(files.scheduler, indent=2))

        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "mlx_flux_version": __version__,
            "mlx_version": mx.__version__,
            "source": files.name,
            "variant": variant,
            "dtype": _dtype_name(dt),
            "quantization": {"mode": MODE, "bits": bits, "group_size": GROUP_SIZES[0]},
            "components": components,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")  # last: marks it complete
        if output.exists():
            output.rmdir()  # empty (checked above); rename cannot replace it everywhere
        os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _say(progress, "Done")
    return output


def _save(model: nn.Module, root: Path, name: str, config: dict | None = None) -> dict[str, Any]:
    (root / name).mkdir(exist_ok=True)
    params = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(root / name / WEIGHTS), params, metadata={"format": "mlx"})
    groups: dict[tuple[int, int], list[str]] = {}
    for path, spec in sorted(plan_of(model).items()):
        groups.setdefault(spec, []).append(path)
    entry: dict[str, Any] = {"file": f"{name}/{WEIGHTS}",
                             "quantized": [{"bits": b, "group_size": g, "layers": layers}
                                           for (b, g), layers in sorted(groups.items())]}
    if config is not None:
        entry["config"] = config
    return entry


def _copy_weights(src: Path, dst: Path) -> None:
    """A component folder's config, index and weight files (not stray extras such as fp16 copies)."""
    dst.mkdir()
    wanted = {*shard_files(src), *src.glob("*.json")}
    for f in sorted(wanted):
        shutil.copy2(f, dst / f.name)


def _diffusers_config(files):
    # a single file's transformer config comes from its base (as in the pipeline)
    if files.transformer.is_file() and files.transformer_config is not None:
        from .transformer import FluxConfig

        return FluxConfig.from_diffusers(files.transformer_config)
    return None


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _dtype_name(dt: mx.Dtype) -> str:
    return {mx.float32: "float32", mx.bfloat16: "bfloat16", mx.float16: "float16"}[dt]


def _say(progress, message: str) -> None:
    if progress is not None:
        progress(message, None)
