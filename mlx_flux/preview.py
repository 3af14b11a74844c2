"""Cheap step previews: latents to RGB by a linear map instead of a VAE decode.

The map is fitted once per loaded VAE, by least squares between a few random latents and
their decoded images averaged over each 8x8 block. That works for any VAE (the real one,
a fine-tune, the tiny test model) without shipping magic constants, and costs one small
decode the first time a preview is asked for.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from PIL import Image

FIT_SIZE = 8  # latent pixels per side of each fitting sample (a 64x64 image): cheap on any device


class LatentPreviewer:
    def __init__(self, vae):
        self.vae = vae
        self._matrix: np.ndarray | None = None  # [C + 1, 3]: weights and bias

    def fit(self) -> np.ndarray:
        c = self.vae.config.latent_channels
        # Spatially smooth samples (2x2 blocks), closer to real latents than white noise:
        # 128 equations for C + 1 unknowns per colour.
        coarse = mx.random.normal((2, FIT_SIZE // 2, FIT_SIZE // 2, c), key=mx.random.key(0))
        z = mx.repeat(mx.repeat(coarse, 2, axis=1), 2, axis=2)
        img = np.array(self.vae.decode(z.astype(self.vae_dtype), tile=0).astype(mx.float32))
        b, hh, ww, _ = img.shape
        f = hh // FIT_SIZE
        rgb = img.reshape(b, FIT_SIZE, f, FIT_SIZE, f, 3).mean(axis=(2, 4)).reshape(-1, 3)
        x = np.concatenate([np.array(z).reshape(-1, c), np.ones((rgb.shape[0], 1))], axis=1)
        self._matrix, *_ = np.linalg.lstsq(x, rgb, rcond=None)
        return self._matrix

    @property
    def vae_dtype(self):
        from mlx.utils import tree_flatten

        params = tree_flatten(self.vae.parameters())
        return params[0][1].dtype if params else mx.float32

    def __call__(self, latent: mx.array) -> Image.Image:
        """latent [h, w, C] in model space -> RGB PIL image of h x w pixels."""
        m = self._matrix if self._matrix is not None else self.fit()
        z = np.array(latent.astype(mx.float32))
        rgb = z @ m[:-1] + m[-1]
        arr = np.clip((rgb + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="RGB")
