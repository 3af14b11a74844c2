"""Peak memory and time of a FLUX-size VAE decode (random weights), tiled and untiled, and of
the encode an input image goes through (img2img, Kontext), against the same budget.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 \\
        python benchmarks/vae_memory.py [--sizes 512 1024] [--dtype float32] [--tile 64] \\
        [--modes untiled tiled auto encode]

(On Linux the mlx wheel bundles the reference BLAS; preloading OpenBLAS makes the
convolutions ~10x faster and does not change the memory.) Weights are random, so the
images are noise; memory and time do not depend on the values.
"""

from __future__ import annotations

import argparse
import time

import mlx.core as mx

from mlx_flux import autoencoder
from mlx_flux.autoencoder import AutoEncoder, AutoEncoderConfig
from mlx_flux.weights import parse_dtype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="image sides in pixels")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--tile", type=int, default=64, help="tile size in latent pixels for the tiled run")
    parser.add_argument("--modes", nargs="+", default=["untiled", "tiled"],
                        choices=["untiled", "tiled", "auto", "encode"])
    args = parser.parse_args()

    config = AutoEncoderConfig()  # FLUX.1: ch 128, mult [1,2,4,4], 16 latent channels
    vae = AutoEncoder(config)
    vae.set_dtype(parse_dtype(args.dtype))
    mx.eval(vae.parameters())
    weights = mx.get_active_memory()
    print(f"device {mx.default_device()}, dtype {args.dtype}, "
          f"weights (encoder+decoder) {weights / 2**20:.0f} MiB")
    print(f"{'size':>10} {'mode':>8} {'peak total':>11} {'peak - weights':>15} {'time':>8}")
    for size in args.sizes:
        f = config.downscale
        z = mx.random.normal((1, size // f, size // f, config.latent_channels), key=mx.random.key(0))
        mx.eval(z)
        estimate = vae.decode_bytes(z.shape)
        auto = "tiled" if estimate > autoencoder._TILE_ABOVE_BYTES else "untiled"
        print(f"{size}x{size}: untiled estimate {estimate / 2**30:.2f} GiB -> tile=None decodes {auto}")
        for mode in args.modes:
            mx.clear_cache()
            mx.reset_peak_memory()
            start = time.perf_counter()
            if mode == "encode":  # an input image, as FluxPipeline encodes it (posterior mean)
                out = vae.encode(mx.random.uniform(-1, 1, (1, size, size, 3), key=mx.random.key(1)))
                mx.eval(out)
                assert out.shape == z.shape
            else:
                out = vae.decode(z, tile={"untiled": 0, "tiled": args.tile, "auto": None}[mode])
                mx.eval(out)
                assert out.shape == (1, size, size, 3)
            seconds = time.perf_counter() - start
            peak = mx.get_peak_memory()
            del out
            print(f"{size:>4}x{size:<5} {mode:>8} {peak / 2**30:>9.2f} G "
                  f"{(peak - weights) / 2**30:>13.2f} G {seconds:>7.1f}s", flush=True)


if __name__ == "__main__":
    main()
