"""Images per minute for batches of 1, 2 and 4 against one-at-a-time runs, and warm start
(the first step after loading against the steady state, with and without `FluxPipeline.warmup`).

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 \\
        .venv/bin/python benchmarks/batch.py --size 256 --double-blocks 1 --single-blocks 1

The pipeline is the real one (tokenizers, text encoders, sampler, VAE decode to images) with
a transformer of FLUX.1's real width (3072 hidden, 24 heads of 128) but few blocks and random
weights, so a CPU run takes minutes; the text encoders and VAE are the tests' tiny random ones
(batching does not change their work). Every measurement runs in a fresh subprocess (this
script re-invoked with --worker), so a first step really is the first of a process.
--json writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROMPT = "a lighthouse on a cliff at dusk, oil painting"


# --- workers (one measurement per process) ------------------------------------------------------

def load_pipeline(args):
    """The pipeline on the tiny model's folder, its transformer swapped for a real-width one."""
    import mlx.core as mx

    from mlx_flux.autoencoder import load_autoencoder
    from mlx_flux.loading import find_files
    from mlx_flux.pipeline import FluxPipeline
    from mlx_flux.transformer import Flux, FluxConfig
    from mlx_flux.weights import default_dtype, parse_dtype

    dtype = parse_dtype(args.dtype) or default_dtype()
    files = find_files(args.model_dir)
    t5 = json.loads((Path(args.model_dir) / "text_encoder_2" / "config.json").read_text())
    clip = json.loads((Path(args.model_dir) / "text_encoder" / "config.json").read_text())
    config = FluxConfig(depth=args.double_blocks, depth_single_blocks=args.single_blocks,
                        context_in_dim=t5["d_model"], vec_in_dim=clip["hidden_size"])
    mx.random.seed(0)
    model = Flux(config)
    model.set_dtype(dtype)
    mx.eval(model.parameters())
    pipe = FluxPipeline(files, model, load_autoencoder(files.vae, dtype=dtype), dtype)
    pipe._text_encoders()  # eagerly, as from_pretrained does
    if args.compile is not None:
        pipe.compile = args.compile
    return pipe


def worker_throughput(args) -> dict:
    """N images either one `generate` at a time (batch 0) or by `generate_batch(max_batch=B)`."""
    import mlx.core as mx

    pipe = load_pipeline(args)
    pipe.warmup(args.size, args.size, batch=max(1, args.batch), force=True)  # first-run costs: see warmstart
    pipe.encode_prompt(PROMPT)
    mx.reset_peak_memory()
    seeds = list(range(args.images))
    opts = dict(width=args.size, height=args.size, steps=args.steps)
    t0 = time.perf_counter()
    if args.batch == 0:
        results = [pipe.generate(PROMPT, seed=s, **opts) for s in seeds]
        denoise = sum(r.timings["denoise"] for r in results)
        decode = sum(r.timings["decode"] for r in results)
    else:
        results = pipe.generate_batch(PROMPT, seeds=seeds, max_batch=args.batch, **opts)
        chunks = range(0, len(results), args.batch)  # results of one chunk share its timings
        denoise = sum(results[i].timings["denoise"] for i in chunks)
        decode = sum(results[i].timings["decode"] for i in chunks)
    total = time.perf_counter() - t0
    return {"total_s": total, "denoise_s": denoise, "decode_s": decode, "peak_gb": mx.get_peak_memory() / 1e9}


def worker_warmstart(args) -> dict:
    """Step times of the first generation after loading (with or without `warmup` before it)
    and of the next one, the steady state.

    A step's time runs from the previous step's report to its own (the first from the call of
    `generate`, so it includes the noise and the conditioning). The pipeline queues step k+1
    before reporting step k, so the first and last marks of a generation are skewed alike in
    every generation: compare first steps with first steps.
    """
    t0 = time.perf_counter()
    pipe = load_pipeline(args)
    load = time.perf_counter() - t0
    warm = pipe.warmup(args.size, args.size, force=True) if args.warm else 0.0  # the full warm-up, also on a CPU
    pipe.encode_prompt(PROMPT)  # the prompt's encoding is not a denoising step
    out = {"load_s": load, "warmup_s": warm}
    for name, seed in (("first", 1), ("next", 2)):
        marks: list[float] = []
        start = time.perf_counter()
        r = pipe.generate(PROMPT, seed=seed, width=args.size, height=args.size, steps=args.steps,
                          callback=lambda e: marks.append(time.perf_counter()))
        out[f"{name}_steps_s"] = [b - a for a, b in zip([start, *marks], marks)]
        out[f"{name}_denoise_s"] = r.timings["denoise"]
    return out


def worker_split_load(args) -> dict:
    """Memory one rank holds after loading its slice of the transformer (run under mlx.launch)."""
    from types import SimpleNamespace

    import mlx.core as mx

    from mlx_flux import distributed

    folder = Path(args.model_dir) / "transformer"
    files = SimpleNamespace(transformer=folder, transformer_config=json.loads((folder / "config.json").read_text()),
                            quantized=None)
    group = distributed.init_group()
    model = distributed.load_split_transformer(files, group.rank(), group.size(), mx.float32)
    return {"rank": group.rank(), "size": group.size(), "double": len(model.double_blocks),
            "single": len(model.single_blocks), "active_gb": mx.get_active_memory() / 1e9,
            "peak_gb": mx.get_peak_memory() / 1e9}


def ensure_split_model(folder: Path, double: int, single: int, hidden: int = 1024) -> Path:
    """A transformer folder (diffusers config, BFL tensor names) of `hidden` width, random weights."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_flux.transformer import Flux, FluxConfig

    target = folder / "transformer"
    if not (target / "config.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        heads = hidden // 128
        config = dict(num_layers=double, num_single_layers=single, attention_head_dim=128, num_attention_heads=heads,
                      joint_attention_dim=4096, pooled_projection_dim=768, in_channels=64, patch_size=1,
                      axes_dims_rope=[16, 56, 56])
        model = Flux(FluxConfig.from_diffusers(config))
        mx.eval(model.parameters())
        mx.save_safetensors(str(target / "diffusion_pytorch_model.safetensors"), dict(tree_flatten(model.parameters())))
        (target / "config.json").write_text(json.dumps(config))
    return folder


# --- driver -----------------------------------------------------------------------------------

def run_worker(args, mode: str, **extra) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--model-dir", str(args.model_dir),
           "--size", str(args.size), "--steps", str(extra.pop("steps", args.steps)),
           "--double-blocks", str(args.double_blocks), "--single-blocks", str(args.single_blocks)]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    if args.compile is not None and "compile" not in extra:
        cmd += ["--compile", "1" if args.compile else "0"]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker {mode} {extra} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ensure_model(folder: Path) -> Path:
    if not (folder / "model_index.json").is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        import tiny_models  # noqa: E402 - needs torch; only to write the tiny encoders and VAE once

        tiny_models.build_hf_layout(folder, "schnell")
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="image width and height")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--batches", default="1,2,4")
    p.add_argument("--double-blocks", type=int, default=1)
    p.add_argument("--single-blocks", type=int, default=1)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: bfloat16 on a GPU, float32 on the CPU")
    p.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "mlx-flux-bench-tiny")
    p.add_argument("--json", type=Path)
    p.add_argument("--skip", default="", help="comma list of parts to skip: throughput, warmstart, split")
    p.add_argument("--worker", choices=["throughput", "warmstart", "split-load"], help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--warm", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--compile", type=lambda s: s == "1", default=None,
                   help="1 or 0: force mx.compile of the step on or off (default: on for a GPU only)")
    args = p.parse_args()

    if args.worker:
        fn = {"throughput": worker_throughput, "warmstart": worker_warmstart, "split-load": worker_split_load}
        print(json.dumps(fn[args.worker](args)))
        return

    import mlx.core as mx

    ensure_model(args.model_dir)
    skip = set(filter(None, args.skip.split(",")))
    report: dict = {"device": str(mx.default_device()), "machine": platform.processor() or platform.machine(),
                    "mlx": mx.__version__, "args": {k: str(v) for k, v in vars(args).items() if k != "worker"}}
    print(f"device {report['device']}, mlx {report['mlx']}, {args.size}x{args.size}, {args.steps} steps, "
          f"{args.double_blocks} double + {args.single_blocks} single blocks of width 3072, "
          f"{args.dtype or 'default dtype'}")

    if "throughput" not in skip:
        rows = {}
        for batch in [0, *map(int, args.batches.split(","))]:
            r = run_worker(args, "throughput", batch=batch, images=args.images)
            rows["sequential" if batch == 0 else f"batch {batch}"] = r
        base = rows["sequential"]["total_s"]
        dbase = rows["sequential"]["denoise_s"]
        print(f"\n{args.images} images        | total s | img/min | vs seq | denoise s | denoise img/min | vs seq "
              f"| decode s | peak GB")
        for name, r in rows.items():
            print(f"{name:<17} | {r['total_s']:7.2f} | {60 * args.images / r['total_s']:7.2f} | "
                  f"{base / r['total_s']:5.2f}x | {r['denoise_s']:9.2f} | {60 * args.images / r['denoise_s']:15.2f} | "
                  f"{dbase / r['denoise_s']:5.2f}x | {r['decode_s']:8.2f} | {r['peak_gb']:7.2f}")
        report["throughput"] = rows

    if "warmstart" not in skip:
        rows = {}
        gpu = str(mx.default_device()).startswith("Device(gpu")
        cases = [("cold", dict(warm=0)), ("after warmup()", dict(warm=1))]
        # what the other choice of mx.compile does here (default: on for a GPU, off for the CPU)
        cases.append(("cold, no compile", dict(warm=0, compile=0)) if gpu else ("cold, compiled", dict(warm=0, compile=1)))
        print(f"\nwarm start ({args.steps} steps) | load s | warmup s | 1st generation: first step s, denoise s "
              f"| next generation: first step s, denoise s")
        for name, extra in cases:
            r = rows[name] = run_worker(args, "warmstart", **extra)
            print(f"{name:<20} | {r['load_s']:6.1f} | {r['warmup_s']:8.2f} | {r['first_steps_s'][0]:26.3f}, "
                  f"{r['first_denoise_s']:9.3f} | {r['next_steps_s'][0]:27.3f}, {r['next_denoise_s']:9.3f}")
        report["warmstart"] = rows

    if "split" not in skip:
        # Memory per rank under --split-model: a 1024-wide transformer of 4 double + 8 single
        # blocks, loaded whole by one process, then split across two ranks over loopback.
        folder = ensure_split_model(Path(tempfile.gettempdir()) / "mlx-flux-bench-split", 4, 8)
        worker = [sys.executable, __file__, "--worker", "split-load", "--model-dir", str(folder)]
        rows = [json.loads(subprocess.run(worker, capture_output=True, text=True, check=True).stdout.splitlines()[-1])]
        launch = [str(Path(sys.executable).parent / "mlx.launch"), "-n", "2", "--backend", "ring", "--", *worker]
        out = subprocess.run(launch, capture_output=True, text=True, check=True).stdout
        rows += sorted((json.loads(line) for line in out.splitlines() if line.startswith("{")), key=lambda r: r["rank"])
        print("\n--split-model    | blocks (double + single) | weights resident GB | peak while loading GB")
        for r in rows:
            name = "one process" if r["size"] == 1 else f"rank {r['rank']} of {r['size']}"
            print(f"{name:<16} | {r['double']:>9} + {r['single']:<12} | {r['active_gb']:19.2f} | {r['peak_gb']:.2f}")
        report["split"] = rows

    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
