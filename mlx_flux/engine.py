"""The engine's interface: what a generation reports and returns, and the `Engine` protocol.

`FluxPipeline` implements `Engine`; so must any stand-in (the app's tests use one). A test
checks both against this protocol, so a change of the real signature cannot leave a test
double (and every test built on it) silently describing an engine that no longer exists.

Light on purpose: no MLX import, so the GUI can name these types on its own thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import os
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, Union, runtime_checkable

from .request import GenerationRequest, LoraRef

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from .images import InputImage

# An input image: a PIL image, an image file, or one already read (`images.load_image`).
ImageInput = Union["Image.Image", str, "os.PathLike[str]", "InputImage"]


@dataclass
class StepEvent:
    """What a step callback receives, once per denoising step."""

    step: int          # 1-based
    total: int
    elapsed: float     # seconds since denoising started
    sigma: float       # noise level after this step
    _preview: Callable[[], Image.Image] = field(repr=False)

    def preview(self) -> Image.Image:
        """A small image of the predicted clean image at this step (no VAE decode)."""
        return self._preview()


StepCallback = Callable[[StepEvent], None]

# Phases of a generation that step events do not show. "decode": the denoising is done and the
# VAE turns the final latents into pixels (a batch: once per chunk); it reports no steps and
# cannot stop midway. Raising from a phase callback cancels, as raising from a step callback does.
DECODE = "decode"
PhaseCallback = Callable[[str], None]


@dataclass
class GenerationResult:
    """One finished image and exactly how it was made."""

    image: Image.Image
    latents: np.ndarray            # (1, C, H/8, W/8) float32, before VAE scale/shift
    request: GenerationRequest     # every default resolved: what the PNG and the history hold
    prompt_truncated: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)  # peak bytes (weights included) per phase

    @property
    def seed(self) -> int:
        return int(self.request.seed)  # always resolved in a result

    @property
    def metadata(self) -> dict[str, Any]:
        """The dict written into the PNG (`request.to_metadata()`)."""
        return self.request.to_metadata()


@runtime_checkable
class Engine(Protocol):
    """What the CLI and the app need from a loaded model."""

    model_name: str                  # display name or repo id, never a local path
    variant: str                     # "schnell" | "dev"
    quantize: int | None             # bits of quantized weights, None for full precision
    default_steps: int
    default_guidance: float | None   # None: the model has no guidance control
    loras: tuple[LoraRef, ...]       # the active LoRAs (file name, content hash, scale)

    def generate(self, prompt: str | GenerationRequest, width: int | None = None, height: int | None = None,
                 steps: int | None = None, guidance: float | None = None, seed: int | None = None,
                 latents: Any = None, callback: StepCallback | None = None,
                 image: ImageInput | None = None, strength: float | None = None,
                 mask: ImageInput | None = None,
                 expand: tuple[int, int, int, int] | None = None,
                 on_phase: PhaseCallback | None = None) -> GenerationResult:
        """One image, from keyword options or from a request (and the input image and mask it names);
        `on_phase(DECODE)` is called when the decode begins."""
        ...

    def generate_batch(self, prompt: str | GenerationRequest, seeds: Sequence[int], width: int | None = None,
                       height: int | None = None, steps: int | None = None, guidance: float | None = None,
                       callback: StepCallback | None = None, max_batch: int | None = None,
                       image: ImageInput | None = None, strength: float | None = None,
                       mask: ImageInput | None = None,
                       expand: tuple[int, int, int, int] | None = None,
                       on_phase: PhaseCallback | None = None) -> list[GenerationResult]:
        """One image per seed, the prompt encoded once; step events count over the whole batch,
        `on_phase(DECODE)` comes before each chunk's decode."""
        ...

    def set_loras(self, loras: Sequence[tuple[str | Path, float]]) -> None:
        """Make these (file or hub reference, scale) pairs the active LoRAs; [] removes all."""
        ...

    def resolve(self, request: GenerationRequest, image: ImageInput | None = None,
                mask: ImageInput | None = None) -> GenerationRequest:
        """`request` with this model's defaults, a random seed if it has none, and model fields."""
        ...

    def auto_max_batch(self, width: int, height: int) -> int:
        """How many images of this size one transformer batch may hold on this machine."""
        ...

    def warmup(self, width: int = 1024, height: int = 1024, batch: int = 1, force: bool = False) -> float:
        """Make the first generation at this size as fast as later ones; returns seconds spent."""
        ...
