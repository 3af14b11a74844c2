"""Starting from an image: img2img's partial schedule and start latents, FLUX.1 Kontext's
reference image, which rides along with the output's tokens at every step, and FLUX.1 Fill's
masked image and mask, which ride along with the output's channels (inpaint, outpaint).

Both follow diffusers (`FluxImg2ImgPipeline`, `FluxKontextPipeline`, `FluxFillPipeline`), except that an image
is encoded to the VAE posterior's mean, so a result does not depend on a hidden sample.
`FluxPipeline` calls these from its phases; the sizing rules are `plan`'s.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import numpy as np

from . import images, sampler
from .images import InputImage
from PIL import Image

from .request import EDIT, IMAGE_TO_IMAGE, INPAINT, OUTPAINT, TEXT_TO_IMAGE, GenerationRequest, InputError
from .variants import Variant

DEFAULT_STRENGTH = 0.6  # diffusers' img2img default
FILL_STRENGTH = 1.0     # diffusers' FluxFillPipeline default: the masked area starts from pure noise
OUTPAINT_BORDER = (128, 128, 128)  # mid grey: the masked image holds 0 there anyway ([-1, 1] pixels x (1 - mask))



def check_input(request: GenerationRequest, image: InputImage | None) -> None:
    """The image given is the one the request names (a request that names one needs it)."""
    if request.image is None:
        return
    if image is None:
        raise InputError(f"this request starts from an input image ({request.image.width}x"
                         f"{request.image.height}, {request.image.fingerprint}): pass it as image=")
    if request.image.fingerprint != image.ref.fingerprint:
        raise InputError(f"the image given ({image.ref.fingerprint}) is not the request's input image "
                         f"({request.image.fingerprint})")

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
    check_input(request, image)
    if image is None:
        if request.strength is not None:
            raise InputError("strength is for img2img: give an input image too")
        return width, height, None, TEXT_TO_IMAGE
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


class WithInputs:
    """The transformer as the sampler sees it when inputs beside the output's latents ride along in
    every step: a reference image's `tokens` after the output's along the sequence (Kontext; only
    the output's velocity is kept), or conditioning `channels` after the latents' along the channel
    axis (FLUX.1 Fill: masked image latents and mask)."""

    def __init__(self, model, tokens: mx.array | None = None, channels: mx.array | None = None):
        self.model, self.tokens, self.channels = model, tokens, channels

    @property
    def dtype(self) -> mx.Dtype:
        return self.model.dtype

    def step(self, img: mx.array, t: mx.array, cond) -> mx.array:
        return self._run(self.model.step, img, t, cond)

    def compiled_step(self, img: mx.array, t: mx.array, cond) -> mx.array:
        return self._run(self.model.compiled_step, img, t, cond)

    def _run(self, step, img: mx.array, t: mx.array, cond) -> mx.array:
        b, n = img.shape[:2]
        if self.channels is not None:
            img = mx.concatenate([img, _batched(self.channels, b, img.dtype)], axis=-1)
        if self.tokens is not None:
            img = mx.concatenate([img, _batched(self.tokens, b, img.dtype)], axis=1)
        return step(img, t, cond)[:, :n]


def _batched(x: mx.array, batch: int, dtype: mx.Dtype) -> mx.array:
    return mx.broadcast_to(x, (batch, *x.shape[1:])).astype(dtype)


# --- FLUX.1 Fill: inpaint and outpaint ---------------------------------------------------------


def fill_plan(request: GenerationRequest, image: InputImage | None, mask: InputImage | None,
              model_name: str) -> tuple[int, int, tuple[int, int], str]:
    """(width, height, size the model sees the input image at, mode) of a checked request to a
    Fill model, which repaints an input image where a mask is white (inpaint) or extends it by
    `request.expand` pixels (outpaint).

    Inpaint: the size defaults to the image's own rounded down to multiples of 16 and the
    image is resized to the output size, as img2img. Outpaint: the image at its own size
    rounded down to 16, placed on a canvas larger by (left, top, right, bottom); the canvas is
    the output's size, so width/height are not given (a re-run's recorded size, the same, is
    accepted).
    """
    check_input(request, image)
    if image is None:
        raise InputError(f"{model_name} repaints an input image: give image= and mask= (inpaint) or expand= (outpaint)")
    if request.expand is not None:
        if mask is not None:
            raise InputError("give a mask (inpaint) or expand (outpaint), not both")
        own = images.own_size(image)
        left, top, right, bottom = request.expand
        width, height = own[0] + left + right, own[1] + top + bottom
        if (request.width, request.height) not in ((None, None), (width, height)):
            raise InputError(f"expand makes the output {width}x{height}: give no width or height with it")
        return width, height, own, OUTPAINT
    if mask is None:
        if request.mask is not None:
            raise InputError(f"this request has a mask ({request.mask.fingerprint}): pass it as mask=")
        raise InputError(f"{model_name} needs a mask= (white: repaint) or expand= (outpaint) with the image")
    if request.mask is not None and request.mask.fingerprint != mask.ref.fingerprint:
        raise InputError(f"the mask given ({mask.ref.fingerprint}) is not the request's mask ({request.mask.fingerprint})")
    own = images.own_size(image)
    width, height = request.width or own[0], request.height or own[1]
    return width, height, (width, height), INPAINT


def fill_mask(mask: InputImage, image: InputImage, width: int, height: int) -> np.ndarray:
    """The mask as the model sees it, float32 [height, width] of 0 (keep) and 1 (repaint).

    As diffusers' mask processor: converted to grey, resized to the output size (Lanczos),
    /255 and thresholded at 0.5. A mask whose size differs from the image's is first resized
    to the image's (nearest, so its edges stay hard). An all-black mask is refused.
    """
    m = mask.pixels.convert("L")
    if m.size != image.size:
        m = m.resize(image.size, Image.Resampling.NEAREST)
    if m.size != (width, height):
        m = m.resize((width, height), Image.Resampling.LANCZOS)
    arr = (np.asarray(m, dtype=np.float32) / 255.0 >= 0.5).astype(np.float32)
    if not arr.any():
        raise InputError("the mask is all black: nothing to paint (white marks what to repaint)")
    return arr


def outpaint_canvas(image: InputImage, expand: tuple[int, int, int, int]) -> tuple[Image.Image, Image.Image]:
    """(canvas, mask) of an outpaint: the image at its own size rounded down to 16 (resized,
    as img2img) placed at (left, top) on a mid-grey canvas larger by `expand`, and a mask that
    is white exactly on the added border."""
    left, top, right, bottom = expand
    w, h = images.own_size(image)
    pic = image.pixels if image.size == (w, h) else image.pixels.resize((w, h), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (w + left + right, h + top + bottom), OUTPAINT_BORDER)
    canvas.paste(pic, (left, top))
    mask = Image.new("L", canvas.size, 255)
    mask.paste(0, (left, top, left + w, top + h))
    return canvas, mask


def fill_inputs(request: GenerationRequest, image: InputImage, mask: InputImage | None) -> tuple[np.ndarray, np.ndarray]:
    """(pixels NHWC [-1, 1], mask [H, W] of 0/1) of a resolved inpaint or outpaint request."""
    if request.mode == OUTPAINT:
        canvas, border = outpaint_canvas(image, request.expand)
        canvas_in = images.load_image(canvas)
        return images.fit(canvas_in, request.width, request.height), \
            fill_mask(images.load_image(border), canvas_in, request.width, request.height)
    return images.fit(image, request.width, request.height), fill_mask(mask, image, request.width, request.height)


def mask_channels(mask: np.ndarray) -> mx.array:
    """A [H, W] mask's 8x8 pixel blocks as 64 channels per latent pixel, [1, H/8, W/8, 64]
    (channel 8 * row + col within the block, as diffusers unfolds it)."""
    h, w = mask.shape
    m = mask.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    return mx.array(np.ascontiguousarray(m).reshape(1, h // 8, w // 8, 64))


def fill_condition(masked_latents: mx.array, mask: np.ndarray) -> mx.array:
    """What a Fill transformer reads beside the output's latents, packed [1, N, 320]: the masked
    image's latents [1, H/8, W/8, C] (packed to 64) and the mask (packed to 256)."""
    return mx.concatenate([sampler.pack(masked_latents), sampler.pack(mask_channels(mask))], axis=-1)
