"""Spread independent slices of one operation over several CPU streams.

MLX's CPU backend runs each elementwise kernel and softmax on one thread (only the BLAS
matrix products use every core), and the transformer's GELU and attention softmax are a
third of a CPU step. Slices evaluated on separate CPU streams run on separate threads, so
`fan_out` cuts such work along an axis where the slices are independent (heads, features)
and gives each slice its own stream. On a GPU it is one call.

Results are bitwise identical to the unsplit computation: every slice does exactly the
arithmetic the whole would have done on its elements.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import mlx.core as mx

MAX_STREAMS = 8
_local = threading.local()  # MLX streams belong to the thread that made them


def cpu_streams() -> tuple[mx.Stream, ...]:
    """This thread's extra CPU streams, one per core (none on one core), made once."""
    streams = getattr(_local, "streams", None)
    if streams is None:
        n = min(os.cpu_count() or 1, MAX_STREAMS)
        streams = tuple(mx.new_stream(mx.cpu) for _ in range(n)) if n > 1 else ()
        _local.streams = streams
    return streams


def enabled() -> bool:
    """Fan out over streams only for ops placed on the CPU (MLX_FLUX_FANOUT=0 turns it off)."""
    return mx.default_device() == mx.cpu and os.environ.get("MLX_FLUX_FANOUT", "1") != "0"


def fan_out(fn: Callable[..., mx.array], arrays: Sequence[mx.array], axis: int,
            cpu_pieces: int = 1) -> list[mx.array]:
    """fn(*slices) for consecutive slices of `arrays` along `axis`, spread over the CPU streams.

    `fn` gets the same range of every array (shared operands it closes over); the caller
    joins the pieces, usually with one `mx.concatenate` it needed anyway. On the CPU the
    work is cut into at least one piece per stream and at least `cpu_pieces` pieces; the
    pieces of one stream run one after the other (each waits for the previous one's
    result, since MLX would otherwise run a wide graph level by level with every piece's
    temporaries alive at once), so a memory-hungry op bounds its working set by asking
    for more pieces. Off the CPU it is one call.
    """
    n = arrays[0].shape[axis]
    on_cpu = mx.default_device() == mx.cpu
    streams = cpu_streams() if enabled() else ()
    pieces = min(n, max(len(streams), cpu_pieces if on_cpu else 1))
    if pieces < 2:
        return [fn(*arrays)]
    bounds = [n * i // pieces for i in range(pieces + 1)]
    index = [slice(None)] * (axis % arrays[0].ndim)
    parts: list[mx.array] = []
    previous: dict[int, mx.array] = {}  # stream slot -> its last piece
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        slot = i * len(streams) // pieces if streams else 0
        sliced = [a[(*index, slice(lo, hi))] for a in arrays]
        if slot in previous:
            sliced = mx.depends(sliced, previous[slot])
        with mx.stream(streams[slot]) if streams else nullcontext():
            parts.append(fn(*sliced))
        previous[slot] = parts[-1]
    return parts


def concat_fan_out(fn: Callable[..., mx.array], arrays: Sequence[mx.array], axis: int, out_axis: int,
                   cpu_pieces: int = 1) -> mx.array:
    """`fan_out`, joined along `out_axis`."""
    parts = fan_out(fn, arrays, axis, cpu_pieces)
    return parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=out_axis)
