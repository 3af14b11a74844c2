"""Input images: reading them safely, naming them by content, and fitting them to the model.

An input image (img2img's start, Kontext's reference) is read once into an `InputImage`:
RGB pixels plus a content hash, which is how a request and the PNG's metadata refer to it
(never by a path from the user's home). The sizing rules follow diffusers' pipelines, so
the same image gives the same latents here and there.

Light on purpose: no MLX import (the conversion to the VAE's input is done by the caller).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .request import ImageRef, InputError

# Beyond this many pixels an input is refused rather than decoded (Pillow's own bomb guard
# stops at ~179 Mpx; a FLUX.1 input is at most a few Mpx, and the VAE encode of 64 Mpx
# would not fit most Macs anyway).
MAX_INPUT_PIXELS = 64 * 1024 * 1024
SIZE_STEP = 16  # the model packs 2x2 patches of 8x-downsampled latents

# The resolutions FLUX.1 Kontext was trained on (width, height), as diffusers lists them.
KONTEXT_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184), (944, 1104),
    (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752), (1456, 720), (1504, 688),
    (1568, 672),
)


@dataclass(frozen=True)
class InputImage:
    """An input image's RGB pixels and the reference a request records for it."""

    pixels: Image.Image = field(repr=False, compare=False)
    ref: ImageRef

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.size


def load_image(image: Image.Image | str | os.PathLike | InputImage) -> InputImage:
    """Read `image` (a PIL image or a file) as RGB; a one-line InputError when it cannot be."""
    if isinstance(image, InputImage):
        return image
    if isinstance(image, Image.Image):
        return _input(image, "the input image")
    path = Path(image).expanduser()
    if not path.is_file():
        raise InputError(f"no such image file: {path}")
    try:
        with Image.open(path) as im:
            _check_pixels(im.size, path.name)
            im.load()
            return _input(im, path.name)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"{path.name} is too large to read as an image") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError(f"cannot read {path.name} as an image ({type(e).__name__})") from None


def _input(im: Image.Image, name: str) -> InputImage:
    _check_pixels(im.size, name)
    if im.mode != "RGB":
        im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "LA", "RGBA") else im.convert("RGB")
    h = hashlib.sha256(f"{im.width}x{im.height}:".encode())
    h.update(np.asarray(im, dtype=np.uint8).tobytes())
    return InputImage(im, ImageRef(h.hexdigest()[:12], im.width, im.height))


def _check_pixels(size: tuple[int, int], name: str) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise InputError(f"{name} is empty ({w}x{h})")
    if w * h > MAX_INPUT_PIXELS:
        raise InputError(f"{name} is {w}x{h}: larger than the {MAX_INPUT_PIXELS // 2**20} Mpx an input may have")


def own_size(image: InputImage) -> tuple[int, int]:
    """The image's size rounded down to multiples of 16 (at least 16): img2img's default output size."""
    w, h = image.size
    return max(SIZE_STEP, w // SIZE_STEP * SIZE_STEP), max(SIZE_STEP, h // SIZE_STEP * SIZE_STEP)


def kontext_size(image: InputImage) -> tuple[int, int]:
    """The Kontext training resolution closest to the image's aspect ratio (width, height)."""
    w, h = image.size
    aspect = w / h
    _, width, height = min((abs(aspect - kw / kh), kw, kh) for kw, kh in KONTEXT_RESOLUTIONS)
    return width, height


def fit(image: InputImage, width: int, height: int) -> np.ndarray:
    """The image at exactly width x height as float32 NHWC in [-1, 1], the VAE's input.

    Resized with Lanczos when its size differs (diffusers' `VaeImageProcessor` resizes the
    same way, so both feed the VAE the same pixels).
    """
    im = image.pixels
    if im.size != (width, height):
        im = im.resize((width, height), Image.Resampling.LANCZOS)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return (arr * 2.0 - 1.0)[None]


def crop_to_grid(image: InputImage) -> np.ndarray:
    """The image cropped (not resampled) to its size rounded down to multiples of 16, NHWC [-1, 1]."""
    w, h = own_size(image)
    arr = np.asarray(image.pixels, dtype=np.float32)[:h, :w] / 255.0
    if arr.shape[:2] != (h, w):  # smaller than 16 on a side: resized up (nothing to crop)
        return fit(image, w, h)
    return (arr * 2.0 - 1.0)[None]
