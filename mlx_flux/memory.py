"""Memory: what the machine has, what a model needs, the low-memory decision, per-phase peaks.

On a Mac the GPU shares the RAM, so the model's weights, the activations and everything
else the user runs compete for one pool; 16 GB machines cannot hold FLUX's transformer,
T5 and VAE in bfloat16 (about 33 GB) at once. The plan here decides, from the sizes in
the checkpoint headers (nothing is read), whether a generation must run in phases:
encode the prompt, release the text encoders, denoise, then decode in tiles.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import mlx.core as mx

from .errors import FluxError
from .safetensors_header import DTYPE_SIZES
from .weights import read_header, shard_files

GB = 1024**3
# Fraction of the machine's memory a generation may plan to fill: the OS, the app and the
# MLX buffer cache need the rest, and swapping is far slower than phasing.
USABLE = 0.75
# Working memory beyond the weights of a 1024x1024 step (bfloat16 on a GPU, fused
# attention), rounded up. A tiled VAE decode needs less.
STEP_BYTES = 3 * GB
# Tile side (latent pixels, x8 image pixels) of the VAE decode in low-memory mode.
LOW_MEMORY_TILE = 64
# Buffer cache the CPU backend may keep between steps (see `configure_cache`).
CPU_CACHE_LIMIT = 4 * GB
# MLX's own CPU cache limit (its allocator's default), kept by low-memory generations.
MLX_CPU_CACHE_LIMIT = 32 * 1024**2
# Working memory a denoising step may hold, in its largest activations (a single block's
# qkv|mlp projection): below 2 the CPU streams starve (1.5: 1.2x slower at 1024x1024).
STEP_HEADROOM = 2


def machine_memory() -> int:
    """Bytes the model may use: the GPU's recommended working set (Metal), its memory (CUDA), or RAM."""
    if mx.default_device() == mx.gpu:
        info = mx.device_info()
        for key in ("max_recommended_working_set_size", "memory_size", "total_memory"):
            if info.get(key):
                return int(info[key])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def configure_cache(low_memory: bool = False) -> None:
    """Let MLX's CPU backend keep a step's temporary buffers for the next step, unless
    memory comes first.

    MLX caches at most 32 MB of freed buffers on the CPU (on a GPU its limit is the
    device's memory), so every larger temporary of a step (MLP activations, attention
    scores) went back to the OS and was page-faulted in, zeroed, by the next step: a
    quarter of a float32 CPU step's time before bounded evaluation, 10 to 20% since. The
    cache only ever holds freed buffers, and `FluxPipeline` empties it after each
    generation. It reuses a buffer only for a request of nearly its size, so it holds more
    than a step has alive at once: low memory keeps MLX's 32 MB (1 + 1 blocks at real
    width, 1024x1024, float32: resident peak 3.00 instead of 4.88 GB, step 41 instead of
    34 to 38 s; BENCHMARKS.md).
    """
    if mx.default_device() == mx.cpu:
        with _SETTINGS:
            mx.set_cache_limit(MLX_CPU_CACHE_LIMIT if low_memory else min(CPU_CACHE_LIMIT, machine_memory() // 8))


# --- bounded evaluation ------------------------------------------------------------------------

def block_activation_bytes(config: Any, batch: int, tokens: int) -> int:
    """A block's largest activation in float32: batch x tokens x (3 hidden + mlp hidden),
    a single block's fused qkv|mlp projection. The unit of STEP_HEADROOM."""
    return batch * tokens * (3 * config.hidden_size + config.mlp_hidden_dim) * 4


def step_headroom(config: Any, batch: int, tokens: int) -> int | None:
    """Bytes of working memory to allow one denoising step (see `eval_headroom`), or None.

    STEP_HEADROOM block activations (`block_activation_bytes`). On by default on the CPU
    only, where it was measured (1024x1024: peak above the weights 1.43 -> 0.92 GiB, time
    within noise; BENCHMARKS.md). On a GPU MLX's allocator also trims its buffer cache to
    the limit, which may cost speed there: MLX_FLUX_BOUNDED_EVAL=1 turns it on everywhere,
    0 off.
    """
    mode = os.environ.get("MLX_FLUX_BOUNDED_EVAL", "auto")
    if mode == "0" or (mode != "1" and mx.default_device() != mx.cpu):
        return None
    return STEP_HEADROOM * block_activation_bytes(config, batch, tokens)


@contextmanager
def eval_headroom(nbytes: int | None) -> Iterator[None]:
    """Keep MLX from queueing work more than `nbytes` beyond what is resident on entry.

    MLX encodes a graph far ahead of what has run, and each queued operation's output is
    allocated when it is queued: a step's peak is then the temporaries of several blocks,
    not of one. Above its memory limit MLX's evaluation waits for queued work to finish
    before queueing more, so the limit is set to what is resident now plus `nbytes`, and
    restored on exit. The results are unchanged (the same operations, in the same order);
    None does nothing.
    """
    if nbytes is None:
        yield
        return
    global _base_limit
    token = object()
    with _SETTINGS:
        if not _headrooms:
            _base_limit = mx.set_memory_limit(mx.get_active_memory() + nbytes)
        else:
            mx.set_memory_limit(max(max(_headrooms.values()), mx.get_active_memory() + nbytes))
        _headrooms[token] = mx.get_active_memory() + nbytes
    try:
        yield
    finally:
        with _SETTINGS:
            del _headrooms[token]
            # the process's limit goes back to what it was before the first of overlapping
            # generations began, whatever order they end in
            mx.set_memory_limit(max(_headrooms.values()) if _headrooms else _base_limit)


# MLX's memory and cache limits are the process's, not a pipeline's: they are changed only
# under this lock, and overlapping bounded evaluations (two pipelines on two threads) share one
# saved limit instead of each restoring what the other had set.
_SETTINGS = threading.Lock()
_headrooms: dict[object, int] = {}
_base_limit = 0


def bounded_steps(config: Any, batch: int, tokens: int) -> AbstractContextManager[None]:
    """What FluxPipeline runs its denoising steps in: `eval_headroom(step_headroom(...))`
    for a batch of `tokens`-long joint sequences (image + text) through a `config` model."""
    return eval_headroom(step_headroom(config, batch, tokens))


# --- what the model needs -------------------------------------------------------------------------

def tensor_bytes(files: list[Path], dtype: mx.Dtype | None = None, quantize: int | None = None) -> int:
    """Resident bytes of the tensors in `files` once loaded (from the headers only).

    Floats take `dtype`'s size (their own when None); with `quantize` the matrices take
    `quantize` bits plus a scale and a bias per group of 64.
    """
    total = 0
    for f in files:
        for info in read_header(f).values():
            n, size = prod(info["shape"]), DTYPE_SIZES[info["dtype"]]
            is_float = info["dtype"] in ("F64", "F32", "F16", "BF16")
            size = dtype.size if (dtype is not None and is_float) else size
            if quantize and is_float and len(info["shape"]) == 2:
                total += n * quantize // 8 + 2 * (n // 64) * size
            else:
                total += n * size
    return total


def component_bytes(files: Any, dtype: mx.Dtype, quantize: int | None) -> dict[str, int]:
    """Resident size of each component of `files` (a loading.ModelFiles) at `dtype`."""
    def weights(path: Path) -> list[Path]:
        return [path] if path.is_file() else shard_files(path)

    stored = files.quantized is not None  # our folder: the files already hold the quantized sizes
    q = None if stored else quantize
    return {
        "transformer": tensor_bytes(weights(files.transformer), None if stored else dtype, q),
        "text_encoder_2": tensor_bytes(weights(files.text_encoder_2), None if stored else dtype, q),
        "text_encoder": tensor_bytes(weights(files.text_encoder), dtype),
        "vae": tensor_bytes(weights(files.vae), dtype),
    }


@dataclass(frozen=True)
class MemoryPlan:
    """How a generation is phased.

    Low memory releases the text encoders after encoding and decodes in tiles. The
    transformer stays: the peak of a generation is the denoising (transformer +
    activations), and a tiled decode needs less than one step, so releasing the
    transformer before decoding would not lower the peak, only add a reload (several
    seconds to a minute) to the next image.
    """

    low_memory: bool
    budget: int  # bytes the plan may fill
    need: int    # bytes everything resident at once would take


def plan(sizes: Mapping[str, int], low_memory: bool | None = None, budget: int | None = None) -> MemoryPlan:
    """Decide how to phase a generation. low_memory None decides from the machine's memory."""
    budget = int(USABLE * machine_memory()) if budget is None else budget
    need = sum(sizes.values()) + STEP_BYTES
    low = need > budget if low_memory is None else bool(low_memory)
    return MemoryPlan(low, budget, need)


class ModelTooLargeError(FluxError):
    """A model that cannot fit this machine's memory even in low-memory mode (at this precision)."""


def low_memory_need(sizes: Mapping[str, int]) -> int:
    """The least a generation needs resident: every component's weights. Even in low-memory mode
    the text encoders are loaded beside the transformer and the VAE to encode a prompt."""
    return sum(sizes.values())


def choose_precision(sizes_at: Callable[[int | None], Mapping[str, int]], quantize: int | str | None,
                     force: bool = False, budget: int | None = None) -> int | None:
    """The bits to load a model at: `quantize` (None, 4 or 8) if it fits the machine, else
    ModelTooLargeError naming the precision that fits; "auto" picks the highest that fits.

    `sizes_at(bits)` gives the components' resident sizes at `bits` (from the headers:
    nothing is read). `force` loads anyway (the machine may swap to a standstill). The budget
    is the machine's whole memory (`machine_memory`): a model above it cannot run at all.
    """
    budget = machine_memory() if budget is None else budget
    need = {}

    def fits(bits: int | None) -> bool:
        if bits not in need:
            need[bits] = low_memory_need(sizes_at(bits))
        return need[bits] <= budget

    if quantize == "auto":
        for bits in (None, 8, 4):
            if fits(bits):
                return bits
        if force:
            return 4
        raise ModelTooLargeError(f"the model needs about {describe_bytes(need[4])} of memory even 4-bit in "
                                 f"low-memory mode; this machine has {describe_bytes(budget)} (--force to try anyway)")
    if force or fits(quantize):
        return quantize
    smaller = [bits for bits in (8, 4) if (quantize is None or bits < quantize) and fits(bits)]
    hint = (f"load it with --quantize {smaller[0]} (about {describe_bytes(need[smaller[0]])}), "
            "or --force to try anyway" if smaller else "--force to try anyway")
    precision = "in full precision" if quantize is None else f"{quantize}-bit"
    raise ModelTooLargeError(f"the model needs about {describe_bytes(need[quantize])} of memory {precision} "
                             f"even in low-memory mode; this machine has {describe_bytes(budget)}: {hint}")


def describe_bytes(n: int) -> str:
    return f"{n / GB:.1f} GB" if n >= GB / 10 else f"{n / 2**20:.1f} MB"


# --- measuring ----------------------------------------------------------------------------------

class PeakMeter:
    """Peak MLX memory (bytes, weights included) of each phase of a generation.

        meter.start("encode"); ...; meter.start("denoise"); ...; meter.stop()
    """

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self._phase: str | None = None
        self._start = 0

    def start(self, phase: str) -> None:
        self.stop()
        self._phase, self._start = phase, mx.get_active_memory()
        mx.reset_peak_memory()

    def stop(self) -> None:
        if self._phase is not None:
            # reset_peak_memory zeroes the peak: a phase that allocates nothing still holds what it started with
            self.peaks[self._phase] = max(mx.get_peak_memory(), self._start)
            self._phase = None
