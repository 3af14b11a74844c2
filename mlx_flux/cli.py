"""The `mlx-flux` command line: generate, info, download, quantize.

Every user error ends in one line on stderr and a non-zero exit status, never a traceback,
and never a partial output file.
"""

from __future__ import annotations

import argparse
import os
import secrets
import string
import sys
import time
from pathlib import Path
from typing import Sequence

from . import __version__
from .console import StatusLine

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlx-flux", description="FLUX.1 text-to-image on MLX.")
    parser.add_argument("--version", action="version", version=f"mlx-flux {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="make images from a prompt")
    g.add_argument("--model", "-m", required=True,
                   help="model folder, BFL single .safetensors file, or hub repo id (schnell, dev)")
    g.add_argument("--base", help="with a single file: folder or repo id with text encoders and VAE")
    g.add_argument("--prompt", "-p", required=True)
    g.add_argument("--width", type=int, help="default 1024, or the input image's own size (multiples of 16)")
    g.add_argument("--height", type=int, help="default 1024, or the input image's own size (multiples of 16)")
    g.add_argument("--steps", type=int, help="denoising steps (default: schnell 4, dev 28)")
    g.add_argument("--guidance", type=float, help="guidance scale for dev models (default 3.5)")
    seeds = g.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="random seed (default: random)")
    seeds.add_argument("--seeds", help="comma-separated seeds, one image each, e.g. 1,2,3")
    seeds.add_argument("--count", type=int, help="number of images from consecutive random seeds")
    g.add_argument("--quantize", "-q", type=_quantize_choice, metavar="{4,8,auto}",
                   help="quantize transformer and T5 (auto: the highest precision that fits this machine)")
    g.add_argument("--force", action="store_true",
                   help="load the model even if it cannot fit this machine's memory (it may swap heavily)")
    g.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: bfloat16 on GPU, float32 on CPU")
    g.add_argument("--low-memory", action="store_true",
                   help="free the text encoders after encoding, decode in tiles (default: when memory is short)")
    g.add_argument("--output", "-o", default="flux-{seed}.png", help="output PNG; may contain {seed}")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    _lora_flag(g)
    g.add_argument("--image", help="an input image: img2img's start, the image a Kontext model edits, "
                   "or the image a Fill model repaints (--mask) or extends (--expand)")
    g.add_argument("--mask", help="a Fill model's inpainting mask: white is repainted, black kept "
                   "(resized to the image's size if it differs)")
    g.add_argument("--expand", help="a Fill model's outpainting: pixels added on each side, L,T,R,B "
                   "(multiples of 16; the output is larger, so no --width/--height)")
    g.add_argument("--strength", type=float,
                   help="img2img: how much of the schedule runs, in (0, 1] (default 0.6; 1 = text-to-image; "
                   "Fill: default 1)")
    g.add_argument("--split-model", action="store_true",
                   help="under mlx.launch: split the transformer's blocks across ranks")
    g.add_argument("--quiet", action="store_true", help="no progress output")

    i = sub.add_parser("info", help="print the generation parameters stored in an image")
    i.add_argument("image")

    d = sub.add_parser("download", help="fetch a model into the Hugging Face cache")
    d.add_argument("model", help="hub repo id, or schnell / dev")

    q = sub.add_parser("quantize", help="write a quantized copy of a model")
    q.add_argument("model")
    q.add_argument("--bits", type=int, choices=[4, 8], required=True)
    q.add_argument("--output", required=True, help="folder to create")
    q.add_argument("--base", help="with a single file: folder or repo id with text encoders and VAE")
    _lora_flag(q, "bake into the quantized model (recorded in its manifest)")
    return parser


def _quantize_choice(text: str) -> int | str:
    if text in ("4", "8", "auto"):
        return text if text == "auto" else int(text)
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from 4, 8, auto)")


def _input_image(args):
    """--image read and checked before any model is loaded (its errors are the user's)."""
    if args.image is None:
        return None
    from .images import load_image

    return load_image(args.image)


def _mask_image(args):
    """--mask read and checked before any model is loaded."""
    if args.mask is None:
        return None
    if args.image is None:
        raise UsageError("--mask marks what to repaint in an --image: give one too")
    from .images import load_image

    return load_image(args.mask)


def _expand(value: str | None) -> tuple[int, int, int, int] | None:
    """--expand L,T,R,B as four ints."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    try:
        sides = tuple(int(p) for p in parts)
    except ValueError:
        sides = ()
    if len(sides) != 4:
        raise UsageError(f"--expand takes four whole numbers of pixels, left,top,right,bottom (e.g. 0,0,256,0), "
                         f"not {value!r}")
    return sides


def _lora_flag(parser: argparse.ArgumentParser, what: str = "apply") -> None:
    parser.add_argument("--lora", nargs="+", action="append", metavar=("PATH", "SCALE"), default=[],
                        help=f"a LoRA to {what}: a .safetensors file or a hub reference (owner/repo or "
                             "owner/repo:file.safetensors), with an optional scale (default 1.0, may be "
                             "negative); repeatable")


def _loras(args) -> list[tuple[str, float]]:
    """--lora PATH [SCALE] ... as (source, scale) pairs."""
    pairs = []
    for values in args.lora:
        if len(values) > 2:
            raise UsageError(f"--lora takes a path and at most one scale, not {' '.join(values)!r}")
        source, scale = values[0], values[1] if len(values) == 2 else "1.0"
        try:
            value = float(scale)
        except ValueError:
            raise UsageError(f"--lora {source}: the scale must be a number, not {scale!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise UsageError(f"--lora {source}: the scale must be a finite number, not {scale!r}")
        pairs.append((source, value))
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return {"generate": cmd_generate, "info": cmd_info, "download": cmd_download,
                "quantize": cmd_quantize}[args.command](args)
    except BrokenPipeError:
        # the reader went away (`mlx-flux info x.png | head -1`): stop quietly, as other tools do
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        print("mlx-flux: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the one place that turns errors into a message
        from .errors import FluxError

        if isinstance(e, (FluxError, UsageError, OSError, ValueError)):
            print(f"mlx-flux: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_ERROR
        raise


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.strerror or e}: {e.filename}"
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --- generate ----------------------------------------------------------------------------

MAX_COUNT = 10_000  # images one command makes; far more than a night's work at any size


def _seed_list(args) -> list[int]:
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise UsageError(f"--seeds must be comma-separated integers, not {args.seeds!r}") from None
        if not seeds:
            raise UsageError("--seeds is empty")
        if len(seeds) > MAX_COUNT:
            raise UsageError(f"--seeds lists {len(seeds)} seeds; at most {MAX_COUNT} images per command")
        repeated = sorted({s for s in seeds if seeds.count(s) > 1}) if len(set(seeds)) < len(seeds) else []
        if repeated:
            raise UsageError(f"--seeds lists {repeated[0]} more than once (the same seed makes the same image)")
        return seeds
    if args.count is not None:
        if not 1 <= args.count <= MAX_COUNT:
            raise UsageError(f"--count must be from 1 to {MAX_COUNT}, not {args.count}")
        start = secrets.randbelow(2**32 - args.count)
        return list(range(start, start + args.count))
    return [args.seed if args.seed is not None else secrets.randbelow(2**32)]


def _check_template(template: str) -> None:
    """--output may hold the literal placeholder {seed} and nothing else: no format spec
    (`{seed:>999999999}` would write a gigabyte), no attribute or index (`{seed.__class__}`)."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None]
    except ValueError:
        fields = [("", "", None)]
    if any(f != ("seed", "", None) for f in fields):
        raise UsageError(f"--output may only contain the placeholder {{seed}}: {template!r}")


def _output_paths(template: str, seeds: list[int], overwrite: bool) -> list[Path]:
    _check_template(template)
    if len(seeds) > 1 and "{seed}" not in template:
        raise UsageError("with several seeds, --output must contain {seed}")
    paths = [Path(template.format(seed=s)).expanduser() for s in seeds]
    for p in paths:
        if p.suffix.lower() != ".png":
            raise UsageError(f"output must be a .png file: {p}")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise UsageError(f"output folder does not exist: {parent}")
        if not os.access(parent, os.W_OK):
            raise UsageError(f"output folder is not writable: {parent}")
        if p.is_dir():
            raise UsageError(f"{p} is a folder, not a file")
        if p.exists() and not overwrite:
            raise UsageError(f"{p} exists; pass --overwrite to replace it")
    return paths


def _request(args, seeds: list[int]):
    """The typed request behind the arguments, checked before anything is loaded."""
    from .request import GenerationRequest

    expand = _expand(args.expand)
    request = GenerationRequest(args.prompt, width=args.width, height=args.height, steps=args.steps,
                                guidance=args.guidance, strength=args.strength, expand=expand)
    if args.strength is not None and args.image is None:
        raise UsageError("--strength is for img2img: give an --image too")
    if expand is not None:
        if args.image is None:
            raise UsageError("--expand extends an --image: give one too")
        if args.width is not None or args.height is not None:
            raise UsageError("--expand sets the output's size: give no --width or --height with it")
        if args.mask is not None:
            raise UsageError("give --mask (inpaint) or --expand (outpaint), not both")
    try:
        for seed in seeds:
            request.with_(seed=seed).check()
    except ValueError as e:  # "width must be ...": the engine's words, naming the flag
        raise UsageError(f"--{e}") from None
    return request


def cmd_generate(args) -> int:
    seeds = _seed_list(args)
    request = _request(args, seeds)
    loras = _loras(args)
    image = _input_image(args)
    mask = _mask_image(args)
    distributed = args.split_model or _distributed_world() > 1
    if distributed and _distributed_rank() != 0:
        # Only rank 0 writes images: another machine's ranks need not have the output folder.
        paths = []
    else:
        paths = _output_paths(args.output, seeds, args.overwrite)

    if distributed:
        if args.quantize == "auto" and args.split_model:
            raise UsageError("--split-model takes --quantize 4 or 8, not auto")
        from .distributed import run_generate_distributed

        return run_generate_distributed(args, request, seeds, paths, loras, image, mask)

    from .metadata import save_png
    from .pipeline import FluxPipeline

    status = StatusLine(args.quiet)
    try:
        t0 = time.perf_counter()
        pipe = FluxPipeline.from_pretrained(args.model, base=args.base, dtype=args.dtype, quantize=args.quantize,
                                            progress=status.loading, low_memory=args.low_memory or None,
                                            loras=loras, force=args.force)
        status.done_loading(time.perf_counter() - t0)
        if len(seeds) == 1:
            results = [pipe.generate(request.with_(seed=seeds[0]), callback=status.step, image=image, mask=mask)]
        else:
            results = pipe.generate_batch(request, seeds=seeds, callback=status.step, image=image, mask=mask)
    finally:
        status.clear()
    if results[0].prompt_truncated:
        print("mlx-flux: warning: the prompt is longer than the text encoders read; the end was cut off",
              file=sys.stderr)
    for result, path in zip(results, paths):
        try:
            save_png(result.image, path, result.metadata, overwrite=args.overwrite)
        except FileExistsError:  # appeared while generating (another run): never replaced silently
            raise UsageError(f"{path} exists; pass --overwrite to replace it") from None
        print(path, flush=True)
    return 0


def _distributed_world() -> int:
    """How many processes a launcher started (1 when run plainly), read without connecting."""
    from .distributed import launched_world_size

    return launched_world_size()


def _distributed_rank() -> int:
    from .distributed import launched_rank

    return launched_rank()


# --- info / download / quantize -----------------------------------------------------------

def cmd_info(args) -> int:
    from .metadata import format_metadata, read_metadata

    path = Path(args.image)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    meta = read_metadata(path)
    if meta is None:
        raise UsageError(f"{path} holds no generation parameters (or is not an image)")
    print(format_metadata(meta))
    return 0


def cmd_download(args) -> int:
    """The app's download path: only the files the engine reads, straight into the Hugging Face
    cache, with progress on a terminal; an interrupted download resumes where it stopped."""
    from . import downloads, hub

    repo = hub.ALIASES.get(args.model, args.model)
    if not hub.is_repo_id(repo):
        raise UsageError(f"not a hub repo id (owner/name): {args.model}")
    cached = downloads.cache_state(repo)
    if cached.state == "complete" and cached.folder is not None:
        print(cached.folder)
        return 0
    show = _progress_line if sys.stderr.isatty() else None
    try:
        listing = downloads.list_repo(repo)  # the stored token (or HF_TOKEN) is used by default
        folder = downloads.Download(listing, on_progress=show).run()
    except downloads.DownloadError as e:
        if show is not None:
            print(file=sys.stderr)
        if e.kind == "gated":  # what to do about it, from a terminal
            raise downloads.DownloadError(f"{e}: `hf auth login` (or HF_TOKEN) with an account that has "
                                          "accepted it", e.kind) from None
        raise
    except KeyboardInterrupt:
        print("\nmlx-flux: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException:
        if show is not None:
            print(file=sys.stderr)  # the error goes on a line of its own, past the progress
        raise
    if show is not None:
        print(file=sys.stderr)
    print(folder)
    return 0


def _progress_line(p) -> None:
    from .downloads import format_bytes, format_duration

    left = f" · {format_duration(p.eta)} left" if p.eta is not None else ""
    speed = f" · {format_bytes(p.speed)}/s" if p.speed else ""
    print(f"\r{format_bytes(p.done)} of {format_bytes(p.total)}{speed}{left}\033[K", end="", file=sys.stderr,
          flush=True)


def cmd_quantize(args) -> int:
    from .quantized_writer import quantize_to_folder

    status = StatusLine(quiet=False)  # quantizing the real model takes minutes: say what is happening
    try:
        out = quantize_to_folder(args.model, args.bits, Path(args.output), base=args.base, progress=status.loading,
                                 loras=_loras(args))
    finally:
        status.clear()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
