"""Turning what the user names (folder, single file, repo id) into the files of each component.

Three shapes are understood:
- a diffusers-layout folder or repo (`transformer/`, `vae/`, `text_encoder/`, ...);
- a BFL single file (`flux1-*.safetensors`) with text encoders, tokenizers and possibly
  the VAE from `base` (a folder or repo; default the official repo of the variant), and
  `ae.safetensors` beside it when present;
- a folder holding the BFL root files next to the text encoders (a full repo snapshot).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from . import file_kind, hub, quantized_io, variants
from .errors import ModelNotFoundError
from .sampler import check_scheduler_config
from .schema import ConfigError, check, read_json
from .weights import WeightError, read_header

TEXT_PARTS = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")


@dataclass(frozen=True)
class ModelFiles:
    name: str                      # for metadata and display
    transformer: Path              # diffusers folder or BFL single file
    transformer_config: dict | None  # diffusers config.json, when one is at hand (single files: from base)
    vae: Path                      # diffusers vae/ folder or ae.safetensors
    text_encoder: Path
    text_encoder_2: Path
    tokenizer: Path
    tokenizer_2: Path
    scheduler: dict | None         # scheduler_config.json, if the layout has one
    quantized: dict | None = None  # the manifest of our quantized folder (see quantized_io)
    model_index: dict | None = None  # model_index.json: names the diffusers pipeline (Kontext...)


def detect_variant(transformer: Path) -> variants.Variant:
    """The variant of a transformer checkpoint, from its tensor names only (nothing is read)."""
    files = [transformer] if transformer.is_file() else sorted(transformer.glob("*.safetensors"))
    return variants.from_weight_names(name for f in files for name in read_header(f))


def find_files(model: str | os.PathLike, base: str | os.PathLike | None = None,
               progress: hub.Progress | None = None) -> ModelFiles:
    path = hub.resolve(model, progress=progress)
    name = hub.display_name(model)
    if path.is_file():
        return _single_file(path, name, base, progress)
    if not path.is_dir():
        raise ModelNotFoundError(f"no such model file or folder: {path}")
    if quantized_io.is_quantized_folder(path):
        return _quantized_folder(path, name)
    if not (path / "transformer").is_dir():
        roots = sorted(path.glob("flux1-*.safetensors")) + sorted(path.glob("flux1-*.sft"))
        if roots:
            return _single_file(roots[0], name, base or (path if _has_text_parts(path) else None), progress)
    return _folder(path, name)


def _folder(path: Path, name: str) -> ModelFiles:
    missing = [c for c in hub.COMPONENTS if not (path / c).is_dir()]
    if missing:
        raise ModelNotFoundError(
            f"incomplete model folder {path}: missing {', '.join(m + '/' for m in missing)}")
    return ModelFiles(
        name=name,
        transformer=path / "transformer",
        transformer_config=_json(path / "transformer" / "config.json"),
        vae=path / "vae",
        text_encoder=path / "text_encoder",
        text_encoder_2=path / "text_encoder_2",
        tokenizer=path / "tokenizer",
        tokenizer_2=path / "tokenizer_2",
        scheduler=_scheduler(path),
        model_index=_json(path / "model_index.json"),
    )


def _quantized_folder(path: Path, name: str) -> ModelFiles:
    """A folder written by `mlx-flux quantize` (its manifest is checked before anything is read)."""
    manifest = quantized_io.read_manifest(path)
    # Same layout as a diffusers folder; the transformer's config lives in the manifest.
    return replace(_folder(path, name), transformer_config=None, quantized=manifest)


def _single_file(file: Path, name: str, base, progress) -> ModelFiles:
    if file.suffix not in (".safetensors", ".sft"):
        raise ModelNotFoundError(f"not a safetensors checkpoint: {file}")
    file_kind.check_model_file(file)  # a LoRA or an SD checkpoint: said before any base is fetched
    base = base if base is not None else detect_variant(file).repo
    base_path = hub.resolve(base, patterns=hub.BASE_PATTERNS, progress=progress)
    missing = [c for c in TEXT_PARTS if not (base_path / c).is_dir()]
    if missing:
        raise ModelNotFoundError(
            f"base {base_path} lacks {', '.join(m + '/' for m in missing)} needed with a single-file model")
    ae = file.parent / "ae.safetensors"
    if not ae.is_file():
        ae = base_path / "vae"
        if not ae.is_dir():
            raise ModelNotFoundError(f"no VAE: put ae.safetensors beside {file.name} or use a base with vae/")
    return ModelFiles(
        name=name,
        transformer=file,
        transformer_config=_json(base_path / "transformer" / "config.json"),
        vae=ae,
        text_encoder=base_path / "text_encoder",
        text_encoder_2=base_path / "text_encoder_2",
        tokenizer=base_path / "tokenizer",
        tokenizer_2=base_path / "tokenizer_2",
        scheduler=_scheduler(base_path),
        model_index=_json(base_path / "model_index.json"),  # a Kontext base makes a Kontext model
    )


def _has_text_parts(path: Path) -> bool:
    return all((path / c).is_dir() for c in TEXT_PARTS)


def _json(path: Path) -> dict | None:
    """An optional JSON object beside the weights (config, scheduler, model index), checked to be one."""
    if not path.is_file():
        return None
    return check(read_json(path, path.name, WeightError), {}, str(path), WeightError)


def _scheduler(path: Path) -> dict | None:
    """scheduler/scheduler_config.json of `path`, its values checked before any is used."""
    cfg = _json(path / "scheduler" / "scheduler_config.json")
    if cfg is None:
        return None
    try:
        return dict(check_scheduler_config(cfg, str(path / "scheduler" / "scheduler_config.json")))
    except ConfigError as e:
        raise WeightError(str(e)) from None
