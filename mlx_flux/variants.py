"""What differs between the FLUX.1 variants, in one table, and how a model's files say which it is.

The engine (defaults, schedule, text length), the hub (official repositories) and the app
(slider ranges before a model has loaded) all read this table. Detection only ever looks
at the files (a guidance embedding in the weights, `guidance_embeds` in the transformer's
config.json), never at a folder name; `guess` falls back to the name for the app's
controls before anything is loaded, and the loaded engine has the final word.

Light on purpose: no MLX import, so the GUI can use it on its own thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class Variant:
    """A FLUX.1 variant's facts, as the reference command lines use them."""

    name: str                # "schnell" | "dev"
    repo: str                # the official Hugging Face repository
    steps: int               # default number of denoising steps
    guidance: float | None   # default guidance scale; None: no guidance embedding (distilled)
    t5_length: int           # T5 tokens the model was trained with (padding is attended to)
    shift: bool              # resolution-dependent schedule shift (without a scheduler config)
    max_steps: int           # a sensible upper end for a steps control
    edits: bool = False      # takes a reference image to edit (FLUX.1 Kontext) rather than img2img
    fills: bool = False      # repaints a masked image or extends it (FLUX.1 Fill: 384 input channels)

    @property
    def guided(self) -> bool:
        return self.guidance is not None


SCHNELL = Variant("schnell", "black-forest-labs/FLUX.1-schnell", steps=4, guidance=None, t5_length=256,
                  shift=False, max_steps=16)
DEV = Variant("dev", "black-forest-labs/FLUX.1-dev", steps=28, guidance=3.5, t5_length=512,
              shift=True, max_steps=50)
KONTEXT = Variant("kontext", "black-forest-labs/FLUX.1-Kontext-dev", steps=28, guidance=2.5, t5_length=512,
                  shift=True, max_steps=50, edits=True)
FILL = Variant("fill", "black-forest-labs/FLUX.1-Fill-dev", steps=50, guidance=30.0, t5_length=512,
               shift=True, max_steps=50, fills=True)
VARIANTS: dict[str, Variant] = {v.name: v for v in (SCHNELL, DEV, KONTEXT, FILL)}
# diffusers pipeline classes (model_index.json's `_class_name`) of the variants that are not
# told apart by their weights: Kontext has dev's transformer, trained to read a reference image.
_PIPELINE_CLASSES = {"FluxKontextPipeline": KONTEXT, "FluxFillPipeline": FILL}


def by_guidance(guidance_embed: bool) -> Variant:
    """The variant of a transformer with (dev) or without (schnell) a guidance embedding."""
    return DEV if guidance_embed else SCHNELL


def detect(guidance_embed: bool, model_index: Mapping[str, Any] | None = None) -> Variant:
    """The variant of a model: its model_index.json's pipeline class where that decides, else its weights."""
    name = model_index.get("_class_name") if isinstance(model_index, Mapping) else None
    return _PIPELINE_CLASSES.get(name) or by_guidance(guidance_embed)


def from_weight_names(names: Iterable[str]) -> Variant:
    """The variant whose tensors these are (BFL `guidance_in.` or diffusers `guidance_embedder.`)."""
    return by_guidance(any("guidance_in." in n or "guidance_embedder." in n for n in names))


def from_folder(path: str | Path) -> Variant | None:
    """The variant of a diffusers-layout model folder, from its files; None if they do not say."""
    folder = Path(path).expanduser()
    config, index = _json(folder / "transformer" / "config.json"), _json(folder / "model_index.json")
    if config is None:
        return _PIPELINE_CLASSES.get(index.get("_class_name")) if index else None
    return detect(bool(config.get("guidance_embeds")), index)


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def guess(source: str) -> Variant | None:
    """The variant of a model before it is loaded: from its files, else from its name (for UIs only)."""
    found = from_folder(source) if source else None
    if found is not None:
        return found
    name = source.lower()
    for variant in (KONTEXT, FILL, SCHNELL, DEV):  # "FLUX.1-Kontext-dev" names dev too
        if variant.name in name:
            return variant
    return None
