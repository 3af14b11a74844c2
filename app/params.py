"""The settings of one generation: which model to load, and the engine's request.

One frozen `GenerationParams` travels from the Generate button through the queue and the
worker to the PNG and the history row, and back into the controls when an image is restored.
The request half is the engine's own `GenerationRequest` (nothing is copied or re-parsed);
once an image exists it is the engine's resolved `result.request` (steps, guidance, seed,
model name and precision filled in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from mlx_flux.request import GenerationRequest

SIZE_STEP = 16  # FLUX packs 2x2 latent patches of an 8x-downsampled image
MIN_SIZE = 64
MAX_SIZE = 2048
SEED_MAX = 2**31 - 1  # what a QSpinBox can hold; seeds above it are rare and get folded in


@dataclass(frozen=True)
class ModelChoice:
    """What to load: the same choice means the warm pipeline is reused."""

    source: str  # local folder, single .safetensors file, or hub repo id
    quantize: int | None = None


@dataclass(frozen=True)
class LoraChoice:
    """One LoRA to apply: its file and scale. (The request records what was applied as the
    engine's `LoraRef`: name and content hash, never a path.)"""

    path: str
    scale: float = 1.0


@dataclass(frozen=True)
class InputImageChoice:
    """The input image to start from: the app's own copy of it (`<data dir>/inputs/<fingerprint>.png`,
    see app/inputs.py). The pixels stay in that file: the request records only the engine's
    `ImageRef` (content hash and size), and the worker hands the engine this path."""

    path: str


@dataclass(frozen=True)
class GenerationParams:
    """Everything needed to make (or remake) one image: the model to load, the LoRAs to apply
    (the enabled ones, in list order), the input image (None: text-to-image), a Fill model's
    mask or margins, and the request."""

    choice: ModelChoice
    request: GenerationRequest
    loras: tuple[LoraChoice, ...] = ()
    input: InputImageChoice | None = None
    # A Fill model's inpainting mask (the app's grey copy, white: repaint; the request names it
    # as `mask`) or its outpainting margins (left, top, right, bottom; also the request's `expand`).
    mask: InputImageChoice | None = None
    expand: tuple[int, int, int, int] | None = None

    def with_(self, **changes: Any) -> GenerationParams:
        """A copy with fields of the request changed (`seed=...`)."""
        return replace(self, request=self.request.with_(**changes))

    # Read-only views of the request, as the window shows them.
    @property
    def prompt(self) -> str:
        return self.request.prompt

    @property
    def seed(self) -> int | None:
        return self.request.seed

    @property
    def steps(self) -> int | None:
        return self.request.steps

    @property
    def guidance(self) -> float | None:
        return self.request.guidance

    @property
    def width(self) -> int:
        return self.request.width

    @property
    def height(self) -> int:
        return self.request.height

    @property
    def quantize(self) -> int | None:
        return self.choice.quantize


def snap_size(value: float) -> int:
    """Nearest multiple of 16 within the sizes the app offers."""
    snapped = int(round(value / SIZE_STEP)) * SIZE_STEP
    return max(MIN_SIZE, min(MAX_SIZE, snapped))


def fit_size(width: int, height: int) -> tuple[int, int]:
    """An image's own size as the size controls can hold it: multiples of 16 (rounded down, as the
    engine does), scaled down to MAX_SIZE on the long side when larger, keeping the aspect ratio."""
    scale = min(1.0, MAX_SIZE / max(width, height))
    w, h = width * scale, height * scale
    return (max(MIN_SIZE, int(w) // SIZE_STEP * SIZE_STEP), max(MIN_SIZE, int(h) // SIZE_STEP * SIZE_STEP))


def size_for_aspect(ratio: float, area: int) -> tuple[int, int]:
    """A width x height of about `area` pixels with width/height close to `ratio`."""
    width = snap_size(math.sqrt(area * ratio))
    height = snap_size(math.sqrt(area / ratio))
    return width, height
