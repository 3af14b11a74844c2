"""Where the GPU step's memory goes: peaks of attention alone, of one block, and of chains of blocks.

    python3 benchmarks/gpu_memory_probe.py                 # FLUX.1 shapes: 1024x1024, T5 512, bf16
    python3 benchmarks/gpu_memory_probe.py --size 256 --t5-length 64 --dtype float32   # a CPU check

BENCHMARKS.md records our full-size step holding 11.8 GB above the weights on an H200 against
mflux's 7.3 GB. This script separates the suspects, each measured as MLX's peak above what
was resident before it (random weights at the real width, 3072 hidden, 24 heads of 128):
  - `scaled_dot_product_attention` alone at the joint sequence length, in the model dtype and in
    float32 (what mflux's float32 q/k lead to): a peak near 24 x S^2 x itemsize means the
    backend materialised the scores instead of taking a fused path;
  - one double and one single block, eager and under `mx.compile`;
  - chains of 1, 2, 4 and 8 single blocks evaluated as one graph: a peak growing with the depth
    means the temporaries of several blocks are alive at once (graph lifetime, run-ahead
    allocation), a flat one that a single block is the whole story.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GB = 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--t5-length", type=int, default=512)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--depths", default="1,2,4,8", help="single-block chain lengths")
    args = p.parse_args()

    import mlx.core as mx

    from mlx_flux import layers as L
    from mlx_flux import sampler

    dtype = getattr(mx, args.dtype)
    S_img, S_txt = (args.size // 16) ** 2, args.t5_length
    S = S_img + S_txt
    ids = mx.concatenate([sampler.text_ids(S_txt), sampler.image_ids(args.size, args.size)])[None]
    pe = L.embed_nd(ids, (16, 56, 56), 10000.0)[:, None]
    keys = mx.random.split(mx.random.key(0), 4)
    print(f"{mx.default_device()}, {args.size}x{args.size} ({S_img} image + {S_txt} text tokens), {args.dtype}")

    def peak(name: str, fn, *inputs) -> None:
        mx.eval(fn(*inputs))  # warm: kernels compiled, caches filled
        mx.synchronize()
        base = mx.get_active_memory()
        mx.reset_peak_memory()
        out = fn(*inputs)
        mx.eval(out)
        mx.synchronize()
        print(f"  {name:50s} peak above inputs {(mx.get_peak_memory() - base) / GB:7.3f} GB", flush=True)

    q, k, v = (mx.random.normal((1, 24, S, 128), key=kk).astype(dtype) for kk in keys[:3])
    mx.eval(q, k, v, pe)
    scores = 24 * S * S
    print(f"  (24 x S^2 scores: {scores * dtype.size / GB:.2f} GB in {args.dtype}, {scores * 4 / GB:.2f} GB in float32)")
    sdpa = lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=128**-0.5)
    peak(f"sdpa, {args.dtype}", sdpa, q, k, v)
    peak("sdpa, float32 q and k (as mflux's RoPE returns)", sdpa, q.astype(mx.float32), k.astype(mx.float32), v)
    peak("attention() with RoPE (ours)", L.attention, q, k, v, pe)
    del q, k, v

    double = L.DoubleStreamBlock(3072, 24, 4.0)
    single = L.SingleStreamBlock(3072, 24, 4.0)
    double.set_dtype(dtype)
    single.set_dtype(dtype)
    mx.eval(double.parameters(), single.parameters())
    img = mx.random.normal((1, S_img, 3072), key=keys[3]).astype(dtype)
    txt = mx.random.normal((1, S_txt, 3072)).astype(dtype)
    vec = mx.random.normal((1, 3072)).astype(dtype)
    x = mx.concatenate([txt, img], axis=1)
    mx.eval(img, txt, vec, x)
    peak("double block, eager", double, img, txt, vec, pe)
    peak("double block, compiled", mx.compile(double), img, txt, vec, pe)
    peak("single block, eager", single, x, vec, pe)
    peak("single block, compiled", mx.compile(single), x, vec, pe)

    def chain(n: int):
        def run(x, vec, pe):
            for _ in range(n):  # the same weights n times: the activations are what is measured
                x = single(x, vec, pe)
            return x
        return run

    for n in (int(d) for d in args.depths.split(",")):
        peak(f"{n} single blocks in one graph, eager", chain(n), x, vec, pe)
        peak(f"{n} single blocks in one graph, compiled", mx.compile(chain(n)), x, vec, pe)


if __name__ == "__main__":
    main()
