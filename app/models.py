"""Which models the picker offers, and what can be told about one before it is loaded."""

from __future__ import annotations

import json
from pathlib import Path

_FALLBACK_KNOWN = ["black-forest-labs/FLUX.1-schnell", "black-forest-labs/FLUX.1-dev"]


def known_models() -> list[str]:
    """Hub repo ids the engine knows (it resolves and downloads them)."""
    try:
        from mlx_flux.hub import KNOWN_MODELS  # light: no MLX import

        return list(KNOWN_MODELS)
    except Exception:
        return list(_FALLBACK_KNOWN)


def is_local(source: str) -> bool:
    return source.startswith(("/", "~", ".")) or Path(source).exists() or ":\\" in source


def display_name(source: str) -> str:
    """Short label for the picker: the repo name or the folder/file name."""
    if not source:
        return ""
    if is_local(source):
        return Path(source).expanduser().name or source
    return source.split("/")[-1]


def guess_variant(source: str) -> str | None:
    """"schnell" or "dev" from files or name, so the controls look right before the load finishes.

    The engine has the final word once the model is loaded (ModelInfo.variant).
    """
    path = Path(source).expanduser()
    config = path / "transformer" / "config.json"
    if config.is_file():
        try:
            return "dev" if json.loads(config.read_text()).get("guidance_embeds") else "schnell"
        except (OSError, ValueError):
            pass
    name = source.lower()
    if "schnell" in name:
        return "schnell"
    if "dev" in name:
        return "dev"
    return None


# Defaults per variant, matching the engine's (used until a model is loaded).
VARIANT_DEFAULTS: dict[str, tuple[int, float | None]] = {"schnell": (4, None), "dev": (28, 3.5)}
