"""The settings of one generation, shared by the controls, the queue, history and dropped images."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

SIZE_STEP = 16  # FLUX packs 2x2 latent patches of an 8x-downsampled image
MIN_SIZE = 64
MAX_SIZE = 2048
SEED_MAX = 2**31 - 1  # what a QSpinBox can hold; seeds above it are rare and get folded in


@dataclass(frozen=True)
class GenerationParams:
    """Everything needed to make (or remake) one image.

    `steps`/`guidance`/`seed` of None mean "the model's default" / "random"; once an
    image exists they hold what was actually used.
    """

    prompt: str
    model: str  # what the engine loads: a local path or a hub repo id
    width: int = 1024
    height: int = 1024
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    quantize: int | None = None  # None, 4 or 8 bits

    def with_(self, **changes: Any) -> GenerationParams:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def snap_size(value: float) -> int:
    """Nearest multiple of 16 within the sizes the app offers."""
    snapped = int(round(value / SIZE_STEP)) * SIZE_STEP
    return max(MIN_SIZE, min(MAX_SIZE, snapped))


def size_for_aspect(ratio: float, area: int) -> tuple[int, int]:
    """A width x height of about `area` pixels with width/height close to `ratio`."""
    width = snap_size(math.sqrt(area * ratio))
    height = snap_size(math.sqrt(area / ratio))
    return width, height


def params_from_metadata(metadata: dict[str, Any]) -> GenerationParams | None:
    """Settings stored in an image's metadata (as the engine writes them), or None if unusable.

    The metadata's `model` is a display name or repo id, never a local path; the caller
    decides which loadable model it corresponds to.
    """
    prompt = metadata.get("prompt")
    if not isinstance(prompt, str):
        return None

    def number(key: str, kind: type) -> Any:
        value = metadata.get(key)
        try:
            return kind(value) if value is not None else None
        except (TypeError, ValueError, OverflowError):
            return None

    seed = number("seed", int)
    if seed is not None:
        seed %= SEED_MAX + 1
    return GenerationParams(
        prompt=prompt,
        model=str(metadata.get("model") or ""),
        width=snap_size(number("width", int) or 1024),
        height=snap_size(number("height", int) or 1024),
        steps=number("steps", int),
        guidance=number("guidance", float),
        seed=seed,
    )
