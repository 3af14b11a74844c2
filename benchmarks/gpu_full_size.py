"""Full-size FLUX.1-dev transformer step on a GPU: mlx-flux vs mflux (MLX CUDA) vs diffusers (PyTorch).

    python benchmarks/gpu_full_size.py                      # all engines, 19 + 38 blocks, 1024x1024, bf16
    python benchmarks/gpu_full_size.py --engines ours mflux
    python benchmarks/gpu_full_size.py --double-blocks 1 --single-blocks 1 --size 256 --t5-length 64 \\
        --dtype float32                                     # a quick check on a CPU

Random weights at the real shapes (12B parameters: 3072 hidden, 24 heads, 4096-d T5 states
of length 512, 768-d pooled CLIP, guidance embedding), so no checkpoint is needed. Each
engine runs in its own subprocess (its peak memory is its own) and is timed the same way:
`--warmup` steps, then `--steps` steps each evaluated to completion (a host sync per step,
as every engine's sampling loop does), reporting seconds per step and the peak memory
above nothing (weights included). Engines: `ours` (mlx-flux, `Flux.compiled_step`, what
the pipeline runs on a GPU), `ours-eager` (`Flux.step`), `ours-bounded` (the compiled step
with `memory.eval_headroom` forced on, as the CPU has it by default: to decide whether GPUs
should), `mflux`, `diffusers` (PyTorch).
Engines whose package is missing are reported as such and skipped. See BENCHMARKS.md for
how to run this on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GB = 1e9  # decimal GB, as nvidia-smi and the reference numbers use


def _sigmas(n: int) -> list[float]:
    return [1.0 - 0.9 * i / n for i in range(n + 1)]


# --- MLX engines ------------------------------------------------------------------------------

def _mlx_init(model, blocks, mx, dtype):
    """Cast the lazy random init to `dtype` and evaluate block by block (no float32 copy of 12B)."""
    model.set_dtype(dtype)
    for b in blocks:
        mx.eval(b.parameters())
    mx.eval(model.parameters())


def _mlx_inputs(args, mx, dtype):
    n = (args.size // 16) ** 2
    k = mx.random.split(mx.random.key(0), 3)
    img = mx.random.normal((1, n, 64), key=k[0])
    txt = mx.random.normal((1, args.t5_length, 4096), key=k[1]).astype(dtype)
    pooled = mx.random.normal((1, 768), key=k[2]).astype(dtype)
    return img, txt, pooled


def _mlx_time(run, args, mx) -> dict:
    weights = mx.get_active_memory()
    mx.reset_peak_memory()
    sig = _sigmas(args.warmup + args.steps)
    x = None
    t_first = time.perf_counter()
    for i in range(args.warmup):
        x = run(i, sig[i], sig[i + 1], x)
        mx.eval(x)
    first = time.perf_counter() - t_first
    t0 = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        x = run(i, sig[i], sig[i + 1], x)
        mx.eval(x)
    per_step = (time.perf_counter() - t0) / args.steps
    return {"seconds_per_step": per_step, "warmup_seconds": first, "peak_bytes": mx.get_peak_memory(),
            "weight_bytes": weights, "device": str(mx.default_device())}


def worker_ours(args, compiled: bool, bounded: bool = False) -> dict:
    import os

    if bounded:
        os.environ["MLX_FLUX_BOUNDED_EVAL"] = "1"
    import mlx.core as mx

    from mlx_flux import memory, sampler
    from mlx_flux.transformer import Flux, FluxConfig

    dtype = getattr(mx, args.dtype)
    model = Flux(FluxConfig(depth=args.double_blocks, depth_single_blocks=args.single_blocks, guidance_embed=True))
    _mlx_init(model, (*model.double_blocks, *model.single_blocks), mx, dtype)
    img, txt, pooled = _mlx_inputs(args, mx, dtype)
    cond = model.prepare(txt, pooled, sampler.image_ids(args.size, args.size), sampler.text_ids(args.t5_length),
                         guidance=mx.array([3.5]))
    mx.eval(img, cond)
    step = model.compiled_step if compiled else model.step

    def run(i, t, t_next, x):  # one Euler step, exactly as sampler.denoise does it
        x = img if x is None else x
        v = step(x.astype(dtype), mx.array([t], dtype=mx.float32), cond).astype(mx.float32)
        return x + (t_next - t) * v

    # as FluxPipeline runs its steps: bounded by default on the CPU, forced by `bounded`
    with memory.bounded_steps(model.config, 1, img.shape[1] + args.t5_length):
        return _mlx_time(run, args, mx)


def worker_mflux(args) -> dict:
    import mlx.core as mx
    from mflux.models.common.config.config import Config
    from mflux.models.common.config.model_config import ModelConfig
    from mflux.models.flux.model.flux_transformer.transformer import Transformer

    dtype = getattr(mx, args.dtype)
    ModelConfig.precision = dtype
    model_config = ModelConfig.dev()
    model = Transformer(model_config, num_transformer_blocks=args.double_blocks,
                        num_single_transformer_blocks=args.single_blocks)
    _mlx_init(model, (*model.transformer_blocks, *model.single_transformer_blocks), mx, dtype)
    img, txt, pooled = _mlx_inputs(args, mx, dtype)
    mx.eval(img)
    config = Config(model_config=model_config, num_inference_steps=args.warmup + args.steps, height=args.size,
                    width=args.size, guidance=3.5)

    def run(i, t, t_next, x):  # mflux's loop: transformer(t=i, ...), then the Euler update
        x = img if x is None else x
        v = model(t=i, config=config, hidden_states=x.astype(dtype), prompt_embeds=txt, pooled_prompt_embeds=pooled)
        return x + (t_next - t) * v.astype(mx.float32)

    return _mlx_time(run, args, mx)


# --- PyTorch reference --------------------------------------------------------------------------

def worker_diffusers(args) -> dict:
    import torch
    from diffusers import FluxTransformer2DModel

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    # initialise directly on the device in the target dtype (a float32 12B model on the host is 48 GB)
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = FluxTransformer2DModel(num_layers=args.double_blocks, num_single_layers=args.single_blocks,
                                       guidance_embeds=True).eval()
    torch.set_default_dtype(torch.float32)
    n = (args.size // 16) ** 2
    h = w = args.size // 16
    img_ids = torch.zeros(h, w, 3, device=device)
    img_ids[..., 1] = torch.arange(h, device=device)[:, None]
    img_ids[..., 2] = torch.arange(w, device=device)[None, :]
    img_ids = img_ids.reshape(n, 3)
    txt_ids = torch.zeros(args.t5_length, 3, device=device)
    x0 = torch.randn(1, n, 64, device=device, dtype=torch.float32)
    txt = torch.randn(1, args.t5_length, 4096, device=device, dtype=dtype)
    pooled = torch.randn(1, 768, device=device, dtype=dtype)
    guidance = torch.full((1,), 3.5, device=device, dtype=torch.float32)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        weights = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    sig = _sigmas(args.warmup + args.steps)

    def run(i, x):
        t = torch.full((1,), sig[i], device=device, dtype=torch.float32)
        v = model(hidden_states=x.to(dtype), encoder_hidden_states=txt, pooled_projections=pooled, timestep=t,
                  img_ids=img_ids, txt_ids=txt_ids, guidance=guidance, return_dict=False)[0]
        return x + (sig[i + 1] - sig[i]) * v.float()

    with torch.inference_mode():
        x = x0
        t_first = time.perf_counter()
        for i in range(args.warmup):
            x = run(i, x)
            sync()
        first = time.perf_counter() - t_first
        t0 = time.perf_counter()
        for i in range(args.warmup, args.warmup + args.steps):
            x = run(i, x)
            sync()
        per_step = (time.perf_counter() - t0) / args.steps
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return {"seconds_per_step": per_step, "warmup_seconds": first, "peak_bytes": peak,
            "weight_bytes": weights if device == "cuda" else 0, "device": device}


WORKERS = {
    "ours": lambda a: worker_ours(a, compiled=True),
    "ours-eager": lambda a: worker_ours(a, compiled=False),
    "ours-bounded": lambda a: worker_ours(a, compiled=True, bounded=True),
    "mflux": worker_mflux,
    "diffusers": worker_diffusers,
}


# --- driver -------------------------------------------------------------------------------------

def _run(engine: str, argv: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, *argv]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": " | ".join(lines[-3:])}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", nargs="+", default=["ours", "ours-bounded", "ours-eager", "mflux", "diffusers"],
                   choices=list(WORKERS))
    p.add_argument("--double-blocks", type=int, default=19)
    p.add_argument("--single-blocks", type=int, default=38)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--t5-length", type=int, default=512)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--timeout", type=float, default=300, help="seconds allowed per engine")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return

    skip = {"--engines", "--json", "--timeout"}
    argv, drop = [], False
    for a in sys.argv[1:]:
        if a.startswith("--"):
            drop = a in skip
        if not drop:
            argv.append(a)
    print(f"{platform.node()} {platform.machine()}, python {platform.python_version()}; "
          f"{args.double_blocks} double + {args.single_blocks} single blocks, {args.size}x{args.size}, "
          f"T5 {args.t5_length}, {args.dtype}, {args.warmup} warm-up + {args.steps} timed steps", flush=True)
    results = {}
    for engine in args.engines:
        r = results[engine] = _run(engine, argv, args.timeout)
        if "error" in r:
            print(f"{engine:12s} failed: {r['error']}", flush=True)
        else:
            print(f"{engine:12s} {r['seconds_per_step']:8.4f} s/step  peak {r['peak_bytes'] / GB:6.2f} GB "
                  f"(weights {r['weight_bytes'] / GB:6.2f} GB)  first {args.warmup} steps "
                  f"{r['warmup_seconds']:6.1f} s  [{r['device']}]", flush=True)
    base = results.get("ours", {})
    if "seconds_per_step" in base:
        for engine, r in results.items():
            if engine != "ours" and "seconds_per_step" in r:
                mem = f", peak memory {r['peak_bytes'] / base['peak_bytes']:.2f}x" if base["peak_bytes"] else ""
                print(f"{engine}/ours: time {r['seconds_per_step'] / base['seconds_per_step']:.2f}x{mem}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "json"},
                                         "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
