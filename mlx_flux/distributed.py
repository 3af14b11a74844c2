"""Scale-out over several processes or Macs with MLX's own distributed engine (`mx.distributed`).

`mlx.launch` starts the same `mlx-flux generate ...` command once per rank (ring backend over
TCP or a Thunderbolt bridge, or MPI); the ranks find each other through the environment the
launcher sets. Two ways to share the work:

- data parallel (default): the seeds are split across ranks; every rank loads the whole
  pipeline and makes its share of the images, and rank 0 gathers them (`all_gather`) and
  writes them all. For more images per minute.
- model parallel (`--split-model`): the transformer's blocks are split across ranks and each
  rank loads only its own. Rank 0 alone holds the text encoders and the VAE and runs the
  sampler; every step the activations go rank 0 -> 1 -> ... -> last with `send`/`recv`, and
  the last rank sends the velocity back to rank 0. Each rank runs the transformer's own
  stages (`Flux.embed`, `Flux.blocks`, `Flux.head`) and builds its RoPE table from the token
  ids rank 0 sends. For a model that does not fit one machine.

Both give the images of a single-process run, bit for bit in float32.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Sequence

import mlx.core as mx
import numpy as np

from .console import StatusLine
from .errors import FluxError
from .request import GenerationRequest
from .transformer import Conditioning, Flux, FluxConfig, Hidden


class DistributedError(FluxError):
    """The launched processes could not work together (user-facing, one line)."""


# --- where we are ---------------------------------------------------------------------------

def launched_world_size() -> int:
    """How many processes a launcher started (1 when run plainly), read without connecting.

    mlx.launch's ring backend sets MLX_RANK and MLX_HOSTFILE (a JSON file listing one entry
    per rank; it is empty for a single rank), its nccl backend MLX_WORLD_SIZE, its jaccl
    backend MLX_IBV_DEVICES (a JSON matrix, one row per rank); mpirun sets OMPI_COMM_WORLD_SIZE.
    """
    for var in ("MLX_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    for var in ("MLX_HOSTFILE", "MLX_IBV_DEVICES"):
        path = os.environ.get(var)
        if path:
            try:
                hosts = json.loads(Path(path).read_text() or "[]")
            except (OSError, ValueError):
                continue
            if isinstance(hosts, list):
                return max(1, len(hosts))
    return 1


def launched_rank() -> int:
    for var in ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 0


def init_group() -> mx.distributed.Group:
    """Connect to the other ranks (MLX picks the backend from the launcher's environment)."""
    expected = launched_world_size()
    try:
        group = mx.distributed.init(strict=expected > 1)
    except RuntimeError as e:
        raise DistributedError(f"could not connect the {expected} launched processes: {e}") from None
    if group.size() != expected:
        raise DistributedError(f"the launcher started {expected} processes but MLX connected {group.size()}")
    return group


def share(seeds: Sequence[int], rank: int, size: int) -> list[int]:
    """The contiguous slice of `seeds` rank `rank` makes: the first ranks take one more when
    the seeds do not divide evenly, so gathering the slices in rank order restores the order."""
    per = math.ceil(len(seeds) / size)
    return list(seeds[rank * per : (rank + 1) * per])


def agree_on_seeds(seeds: Sequence[int], group: mx.distributed.Group) -> list[int]:
    """Rank 0's seeds, on every rank (`--count` draws its random start on each rank)."""
    if group.size() == 1:
        return list(seeds)
    first = group.rank() == 0
    n = int(mx.distributed.all_sum(mx.array([len(seeds) if first else 0]), group=group).item())
    mine = mx.array(list(seeds) if first else [0] * n, dtype=mx.int64)
    return [int(s) for s in mx.distributed.all_sum(mine, group=group).tolist()]


# --- data parallel ----------------------------------------------------------------------------

def generate_data_parallel(pipe, request: GenerationRequest, seeds: Sequence[int], group: mx.distributed.Group,
                           callback=None, image=None, mask=None) -> tuple[list[np.ndarray], list]:
    """Each rank makes its share of `seeds`; rank 0 returns every image (uint8 HxWx3, in seed
    order) and its own results (for metadata); other ranks return ([], their results)."""
    rank, size = group.rank(), group.size()
    mine = share(seeds, rank, size)
    request = pipe.resolve(request.with_(seed=seeds[0]), image, mask)  # the size every rank's images have
    results = pipe.generate_batch(request, seeds=mine, callback=callback, image=image, mask=mask) if mine else []
    per = math.ceil(len(seeds) / size)
    images = np.zeros((per, request.height, request.width, 3), dtype=np.uint8)  # ranks with fewer seeds send zeros
    for i, r in enumerate(results):
        images[i] = np.asarray(r.image)
    gathered = mx.distributed.all_gather(mx.array(images), group=group) if size > 1 else mx.array(images)
    if rank != 0:
        mx.eval(gathered)
        return [], results
    everything = np.array(gathered)
    return [everything[i] for i in range(len(seeds))], results


# --- model parallel ---------------------------------------------------------------------------

def partition(config, size: int) -> list[tuple[range, range]]:
    """Split [double blocks..., single blocks...] into `size` contiguous slices of about equal
    weight size (a double block holds ~2.4x the weights of a single one).

    Returns per rank (double range, single range). A rank may get none when there are more
    ranks than blocks; it then only passes the activations on.
    """
    h, m = config.hidden_size, config.mlp_hidden_dim
    double = 2 * (3 * h * h + h * h + 2 * h * m + 6 * h * h)  # img and txt: qkv, proj, mlp, modulation
    single = h * (3 * h + m) + (h + m) * h + 3 * h * h        # linear1, linear2, modulation
    costs = [double] * config.depth + [single] * config.depth_single_blocks
    total, done, owner = sum(costs), 0, []
    for c in costs:  # a block goes to the rank whose share holds its midpoint
        owner.append(min(size - 1, int((done + c / 2) * size // total)))
        done += c
    slices = []
    for r in range(size):
        idx = [i for i, o in enumerate(owner) if o == r]
        lo, hi = (idx[0], idx[-1] + 1) if idx else (len(costs), len(costs))
        d = range(min(lo, config.depth), min(hi, config.depth))
        s = range(max(lo, config.depth) - config.depth, max(hi, config.depth) - config.depth)
        slices.append((d, s))
    return slices


# Rank r sends rank r+1 a header of _HEADER int64s, then the array it announces:
#   (_IDS, id batch or 0, tokens, 0)  the position ids [txt_ids ; img_ids] `prepare` got,
#                                     float32 [(batch,) tokens, 3]; sent again only when they change
#   (_STEP, batch, text tokens, image tokens)  the hidden streams and SiLU(vec), as one array
#                                     [batch, text + image tokens + 1, hidden] ([txt ; img ; silu_vec])
#   (_STOP, 0, 0, 0)                  nothing more to do
# The last rank sends rank 0 the velocity [batch, image tokens, out_channels].
_HEADER = 4
_STOP, _STEP, _IDS = 0, 1, 2


def _send(x: mx.array, dst: int, group: mx.distributed.Group) -> None:
    mx.eval(mx.distributed.send(x, dst, group=group))


def _pack(h: Hidden, silu_vec: mx.array) -> mx.array:
    """[txt ; img ; silu_vec] along the tokens: one message per step (exact, only copies)."""
    return mx.concatenate([h.txt, h.img, silu_vec[:, None]], axis=1)


def _unpack(packet: mx.array, txt_len: int) -> tuple[Hidden, mx.array]:
    return Hidden(txt=packet[:, :txt_len], img=packet[:, txt_len:-1]), packet[:, -1]


class SplitHead:
    """Rank 0's stand-in for the transformer under `--split-model`.

    It has what the pipeline uses (config, dtype, prepare, step), so the ordinary sampler,
    progress, previews and decoding run unchanged on rank 0 while `step` runs the first
    slice of blocks here and the rest on the other ranks.
    """

    def __init__(self, model: Flux, group: mx.distributed.Group):
        self.model = model          # full config, embedders, final layer, and rank 0's blocks
        self.config = model.config
        self.group = group
        self._ids: np.ndarray | None = None   # token ids of the current generation
        self._sent: np.ndarray | None = None  # the ids the other ranks hold

    @property
    def dtype(self) -> mx.Dtype:
        return self.model.dtype

    def prepare(self, txt, y, img_ids, txt_ids, guidance=None) -> Conditioning:
        # The other ranks build the same RoPE table from the same ids (whatever they are:
        # a reference image's tokens, say, are not on the latent grid).
        self._ids = np.array(self.model.token_ids(img_ids, txt_ids))
        return self.model.prepare(txt, y, img_ids, txt_ids, guidance)

    def step(self, img: mx.array, t: mx.array, cond: Conditioning) -> mx.array:
        model, group, size = self.model, self.group, self.group.size()
        h, silu_vec = model.embed(img, t, cond)
        h = model.blocks(h, silu_vec, cond.pe)
        if size == 1:
            return model.head(h, silu_vec)
        if self._sent is None or not np.array_equal(self._ids, self._sent):
            ids = self._ids
            batch = ids.shape[0] if ids.ndim == 3 else 0
            _send(mx.array([_IDS, batch, ids.shape[-2], 0], dtype=mx.int64), 1, group)
            _send(mx.array(ids), 1, group)
            self._sent = ids
        b, n, _ = h.img.shape
        _send(mx.array([_STEP, b, h.txt.shape[1], n], dtype=mx.int64), 1, group)
        _send(_pack(h, silu_vec), 1, group)
        return mx.distributed.recv((b, n, self.config.out_channels), model.dtype, size - 1, group=group)

    compiled_step = step

    def stop(self) -> None:
        """Tell the other ranks that there is nothing more to do."""
        if self.group.size() > 1:
            _send(mx.array([_STOP, 0, 0, 0], dtype=mx.int64), 1, self.group)


def serve_blocks(model: Flux, group: mx.distributed.Group) -> None:
    """Ranks 1..n-1 under `--split-model`: run this rank's blocks on whatever arrives, until told to stop.

    Everything is passed on to the next rank before this rank's blocks run; the RoPE table
    is built from the ids rank 0 sends, as `Flux.prepare` builds it, once per set of ids.
    """
    rank, size = group.rank(), group.size()
    last = rank == size - 1
    pe = None
    while True:
        header = mx.distributed.recv((_HEADER,), mx.int64, rank - 1, group=group)
        command, *args = (int(v) for v in header.tolist())
        if not last:
            _send(header, rank + 1, group)
        if command == _STOP:
            return
        if command == _IDS:
            batch, tokens, _ = args
            ids = mx.distributed.recv((batch, tokens, 3) if batch else (tokens, 3), mx.float32, rank - 1, group=group)
            if not last:
                _send(ids, rank + 1, group)
            pe = model.rope(ids)
            mx.eval(pe)
            continue
        b, txt_len, n = args
        packet = mx.distributed.recv((b, txt_len + n + 1, model.config.hidden_size), model.dtype, rank - 1,
                                     group=group)
        h, silu_vec = _unpack(packet, txt_len)
        h = model.blocks(h, silu_vec, pe)
        if last:
            _send(model.head(h, silu_vec), 0, group)
        else:
            _send(_pack(h, silu_vec), rank + 1, group)


def full_config(files):
    """The transformer's config before loading any weights (needed to split the blocks)."""
    from .weights import load_safetensors, shard_files

    if files.transformer.is_dir() and files.transformer_config:
        return FluxConfig.from_diffusers(files.transformer_config)
    shards = shard_files(files.transformer) if files.transformer.is_dir() else [files.transformer]
    return FluxConfig.from_weights(Flux.sanitize(load_safetensors(shards)))  # shapes only: nothing is read


def load_split_transformer(files, rank: int, size: int, dtype, quantize: int | None = None):
    """This rank's slice of the transformer (plus the small embedders and final layer)."""
    from .transformer import load_transformer

    if getattr(files, "quantized", None) is not None:
        raise DistributedError("--split-model cannot load a quantized model folder yet; "
                               "pass the original model with --quantize instead")
    config = full_config(files)
    blocks = partition(config, size)[rank]
    kwargs = {"quantize": quantize} if quantize else {}
    return load_transformer(files.transformer, dtype=dtype, config=config, blocks=blocks, **kwargs)


# --- the command line -------------------------------------------------------------------------

def run_generate_distributed(args, request: GenerationRequest, seeds: list[int], paths: list[Path],
                             loras: Sequence[tuple[str, float]] = (), image=None, mask=None) -> int:
    """`mlx-flux generate` under mlx.launch (or with --split-model): see the module docstring."""
    from .metadata import save_png

    group = init_group()
    rank = group.rank()
    seeds = agree_on_seeds(seeds, group)  # rank 0's, for which `paths` were made
    status = StatusLine(args.quiet or rank != 0)
    try:
        if args.split_model:
            images, results = _split_model(args, request, seeds, group, status, loras, image, mask)
        else:
            images, results = _data_parallel(args, request, seeds, group, status, loras, image, mask)
    finally:
        status.clear()
    if rank != 0:
        return 0
    if results and results[0].prompt_truncated:
        print("mlx-flux: warning: the prompt is longer than the text encoders read; the end was cut off",
              file=sys.stderr)
    from PIL import Image

    for seed, image, path in zip(seeds, images, paths):
        save_png(Image.fromarray(image, mode="RGB"), path, results[0].request.with_(seed=seed).to_metadata(),
                 overwrite=getattr(args, "overwrite", True))
        print(path)
    return 0


def _data_parallel(args, request, seeds, group, status, loras, image, mask=None):
    import time

    from .pipeline import FluxPipeline

    t0 = time.perf_counter()
    pipe = FluxPipeline.from_pretrained(args.model, base=args.base, dtype=args.dtype, quantize=args.quantize,
                                        progress=status.loading, low_memory=args.low_memory or None, loras=loras,
                                        force=getattr(args, "force", False))
    status.done_loading(time.perf_counter() - t0)
    return generate_data_parallel(pipe, request, seeds, group, callback=status.step, image=image, mask=mask)


def _low_memory_with(model, files, dtype, quantize) -> bool:
    """The pipeline's memory plan (see `memory.plan`) for rank 0, which holds only its blocks."""
    from mlx.utils import tree_flatten

    from . import memory

    sizes = memory.component_bytes(files, dtype, quantize)
    sizes["transformer"] = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    return memory.plan(sizes).low_memory


def _split_model(args, request, seeds, group, status, loras, image, mask=None):
    import time

    from .autoencoder import load_autoencoder
    from .loading import find_files
    from .pipeline import FluxPipeline
    from .weights import default_dtype, parse_dtype

    rank, size = group.rank(), group.size()
    t0 = time.perf_counter()
    dtype = parse_dtype(args.dtype) or default_dtype()
    files = find_files(args.model, args.base, status.loading)
    status.loading(f"Loading transformer blocks (rank {rank} of {size})", None)
    model = load_split_transformer(files, rank, size, dtype, args.quantize)
    if rank != 0:
        if loras:  # this rank's blocks' share of each LoRA, in the slice's own numbering
            from . import hub
            from .lora import ActiveLora, apply_loras
            from .lora_formats import read_lora

            double, single = partition(full_config(files), size)[rank]
            apply_loras(model, [ActiveLora(read_lora(hub.resolve_file(p)), s) for p, s in loras], "transformer",
                        blocks={"double_blocks": double.start, "single_blocks": single.start})
        serve_blocks(model, group)
        return [], []
    head = SplitHead(model, group)
    status.loading("Loading VAE", None)
    low_memory = args.low_memory or _low_memory_with(model, files, dtype, args.quantize)
    pipe = FluxPipeline(files, head, load_autoencoder(files.vae, dtype=dtype), dtype,
                        low_memory=low_memory, quantize=args.quantize)
    pipe.compile = False  # the step sends and receives: nothing to trace
    pipe.set_loras(loras)  # rank 0's blocks and CLIP
    if not low_memory:
        status.loading("Loading text encoders", None)
        pipe._text_encoders()
    status.done_loading(time.perf_counter() - t0)
    try:
        results = pipe.generate_batch(request, seeds=seeds, callback=status.step, image=image, mask=mask)
    finally:
        head.stop()
    return [np.asarray(r.image) for r in results], results
