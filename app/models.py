"""Which models the picker offers, and what can be told about one before it is loaded."""

from __future__ import annotations

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
    """"schnell" or "dev" from the files or the name, so the controls look right before the load
    finishes (the engine's `variants.guess`; the loaded engine has the final word, ModelInfo.variant)."""
    from mlx_flux.variants import guess  # light: no MLX import

    variant = guess(source)
    return variant.name if variant is not None else None
