"""Where a float32 CPU step goes: one double block, stage by stage, at FLUX.1's real width.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 \\
        .venv/bin/python benchmarks/cpu_profile.py                  # as the pipeline runs it
    MLX_FLUX_FANOUT=0 ... benchmarks/cpu_profile.py --mlx-cache    # no fan-out, MLX's 32 MB cache

Random weights (3072 hidden, 24 heads of 128), 512x512 image (1024 tokens) + 512 T5 tokens.
Each stage is evaluated before the next starts, so the times add up to more than a real
step's (which overlaps nothing across stages either on the CPU, but skips the syncs).
Matrix products run on OpenBLAS's threads; everything else on MLX's CPU kernels, which use
one thread each: `mlx_flux.fanout` spreads GELU and attention heads over one CPU stream per
core, and `memory.configure_cache` keeps the step's buffers between steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--t5-length", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3, help="timed passes after one warm-up (best is kept)")
    p.add_argument("--mlx-cache", action="store_true", help="leave MLX's CPU buffer cache at its default")
    args = p.parse_args()

    import mlx.core as mx

    from mlx_flux import fanout, memory, sampler
    from mlx_flux.fanout import concat_fan_out
    from mlx_flux import layers as L
    from mlx_flux.transformer import Flux, FluxConfig

    if not args.mlx_cache:
        memory.configure_cache()
    model = Flux(FluxConfig(depth=1, depth_single_blocks=0, guidance_embed=True))
    mx.eval(model.parameters())
    block, n, L_txt = model.double_blocks[0], (args.size // 16) ** 2, args.t5_length
    k = mx.random.split(mx.random.key(0), 3)
    img0, txt0 = mx.random.normal((1, n, 3072), key=k[0]), mx.random.normal((1, L_txt, 3072), key=k[1])
    vec = mx.random.normal((1, 3072), key=k[2])
    ids = mx.concatenate([sampler.text_ids(L_txt), sampler.image_ids(args.size, args.size)])[None]
    pe = L.embed_nd(ids, (16, 56, 56), 10000.0)[:, None]
    mx.eval(img0, txt0, vec, pe)

    times: dict[str, list[float]] = {}

    def stage(name: str, *arrays: mx.array) -> None:
        mx.eval(*arrays)
        now = time.perf_counter()
        times.setdefault(name, []).append(now - stage.t)
        stage.t = now

    for _ in range(args.repeat + 1):
        stage.t = time.perf_counter()
        img, txt = img0, txt0
        (im1, im2), (tm1, tm2) = block.img_mod(vec), block.txt_mod(vec)
        a = L.modulate(L.layer_norm(img), im1.shift, im1.scale)
        b = L.modulate(L.layer_norm(txt), tm1.shift, tm1.scale)
        stage("norms, modulation (attn)", a, b)
        qa, qb = block.img_attn.qkv(a), block.txt_attn.qkv(b)
        stage("matmul: qkv", qa, qb)
        (iq, ik, iv), (tq, tk, tv) = L.split_heads(qa, 24), L.split_heads(qb, 24)
        (iq, ik), (tq, tk) = block.img_attn.norm(iq, ik, iv), block.txt_attn.norm(tq, tk, tv)
        q, kk, v = (mx.concatenate(p, axis=2) for p in ((tq, iq), (tk, ik), (tv, iv)))
        stage("qk norm, joint sequence", q, kk, v)
        att = L.attention(q, kk, v, pe)
        stage("attention (RoPE, softmax)", att)
        pi, pt = block.img_attn.proj(att[:, L_txt:]), block.txt_attn.proj(att[:, :L_txt])
        img, txt = img + im1.gate * pi, txt + tm1.gate * pt
        stage("matmul: out projection", img, txt)
        a = L.modulate(L.layer_norm(img), im2.shift, im2.scale)
        b = L.modulate(L.layer_norm(txt), tm2.shift, tm2.scale)
        stage("norms, modulation (MLP)", a, b)
        h1, h2 = block.img_mlp[0](a), block.txt_mlp[0](b)
        stage("matmul: MLP in", h1, h2)
        g1, g2 = (concat_fan_out(L.gelu_tanh, [h], axis=-1, out_axis=-1) for h in (h1, h2))  # as layers._mlp
        stage("GELU", g1, g2)
        img, txt = img + im2.gate * block.img_mlp[2](g1), txt + tm2.gate * block.txt_mlp[2](g2)
        stage("matmul: MLP out", img, txt)

    best = {name: min(ts[1:]) for name, ts in times.items()}  # the first pass is the warm-up
    total = sum(best.values())
    streams = len(fanout.cpu_streams()) if fanout.enabled() else 0
    print(f"one double block, {n} image + {L_txt} text tokens, float32, fan-out streams: {streams or 'off'}, "
          f"MLX cache limit: {'default (32 MB)' if args.mlx_cache else 'configured'}")
    for name, t in best.items():
        print(f"  {name:28s} {t:6.3f} s  {100 * t / total:5.1f}%")
    print(f"  {'total':28s} {total:6.3f} s")


if __name__ == "__main__":
    main()
