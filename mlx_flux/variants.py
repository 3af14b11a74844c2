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
from typing import Iterable


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

    @property
    def guided(self) -> bool:
        return self.guidance is not None


SCHNELL = Variant("schnell", "black-forest-labs/FLUX.1-schnell", steps=4, guidance=None, t5_length=256,
                  shift=False, max_steps=16)
DEV = Variant("dev", "black-forest-labs/FLUX.1-dev", steps=28, guidance=3.5, t5_length=512,
              shift=True, max_steps=50)
VARIANTS: dict[str, Variant] = {v.name: v for v in (SCHNELL, DEV)}


def by_guidance(guidance_embed: bool) -> Variant:
    """The variant of a transformer with (dev) or without (schnell) a guidance embedding."""
    return DEV if guidance_embed else SCHNELL


def from_weight_names(names: Iterable[str]) -> Variant:
    """The variant whose tensors these are (BFL `guidance_in.` or diffusers `guidance_embedder.`)."""
    return by_guidance(any("guidance_in." in n or "guidance_embedder." in n for n in names))


def from_folder(path: str | Path) -> Variant | None:
    """The variant of a diffusers-layout model folder, from its transformer config; None if it has none."""
    config = Path(path).expanduser() / "transformer" / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    return by_guidance(bool(data.get("guidance_embeds"))) if isinstance(data, dict) else None


def guess(source: str) -> Variant | None:
    """The variant of a model before it is loaded: from its files, else from its name (for UIs only)."""
    found = from_folder(source) if source else None
    if found is not None:
        return found
    name = source.lower()
    for variant in VARIANTS.values():
        if variant.name in name:
            return variant
    return None
