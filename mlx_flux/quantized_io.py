"""Our quantized model folder, the reading side: its manifest, checked (`quantized_writer` writes it).

Layout (everything a generation needs, nothing else):

    DIR/mlx-flux.json                  manifest: format, version, bits, group size, what is quantized
    DIR/transformer/model.safetensors  quantized transformer, our (BFL) parameter names
    DIR/text_encoder_2/                quantized T5 (model.safetensors) + its config.json
    DIR/text_encoder/, vae/            copied as they were (CLIP, VAE: small, quality-critical)
    DIR/tokenizer/, tokenizer_2/, scheduler/

The manifest lists every quantized layer with its bits and group size, so loading never
re-derives the choice from code that may have changed since: the staged loader
(`loader.load_component`) gives the model the quantized structure first and then loads
the stored integers and scales directly, so full precision is never materialised. A
manifest from a newer format version, an unknown format or a missing file is refused
with a one-line reason, never loaded half right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from . import __version__
from .errors import FluxError
from .quantize import MODE
from .schema import Field, check, read_json

MANIFEST = "mlx-flux.json"
FORMAT = "mlx-flux-quantized"
FORMAT_VERSION = 1  # bump when a reader of this version could not load the new files correctly


class FormatError(FluxError, ValueError):
    """A quantized folder this version cannot load (newer format, unknown format, missing files)."""


_MANIFEST = {"quantization": Field(dict), "components": Field(dict)}
_QUANTIZATION = {"mode": Field(str), "bits": Field(int, 2, 8), "group_size": Field(int, 1, 4096, required=False)}
_COMPONENT = {"file": Field(str), "quantized": Field(list, item=dict), "config": Field(dict, required=False)}
_GROUP = {"bits": Field(int, 2, 8), "group_size": Field(int, 1, 4096), "layers": Field(list, item=str)}


def is_quantized_folder(path: Path) -> bool:
    """Whether `path` is one of our quantized folders (has a manifest; not yet checked)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The checked manifest of `folder`; raises FormatError saying exactly why it cannot be loaded."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FormatError(f"not a quantized mlx-flux folder (no {MANIFEST}): {folder}")
    manifest = read_json(path, MANIFEST, FormatError)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FormatError(f"unknown model format in {path} (expected {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise FormatError(f"unknown format version {version!r} in {path}")
    if version > FORMAT_VERSION:
        writer = manifest.get("mlx_flux_version", "a newer mlx-flux")
        raise FormatError(f"{folder} was written by mlx-flux {writer} in format version {version}; "
                          f"this mlx-flux {__version__} reads up to version {FORMAT_VERSION}: upgrade mlx-flux")
    check(manifest, _MANIFEST, str(path), FormatError)
    q = check(manifest["quantization"], _QUANTIZATION, f"{path}: quantization", FormatError)
    if q.get("mode") != MODE:
        raise FormatError(f"unsupported quantization mode {q.get('mode')!r} in {path} (this version reads {MODE!r})")
    components = manifest.get("components")
    if not isinstance(components, dict) or "transformer" not in components:
        raise FormatError(f"{path} lists no quantized transformer")
    for name, comp in components.items():
        check(comp, _COMPONENT, f"{path}: component {name}", FormatError)
        for group in comp["quantized"]:
            check(group, _GROUP, f"{path}: a group of quantized layers of {name}", FormatError)
        if Path(comp["file"]).is_absolute() or ".." in Path(comp["file"]).parts:
            raise FormatError(f"{path}: component {name} names a file outside the folder: {comp['file']}")
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
