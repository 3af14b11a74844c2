"""How much a denoising step may queue ahead: peak memory and time per headroom, in one process.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 \\
        .venv/bin/python benchmarks/step_headroom.py --size 1024 --headroom 0,1.5,2,3 --rounds 2

MLX queues a graph's operations far ahead of what has run, each with its output already
allocated, so a step's peak holds the temporaries of several blocks. `memory.eval_headroom`
caps what may be queued beyond the resident memory; `memory.STEP_HEADROOM` (in units of a
single block's largest activation, batch x tokens x (3 hidden + mlp hidden) float32) is
chosen here. Headroom 0 means MLX's default (no cap). The settings alternate step by step
in one process (same weights, same inputs), so the machine's drift hits all of them alike.
Random weights at FLUX.1's real width, as in compare_mflux.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GB = 1024**3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--t5-length", type=int, default=512)
    p.add_argument("--double-blocks", type=int, default=1)
    p.add_argument("--single-blocks", type=int, default=1)
    p.add_argument("--headroom", default="0,1.5,2,3",
                   help="comma-separated multiples of a block's largest activation (0: no cap)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    import mlx.core as mx

    from mlx_flux import memory, sampler
    from mlx_flux.transformer import Flux, FluxConfig

    memory.configure_cache()  # as FluxPipeline does
    cfg = FluxConfig(depth=args.double_blocks, depth_single_blocks=args.single_blocks, guidance_embed=True)
    model = Flux(cfg)
    mx.eval(model.parameters())
    n = (args.size // 16) ** 2
    keys = mx.random.split(mx.random.key(0), 3)
    img = mx.random.normal((1, n, cfg.in_channels), key=keys[0])
    txt = mx.random.normal((1, args.t5_length, cfg.context_in_dim), key=keys[1])
    pooled = mx.random.normal((1, cfg.vec_in_dim), key=keys[2])
    ids = sampler.image_ids(args.size, args.size), sampler.text_ids(args.t5_length)
    cond = model.prepare(txt, pooled, *ids, guidance=mx.array([3.5]))
    mx.eval(img, cond)
    unit = memory.block_activation_bytes(cfg, 1, n + args.t5_length)
    resident = mx.get_active_memory()
    print(f"{mx.default_device()}, {args.size}x{args.size}, T5 {args.t5_length}, {args.double_blocks} double + "
          f"{args.single_blocks} single blocks, float32; one unit = {unit / GB:.3f} GiB, "
          f"resident {resident / GB:.2f} GiB")

    def step() -> None:
        mx.eval(model.step(img, mx.array([0.5]), cond))

    step()  # warm: caches filled
    settings = [float(h) for h in args.headroom.split(",")]
    results: dict[float, list[tuple[float, int]]] = {h: [] for h in settings}
    for _ in range(args.rounds):
        for h in settings:
            with memory.eval_headroom(int(h * unit) if h else None):
                mx.reset_peak_memory()
                t0 = time.perf_counter()
                step()
                results[h].append((time.perf_counter() - t0, mx.get_peak_memory() - resident))
    for h in settings:
        times = [t for t, _ in results[h]]
        peak = max(m for _, m in results[h])
        label = f"{h:g} units" if h else "no cap"
        print(f"  {label:10s} step best {min(times):7.2f} s  mean {sum(times) / len(times):7.2f} s  "
              f"peak above resident {peak / GB:.3f} GiB")


if __name__ == "__main__":
    main()
