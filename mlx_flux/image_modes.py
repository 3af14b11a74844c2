"""Starting from an image: img2img's partial schedule and start latents, and FLUX.1 Kontext's
reference image, which rides along with the output's tokens at every step.

Both follow diffusers (`FluxImg2ImgPipeline`, `FluxKontextPipeline`), except that an image
is encoded to the VAE posterior's mean, so a result does not depend on a hidden sample.
`FluxPipeline` calls these from its phases; the sizing rules are `plan`'s.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import numpy as np

from . import images, sampler
from .images import InputImage
from .request import EDIT, IMAGE_TO_IMAGE, TEXT_TO_IMAGE, GenerationRequest, InputError
from .variants import Variant

DEFAULT_STRENGTH = 0.6  # diffusers' img2img default


def plan(request: GenerationRequest, image: InputImage | None, variant: Variant,
         model_name: str) -> tuple[int | None, int | None, tuple[int, int] | None, str]:
    """(width, height, size the model sees the input at, mode) of a checked request.

    Without an image: text-to-image (a request that names an input image, or has a strength,
    is refused). With one, a text-to-image model does img2img: the size defaults to the
    image's own rounded down to multiples of 16, and the image is resized to the output size.
    A Kontext model edits it: without a size the output and the reference take the Kontext
    resolution nearest the image's aspect ratio (the reference resized to it); with one, the
    reference is used at its own size rounded down to multiples of 16, cropped, not
    resampled; a re-run uses the reference as the request recorded it. A size left None is
    the caller's default.
    """
    width, height = request.width, request.height
    if image is None:
        if request.image is not None:
            raise InputError(f"this request starts from an input image ({request.image.width}x"
                             f"{request.image.height}, {request.image.fingerprint}): pass it as image=")
        if request.strength is not None:
            raise InputError("strength is for img2img: give an input image too")
        return width, height, None, TEXT_TO_IMAGE
    if request.image is not None and request.image.fingerprint != image.ref.fingerprint:
        raise InputError(f"the image given ({image.ref.fingerprint}) is not the request's input image "
                         f"({request.image.fingerprint})")
    if variant.edits:
        if request.strength is not None:
            raise InputError(f"{model_name} edits its input image: it takes no strength")
        if request.image is not None:
            used = (request.image.width, request.image.height)
        elif width is None and height is None:
            used = images.kontext_size(image)
        else:
            used = images.own_size(image)
        return width or used[0], height or used[1], used, EDIT
    own = images.own_size(image)
    width, height = width or own[0], height or own[1]
    return width, height, (width, height), IMAGE_TO_IMAGE


def strength_start(steps: int, strength: float) -> int:
    """The first step img2img runs at `strength`, as diffusers cuts the schedule (in float64:
    50 steps at strength 0.56 run 29, not 28, since 50 x 0.56 = 28.000000000000004); a
    strength that leaves no step is refused."""
    start = int(max(steps - min(steps * strength, steps), 0))
    if start >= steps:
        raise InputError(f"strength {strength} leaves no step of {steps}: raise the strength or the steps")
    return start


def img2img_start(noise: mx.array, z: mx.array, sigma: float) -> mx.array:
    """Flow matching's point at noise level sigma between the image's latents z and the noise."""
    return sigma * noise + (1.0 - sigma) * z


def reference_pixels(image: InputImage, width: int, height: int) -> np.ndarray:
    """A Kontext reference at width x height: cropped when that is its own size rounded to 16
    (no resampling), else resized (the nearest trained resolution)."""
    if (width, height) == images.own_size(image):
        return images.crop_to_grid(image)
    return images.fit(image, width, height)


class Reference(NamedTuple):
    """A reference image's tokens for the transformer, beside the output's (Kontext)."""

    tokens: mx.array  # packed latents [1, M, C]
    ids: mx.array     # their position ids [M, 3]: (1, row, col), told apart from the output's (0, row, col)

    @classmethod
    def of(cls, latents: mx.array, width: int, height: int) -> Reference:
        """From the reference's latents [1, H/8, W/8, C] of a width x height image."""
        ids = sampler.image_ids(height, width)
        return cls(sampler.pack(latents), mx.concatenate([mx.ones_like(ids[:, :1]), ids[:, 1:]], axis=1))


class WithReference:
    """The transformer as the sampler sees it when a reference image's tokens ride along: the
    reference tokens follow the output's in every step, and only the output's velocity is kept."""

    def __init__(self, model, tokens: mx.array):
        self.model, self.tokens = model, tokens

    @property
    def dtype(self) -> mx.Dtype:
        return self.model.dtype

    def step(self, img: mx.array, t: mx.array, cond) -> mx.array:
        return self._run(self.model.step, img, t, cond)

    def compiled_step(self, img: mx.array, t: mx.array, cond) -> mx.array:
        return self._run(self.model.compiled_step, img, t, cond)

    def _run(self, step, img: mx.array, t: mx.array, cond) -> mx.array:
        n = img.shape[1]
        ref = mx.broadcast_to(self.tokens, (img.shape[0], *self.tokens.shape[1:])).astype(img.dtype)
        return step(mx.concatenate([img, ref], axis=1), t, cond)[:, :n]
