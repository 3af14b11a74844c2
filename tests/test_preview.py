"""Step previews: a linear latent -> RGB map fitted to the loaded VAE."""

from __future__ import annotations

from types import SimpleNamespace

import mlx.core as mx
import numpy as np

from mlx_flux.autoencoder import load_autoencoder
from mlx_flux.preview import LatentPreviewer


class LinearDecoder:
    """A VAE whose decode is exactly linear per latent pixel, so the fit must recover it."""

    def __init__(self, seed: int = 0, channels: int = 16):
        rng = np.random.default_rng(seed)
        self.a = rng.standard_normal((channels, 3)).astype(np.float32) * 0.2
        self.b = np.array([0.1, -0.2, 0.3], np.float32)
        self.config = SimpleNamespace(latent_channels=channels)
        self.weight = mx.zeros((1,))

    def parameters(self):
        return {"weight": self.weight}

    def decode(self, z, tile=None):
        rgb = mx.array(np.array(z) @ self.a + self.b)
        return mx.repeat(mx.repeat(rgb, 8, axis=1), 8, axis=2)


def test_fit_recovers_a_linear_decoder():
    vae = LinearDecoder()
    previewer = LatentPreviewer(vae)
    m = previewer.fit()
    np.testing.assert_allclose(m[:-1], vae.a, atol=1e-4)
    np.testing.assert_allclose(m[-1], vae.b, atol=1e-4)
    z = mx.random.normal((5, 7, 16), key=mx.random.key(3)) * 0.5
    expected = np.clip((np.array(z) @ vae.a + vae.b + 1) * 127.5, 0, 255).round()
    assert np.abs(np.asarray(previewer(z), np.float32) - expected).max() <= 1


def test_preview_of_the_real_vae_is_small_and_cached(tiny_schnell):
    vae = load_autoencoder(tiny_schnell / "vae", dtype=mx.float32)
    previewer = LatentPreviewer(vae)
    image = previewer(mx.random.normal((6, 10, 16), key=mx.random.key(1)))
    assert image.size == (10, 6) and image.mode == "RGB"
    m = previewer._matrix
    assert m.shape == (17, 3) and np.isfinite(m).all()
    previewer(mx.zeros((2, 2, 16)))
    assert previewer._matrix is m
