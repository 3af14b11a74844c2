"""Writing our quantized model folder (`mlx-flux quantize`); `quantized_io` reads it back.

The float model is loaded and quantized block by block through the staged loader (the
same code a quantize-on-load generation runs), then saved with a manifest listing every
quantized layer, its bits and group size, so a reload never re-derives the choice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from . import __version__, hub, variants
from .clip import SPEC as CLIP_SPEC
from .loader import load_component
from .lora import ActiveLora, merge_adapter
from .lora_formats import read_lora
from .errors import FluxError
from .loading import find_files
from .metadata import remove_stale
from .quantize import GROUP_SIZES, MODE, check_bits, plan_of
from .quantized_io import FORMAT, FORMAT_VERSION, MANIFEST, FormatError
from .t5 import SPEC as T5_SPEC
from .transformer import FluxConfig, load_transformer
from .weights import default_dtype, parse_dtype, shard_files

WEIGHTS = "model.safetensors"

def quantize_to_folder(model: str | os.PathLike, bits: int, output: Path, base: str | os.PathLike | None = None,
                       dtype: str | mx.Dtype | None = "bfloat16", progress=None,
                       loras: Sequence[tuple[str | os.PathLike, float]] = ()) -> Path:
    """Write a quantized copy of `model` (folder, single file + base, or repo id) to `output`.

    Refuses an `output` that exists and is not empty (never overwrite the user's files).
    Work happens in a hidden sibling folder that is renamed into place at the end, so an
    interrupted run leaves no half-written model behind. `dtype` is the precision of the
    scales and of the layers kept unquantized (bfloat16, FLUX's own, by default). `loras`
    ((file or hub reference, scale) pairs) are added into the weights before quantizing, and
    listed in the manifest. Returns `output`.
    """
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
    active = [ActiveLora(read_lora(hub.resolve_file(source)), float(scale)) for source, scale in loras]

    remove_stale(output.parent, f".{output.name}.partial-")  # what a killed run left
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    except OSError as e:
        raise FormatError(f"cannot write {output}: {e.strerror or e}") from None
    try:
        components = {}
        _say(progress, "Quantizing transformer")
        transformer = load_transformer(files.transformer, dtype=dt, config=_diffusers_config(files), quantize=bits,
                                       adapters=[merge_adapter(active, "transformer")] if active else ())
        components["transformer"] = _save(transformer, tmp, "transformer",
                                           config=_jsonable(dataclasses.asdict(transformer.config)))
        variant = variants.detect(transformer.config.guidance_embed, files.model_index).name
        del transformer
        mx.clear_cache()

        _say(progress, "Quantizing T5")
        t5 = load_component(T5_SPEC, files.text_encoder_2, dt, quantize=bits)  # keep_float32 as load_t5
        components["text_encoder_2"] = _save(t5, tmp, "text_encoder_2")
        del t5
        mx.clear_cache()
        shutil.copy2(files.text_encoder_2 / "config.json", tmp / "text_encoder_2" / "config.json")

        _say(progress, "Copying CLIP, VAE and tokenizers")
        if any(u.component == "text_encoder" for a in active for u in a.file.updates):
            _save_clip_with(active, files.text_encoder, tmp / "text_encoder", dt)
        else:
            _copy_weights(files.text_encoder, tmp / "text_encoder")
        if files.vae.is_file():
            (tmp / "vae").mkdir()
            shutil.copy2(files.vae, tmp / "vae" / "ae.safetensors")
        else:
            _copy_weights(files.vae, tmp / "vae")
        shutil.copytree(files.tokenizer, tmp / "tokenizer")
        shutil.copytree(files.tokenizer_2, tmp / "tokenizer_2")
        if files.model_index is not None:  # keeps naming the pipeline (a Kontext model stays one)
            (tmp / "model_index.json").write_text(json.dumps(files.model_index, indent=2))
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
            "loras": [{"name": a.file.path.name, "fingerprint": a.file.fingerprint(), "scale": a.scale,
                       "format": a.file.format} for a in active],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")  # last: marks it complete
        if output.exists():
            output.rmdir()  # empty (checked above); rename cannot replace it everywhere
        os.replace(tmp, output)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and not isinstance(e, FluxError)):
            # a full disk, a vanished folder: MLX says so in a RuntimeError, Python in an OSError
            # naming our hidden work folder; the user's path is `output`
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[0]
            raise FormatError(f"cannot write {output}: {reason.replace(str(tmp), str(output))}") from None
        raise
    _say(progress, "Done")
    return output


def _save_clip_with(active: Sequence[ActiveLora], src: Path, dst: Path, dtype: mx.Dtype) -> None:
    """CLIP with the LoRAs' text-encoder updates added in, saved with its config (our parameter names)."""
    clip = load_component(CLIP_SPEC, src, dtype, adapters=[merge_adapter(active, "text_encoder")])
    dst.mkdir()
    mx.save_safetensors(str(dst / WEIGHTS), dict(tree_flatten(clip.parameters())), metadata={"format": "mlx"})
    shutil.copy2(src / "config.json", dst / "config.json")


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
        return FluxConfig.from_diffusers(files.transformer_config)
    return None


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _dtype_name(dt: mx.Dtype) -> str:
    return {mx.float32: "float32", mx.bfloat16: "bfloat16", mx.float16: "float16"}[dt]


def _say(progress, message: str) -> None:
    if progress is not None:
        progress(message, None)
