"""Side-by-side: one denoising step and one VAE decode, mlx-flux vs mflux, same shapes and dtype.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 \\
        .venv/bin/python benchmarks/compare_mflux.py --size 512 --double-blocks 2 --single-blocks 2

Every measurement runs in its own subprocess (this script re-invoked with --worker), so
the peak memory of one engine never includes the other's buffers and both start from a
cold MLX cache. Weights are random (the real checkpoints are not needed to time a step):
FLUX.1's real width (3072 hidden, 24 heads of 128, 4096-d T5 states, 768-d pooled CLIP)
with fewer blocks, so a CPU run takes seconds. Prints a table and the ratios mflux/ours
(> 1 means we are faster or leaner); --json writes the raw numbers.

Both engines are timed on what a generation executes per step. For us that is
`Flux.step` with the conditioning (text projection, RoPE table, guidance embedding)
prepared once per generation, and MLX's buffer cache set as `FluxPipeline` sets it
(`memory.configure_cache`: on the CPU MLX otherwise keeps only 32 MB of freed buffers),
which is part of our design, not a benchmark trick. mflux recomputes the conditioning
inside its transformer call every step and runs with MLX's default cache; `--mflux-cache`
gives it our cache setting too, to separate that gain from the engine's own, and
`--low-memory` runs ours as a low-memory generation does (MLX's default cache, and
the VAE decode in tiles).
Peaks: MLX's peak of allocated memory, and the process's peak resident set (RSS), which
also counts cached buffers, the Python runtime and libraries.

`--kontext` times a FLUX.1 Kontext step: a reference image of the output's size rides along
(twice the image tokens, the reference's ids with first axis 1), as both engines run it.

`--loras N` applies N random LoRAs (rank `--lora-rank`, every linear layer of the blocks,
diffusers layout) from the same files to both engines before the steps are timed, and
reports the time applying them took ("apply": reading the files and setting them up; for us
`set_loras`' work, for mflux `load_and_apply_lora`). Ours are side paths (`mlx_flux.lora`);
mflux bakes them into its weights by default (`--mflux-bake`) or, with bake off, runs one
side path per LoRA.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GB = 1024**3
_CPU: list[float] = []  # CPU seconds (all threads) of the timed runs of this worker


# --- workers (one measurement per process) ------------------------------------------------------

def _inputs(args, mx):
    """Random packed latents, T5 states and pooled CLIP vector, shared shapes for both engines."""
    h = w = args.size
    n = (h // 16) * (w // 16)
    key = mx.random.key(0)
    k1, k2, k3 = mx.random.split(key, 3)
    img = mx.random.normal((1, n, 64), key=k1)
    txt = mx.random.normal((1, args.t5_length, 4096), key=k2)
    pooled = mx.random.normal((1, 768), key=k3)
    return img, txt, pooled


def _time_steps(run_step, args, mx) -> list[float]:
    """Warm up, then time `args.repeat` steps, each evaluated to completion."""
    for i in range(args.warmup):
        mx.eval(run_step(i))
    times, cpu = [], []
    for i in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        mx.eval(run_step(args.warmup + i))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    _CPU[:] = cpu
    return times


def _sigmas(steps: int) -> list[float]:
    return [1.0 - i / steps for i in range(steps + 1)]


def worker_step_ours(args) -> dict:
    import mlx.core as mx

    from mlx_flux import memory, sampler
    from mlx_flux.transformer import Flux, FluxConfig

    memory.configure_cache(args.low_memory)  # as FluxPipeline does
    dtype = getattr(mx, args.dtype)
    cfg = FluxConfig(depth=args.double_blocks, depth_single_blocks=args.single_blocks, guidance_embed=True)
    model = Flux(cfg)
    model.set_dtype(dtype)
    if args.quantize:
        from mlx_flux.quantize import quantize_module

        quantize_module(model, args.quantize)
    mx.eval(model.parameters())
    weights = mx.get_active_memory()
    applied = _apply_loras_ours(args, model, mx)
    img, txt, pooled = _inputs(args, mx)
    mx.eval(img, txt, pooled)
    mx.reset_peak_memory()
    img_ids = sampler.image_ids(args.size, args.size)
    if args.kontext:  # the reference's tokens (random latents) and ids, after the output's
        ref_ids = mx.concatenate([mx.ones_like(img_ids[:, :1]), img_ids[:, 1:]], axis=1)
        img_ids = mx.concatenate([img_ids, ref_ids], axis=0)
        img = mx.concatenate([img, mx.random.normal(img.shape, key=mx.random.key(7))], axis=1)
        mx.eval(img)
    cond = model.prepare(txt, pooled, img_ids, sampler.text_ids(args.t5_length), guidance=mx.array([3.5]))
    mx.eval(cond)
    sig = _sigmas(args.warmup + args.repeat)
    step = model.compiled_step if args.compile else model.step
    if args.kontext:
        n = img.shape[1] // 2
        full_step, step = step, lambda x, t, c: full_step(x, t, c)[:, :n]  # the output's velocity only
    with memory.bounded_steps(cfg, 1, img.shape[1] + args.t5_length):  # as FluxPipeline runs its steps
        times = _time_steps(lambda i: step(img, mx.array([sig[i]]), cond), args, mx)
    return {"seconds": times, "peak": mx.get_peak_memory(), "weights": weights, **applied}


def _lora_files(args) -> list[Path]:
    return sorted(Path(args.lora_dir).glob("*.safetensors"))[: args.loras] if args.loras else []


def _apply_loras_ours(args, model, mx) -> dict:
    """set_loras' work on the transformer: read the files, build and evaluate the side paths."""
    if not args.loras:
        return {}
    from mlx_flux.lora import ActiveLora, apply_loras
    from mlx_flux.lora_formats import read_lora

    t0 = time.perf_counter()
    apply_loras(model, [ActiveLora(read_lora(f), 0.8) for f in _lora_files(args)], "transformer")
    return {"apply_seconds": time.perf_counter() - t0}


def _apply_loras_mflux(args, model, mx) -> dict:
    if not args.loras:
        return {}
    from mflux.models.common.lora.mapping.lora_loader import LoRALoader
    from mflux.models.flux.weights.flux_lora_mapping import FluxLoRAMapping

    t0 = time.perf_counter()
    files = [str(f) for f in _lora_files(args)]
    LoRALoader.load_and_apply_lora(FluxLoRAMapping.get_mapping(), model, files, [0.8] * len(files),
                                   bake_lora=args.mflux_bake)
    mx.eval(model.parameters())
    return {"apply_seconds": time.perf_counter() - t0}


def make_lora_files(args) -> None:
    """N random LoRAs on every linear layer of the blocks, at FLUX.1's real width (diffusers layout)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import lora_files

    dims = lora_files.Dims(hidden=3072, mlp_ratio=4, in_channels=64, context=4096, vec=768,
                           depth=args.double_blocks, depth_single=args.single_blocks)
    targets = [t for t in lora_files.flux_targets(dims) if t.startswith(("double_blocks.", "single_blocks."))]
    Path(args.lora_dir).mkdir(parents=True, exist_ok=True)
    for i in range(args.loras):
        desc = lora_files.random_description(dims, rank=args.lora_rank, seed=i, clip=False, targets=targets)
        lora_files.write_diffusers(Path(args.lora_dir) / f"lora{i}.safetensors", dims, desc, alpha="fold")


def _mflux_cache(args) -> None:
    if args.mflux_cache:
        from mlx_flux import memory

        memory.configure_cache()


def worker_step_mflux(args) -> dict:
    import mlx.core as mx
    from mflux.models.common.config.config import Config
    from mflux.models.common.config.model_config import ModelConfig
    from mflux.models.flux.model.flux_transformer.transformer import Transformer

    _mflux_cache(args)
    dtype = getattr(mx, args.dtype)
    ModelConfig.precision = dtype  # mflux casts its timestep/guidance inputs to this
    model_config = ModelConfig.dev()
    model = Transformer(model_config, num_transformer_blocks=args.double_blocks,
                        num_single_transformer_blocks=args.single_blocks)
    model.set_dtype(dtype)
    if args.quantize:
        import mlx.nn as nn

        # mflux's own rule: every layer whose input width is a multiple of 64
        nn.quantize(model, bits=args.quantize, class_predicate=lambda _, m: hasattr(m, "to_quantized")
                    and m.weight.shape[1] % 64 == 0)
    mx.eval(model.parameters())
    weights = mx.get_active_memory()
    applied = _apply_loras_mflux(args, model, mx)
    img, txt, pooled = _inputs(args, mx)
    img, txt, pooled = img.astype(dtype), txt.astype(dtype), pooled.astype(dtype)
    mx.eval(img, txt, pooled)
    mx.reset_peak_memory()
    steps = args.warmup + args.repeat
    config = Config(model_config=model_config, num_inference_steps=steps, height=args.size, width=args.size,
                    guidance=3.5)

    kontext_ids = None
    if args.kontext:  # as mflux's FluxKontext (KontextUtil): the reference at the output's size, ids (1, row, col)
        side = args.size // 16
        rows, cols = mx.meshgrid(mx.arange(side), mx.arange(side), indexing="ij")
        kontext_ids = mx.stack([mx.ones((side, side)), rows, cols], axis=-1).reshape(1, side * side, 3)
        img = mx.concatenate([img, mx.random.normal(img.shape, key=mx.random.key(7)).astype(dtype)], axis=1)
        mx.eval(img, kontext_ids)
    n = img.shape[1] // (2 if args.kontext else 1)

    def run(i):
        out = model(t=i, config=config, hidden_states=img, prompt_embeds=txt, pooled_prompt_embeds=pooled,
                    kontext_image_ids=kontext_ids)
        return out[:, :n]

    times = _time_steps(run, args, mx)
    return {"seconds": times, "peak": mx.get_peak_memory(), "weights": weights, **applied}


def worker_vae_ours(args) -> dict:
    import mlx.core as mx

    from mlx_flux import memory
    from mlx_flux.autoencoder import AutoEncoder, AutoEncoderConfig

    memory.configure_cache(args.low_memory)  # as FluxPipeline does
    tile = memory.LOW_MEMORY_TILE if args.low_memory else None  # as FluxPipeline decodes
    dtype = getattr(mx, args.dtype)
    vae = AutoEncoder(AutoEncoderConfig())
    vae.set_dtype(dtype)
    mx.eval(vae.parameters())
    z = mx.random.normal((1, args.size // 8, args.size // 8, 16), key=mx.random.key(0))
    mx.eval(z)
    weights = mx.get_active_memory()
    mx.reset_peak_memory()
    times = _time_steps(lambda i: vae.decode(z, tile=tile), args, mx)
    return {"seconds": times, "peak": mx.get_peak_memory(), "weights": weights}


def worker_vae_mflux(args) -> dict:
    import mlx.core as mx
    from mflux.models.flux.model.flux_vae.vae import VAE

    _mflux_cache(args)
    dtype = getattr(mx, args.dtype)
    vae = VAE()
    vae.set_dtype(dtype)
    mx.eval(vae.parameters())
    z = mx.random.normal((1, 16, args.size // 8, args.size // 8), key=mx.random.key(0)).astype(dtype)
    mx.eval(z)
    weights = mx.get_active_memory()
    mx.reset_peak_memory()
    times = _time_steps(lambda i: vae.decode(z), args, mx)
    return {"seconds": times, "peak": mx.get_peak_memory(), "weights": weights}


WORKERS = {
    ("step", "ours"): worker_step_ours,
    ("step", "mflux"): worker_step_mflux,
    ("vae", "ours"): worker_vae_ours,
    ("vae", "mflux"): worker_vae_mflux,
}


# --- driver -------------------------------------------------------------------------------------

def run_worker(what: str, engine: str, argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--worker", f"{what}:{engine}", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": " | ".join(tail)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(r: dict) -> str:
    if "error" in r:
        return f"failed: {r['error']}"
    best, mean = min(r["seconds"]), sum(r["seconds"]) / len(r["seconds"])
    return (f"best {best:7.3f} s  mean {mean:7.3f} s  peak {r['peak'] / GB:6.2f} GB "
            f"(weights {r['weights'] / GB:5.2f} GB, above weights {(r['peak'] - r['weights']) / GB:5.2f} GB), "
            f"RSS peak {r['rss'] / GB:5.2f} GB"
            + (f", LoRAs applied in {r['apply_seconds']:.2f} s" if "apply_seconds" in r else ""))


def _merge(runs: list[dict]) -> dict:
    """All timed runs of one engine together; the highest peak (any run could have hit it)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"]}
    return {"seconds": [t for r in ok for t in r["seconds"]], "cpu_seconds": [t for r in ok for t in r["cpu_seconds"]],
            "peak": max(r["peak"] for r in ok), "weights": ok[0]["weights"], "rss": max(r["rss"] for r in ok)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512, help="image side in pixels (tokens = (size/16)^2)")
    p.add_argument("--t5-length", type=int, default=512, help="T5 sequence length (dev 512, schnell 256)")
    p.add_argument("--double-blocks", type=int, default=2)
    p.add_argument("--single-blocks", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--quantize", type=int, choices=[4, 8], help="quantize both transformers to N bits")
    p.add_argument("--compile", action="store_true", help="time our compiled step (mx.compile)")
    p.add_argument("--mflux-cache", action="store_true", help="give mflux our MLX buffer-cache setting too")
    p.add_argument("--low-memory", action="store_true",
                   help="ours as a low-memory generation runs (MLX's default cache, as mflux's; tiled decode)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="alternate the engines this many times")
    p.add_argument("--only", choices=["step", "vae"], help="run one of the two comparisons")
    p.add_argument("--vae-size", type=int, help="image side for the VAE decode (default: --size)")
    p.add_argument("--kontext", action="store_true", help="a Kontext step: a reference image's tokens ride along")
    p.add_argument("--loras", type=int, default=0, help="apply this many random LoRAs to both transformers")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--mflux-bake", action=argparse.BooleanOptionalAction, default=True,
                   help="mflux bakes LoRAs into its weights (its default) or keeps side paths (--no-mflux-bake)")
    p.add_argument("--lora-dir", help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        what, engine = args.worker.split(":")
        if what == "vae" and args.vae_size:
            args.size = args.vae_size
        result = WORKERS[(what, engine)](args)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        print(json.dumps(result | {"cpu_seconds": _CPU, "rss": rss}))
        return

    argv = [a for a in sys.argv[1:] if not a.startswith("--json")]
    if args.json:  # drop the value of --json too
        i = sys.argv.index("--json") if "--json" in sys.argv else None
        argv = [a for j, a in enumerate(sys.argv[1:], 1) if i is None or j not in (i, i + 1)]
    import mlx.core as mx

    if args.loras:
        import tempfile

        args.lora_dir = tempfile.mkdtemp(prefix="loras-")
        make_lora_files(args)
        argv += ["--lora-dir", args.lora_dir]
    print(f"mlx {mx.__version__} on {mx.default_device()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '-')}, load average {os.getloadavg()[0]:.1f}")
    print(f"shapes: {args.size}x{args.size} ({(args.size // 16) ** 2} image tokens), T5 {args.t5_length}, "
          f"{args.double_blocks} double + {args.single_blocks} single blocks at 3072 hidden, {args.dtype}"
          + (f", {args.quantize}-bit" if args.quantize else "") + (", compiled" if args.compile else "")
          + (", mflux with our cache setting" if args.mflux_cache else "")
          + (", ours as in low-memory mode" if args.low_memory else "")
          + (", Kontext (a reference image of the same size)" if args.kontext else "")
          + (f", {args.loras} LoRA(s) of rank {args.lora_rank} (mflux {'baked' if args.mflux_bake else 'side paths'})"
             if args.loras else ""))
    results: dict[str, dict] = {}
    for what in ("step", "vae"):
        if args.only and args.only != what:
            continue
        for rnd in range(args.rounds):  # alternate engines: a change in the machine's load hits both
            for engine in ("ours", "mflux"):
                r = run_worker(what, engine, argv)
                print(f"{what:4s} {engine:5s}  {_fmt(r)}", flush=True)
                acc = results.setdefault(f"{what}:{engine}", {"runs": []})
                acc["runs"].append(r)
        for engine in ("ours", "mflux"):
            results[f"{what}:{engine}"] |= _merge(results[f"{what}:{engine}"]["runs"])
        ours, theirs = results[f"{what}:ours"], results[f"{what}:mflux"]
        if "error" not in ours and "error" not in theirs:
            speed = min(theirs["seconds"]) / min(ours["seconds"])
            cpu = min(theirs["cpu_seconds"]) / min(ours["cpu_seconds"])
            mem = theirs["peak"] / ours["peak"]
            extra = (theirs["peak"] - theirs["weights"]) / max(1, ours["peak"] - ours["weights"])
            print(f"{what:4s} best of {args.rounds}x{args.repeat}: ours {min(ours['seconds']):.3f} s, "
                  f"mflux {min(theirs['seconds']):.3f} s; peak ours {ours['peak'] / GB:.2f} GB, "
                  f"mflux {theirs['peak'] / GB:.2f} GB")
            rss = theirs["rss"] / ours["rss"]
            print(f"{what:4s} ratio  mflux/ours: time {speed:.2f}x (CPU time {cpu:.2f}x), peak memory {mem:.2f}x, "
                  f"memory above weights {extra:.2f}x, RSS peak {rss:.2f}x", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results},
                                        indent=2, default=str))


if __name__ == "__main__":
    main()
