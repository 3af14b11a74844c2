"""Text to image: tokenize, encode, denoise with the flow-matching sampler, decode.

`FluxPipeline` owns the loaded models and exposes `generate` / `generate_batch`; the
denoising loop itself is the generator `denoise`, shared by everything that samples.
"""

from __future__ import annotations

import dataclasses
import gc
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import mlx.core as mx
import numpy as np
from PIL import Image

from . import __version__, hub, memory, quantized_io, sampler
from .autoencoder import load_autoencoder
from .clip import load_clip
from .errors import FluxError
from .loader import load_component
from .loading import ModelFiles, find_files
from .preview import LatentPreviewer
from .t5 import SPEC as T5_SPEC
from .tokenizers import CLIPTokenizer, T5Tokenizer
from .transformer import FluxConfig, load_transformer
from .weights import default_dtype, parse_dtype

# Variant defaults, as the reference command lines use them.
DEFAULTS = {
    "schnell": {"steps": 4, "guidance": None, "t5_length": 256, "shift": False},
    "dev": {"steps": 28, "guidance": 3.5, "t5_length": 512, "shift": True},
}


class InputError(FluxError, ValueError):
    """A generation request the engine cannot honour (bad size, bad latents...)."""


@dataclass
class StepEvent:
    """What a step callback receives, once per denoising step."""

    step: int          # 1-based
    total: int
    elapsed: float     # seconds since denoising started
    sigma: float       # noise level after this step
    _preview: Callable[[], Image.Image] = field(repr=False)

    def preview(self) -> Image.Image:
        """A small image of the predicted clean image at this step (no VAE decode)."""
        return self._preview()


@dataclass
class GenerationResult:
    image: Image.Image
    latents: np.ndarray            # (1, C, H/8, W/8) float32, before VAE scale/shift
    seed: int
    metadata: dict[str, Any]
    prompt_truncated: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)  # peak bytes (weights included) per phase


@dataclass(frozen=True)
class PromptEmbedding:
    txt: mx.array        # [1, L, D] T5 hidden states
    pooled: mx.array     # [1, D_clip] CLIP pooled output
    truncated: bool


class FluxPipeline:
    def __init__(self, files: ModelFiles, transformer, vae, dtype: mx.Dtype, low_memory: bool = False,
                 quantize: int | None = None):
        self.files = files
        self.transformer = transformer
        self.vae = vae
        self.dtype = dtype
        self.low_memory = low_memory
        self.quantize = quantize
        self.variant = "dev" if transformer.config.guidance_embed else "schnell"
        self.model_name = files.name
        defaults = DEFAULTS[self.variant]
        self.default_steps: int = defaults["steps"]
        self.default_guidance: float | None = defaults["guidance"]
        self.t5_length: int = defaults["t5_length"]
        self.clip_tokenizer = CLIPTokenizer.from_pretrained(files.tokenizer)
        self.t5_tokenizer = T5Tokenizer.from_pretrained(files.tokenizer_2)
        self._clip = None
        self._t5 = None
        self._prompts: OrderedDict[str, PromptEmbedding] = OrderedDict()
        self._previewer = LatentPreviewer(vae)
        # mx.compile fuses the elementwise work between matmuls: a gain on a GPU; on the CPU
        # it measured no faster and its first trace costs ~20 s of C++ compilation.
        self.compile: bool = mx.default_device() == mx.gpu

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model: str | Path, base: str | Path | None = None, dtype: str | None = None,
                        quantize: int | None = None, progress: hub.Progress | None = None,
                        low_memory: bool | None = None) -> "FluxPipeline":
        """Load a model folder, a BFL single file (+ `base`), or a hub repo id.

        dtype None picks the device's best (bfloat16 on a GPU, float32 on the CPU).
        quantize 4 or 8 quantizes the transformer and T5 weights. low_memory releases the
        text encoders after each encoding, decodes in tiles and, on the CPU, keeps MLX's small
        buffer cache (see `memory.configure_cache`); None decides from the machine's memory
        and the model's size (see `memory.plan`).
        """
        if quantize not in (None, 4, 8):
            raise InputError(f"quantize must be 4 or 8 bits, not {quantize}")
        dt = parse_dtype(dtype) or default_dtype()
        files = find_files(model, base, progress)
        if progress:
            progress("Loading transformer", None)
        if files.quantized is not None:  # our quantized folder: loads as stored, never in full precision
            quantize = quantized_io.check_requested_bits(files.quantized, files.transformer.parent, quantize)
        # quantize=N quantizes each block as it is read
        transformer = load_transformer(files.transformer, dtype=dt, config=_transformer_config(files),
                                       quantize=_on_load(files, quantize))
        if progress:
            progress("Loading VAE", None)
        vae = load_autoencoder(files.vae, dtype=dt)
        if low_memory is None:
            low_memory = memory.plan(memory.component_bytes(files, dt, quantize)).low_memory
        pipe = cls(files, transformer, vae, dt, low_memory=low_memory, quantize=quantize)
        if not low_memory:  # load eagerly so the first generation is not slower than the next
            if progress:
                progress("Loading text encoders", None)
            pipe._text_encoders()
        if progress:
            progress("Ready", 1.0)
        return pipe

    def _text_encoders(self):
        if self._clip is None:
            self._clip = load_clip(self.files.text_encoder, dtype=self.dtype)
        if self._t5 is None:
            # load_t5's stages, quantized on load like the transformer (or as stored in our folder)
            self._t5 = load_component(T5_SPEC, self.files.text_encoder_2, self.dtype,
                                      quantize=_on_load(self.files, self.quantize))
        return self._clip, self._t5

    def release_text_encoders(self) -> None:
        """Free CLIP and T5 (they are reloaded if a new prompt needs them)."""
        self._clip = self._t5 = None
        gc.collect()
        mx.clear_cache()

    # --- prompt ----------------------------------------------------------------------------

    def encode_prompt(self, prompt: str) -> PromptEmbedding:
        """T5 and CLIP embeddings of `prompt`, cached so re-runs with new seeds skip the encoders."""
        if prompt in self._prompts:
            self._prompts.move_to_end(prompt)
            return self._prompts[prompt]
        clip_tokens = self.clip_tokenizer.tokenize(prompt)
        t5_tokens = self.t5_tokenizer.tokenize(prompt, max_length=self.t5_length)
        clip, t5 = self._text_encoders()
        txt = t5(mx.array([t5_tokens.ids], dtype=mx.int32)).astype(self.dtype)
        _, pooled = clip(mx.array([clip_tokens.ids], dtype=mx.int32))
        pooled = pooled.astype(self.dtype)
        mx.eval(txt, pooled)
        emb = PromptEmbedding(txt, pooled, clip_tokens.truncated or t5_tokens.truncated)
        self._prompts[prompt] = emb
        while len(self._prompts) > 4:
            self._prompts.popitem(last=False)
        if self.low_memory:
            self.release_text_encoders()
        return emb

    # --- sampling --------------------------------------------------------------------------

    def schedule(self, steps: int, width: int, height: int) -> list[float]:
        seq_len = (width // 16) * (height // 16)
        cfg = self.files.scheduler or {}
        if cfg:
            return sampler.config_schedule(cfg, steps, seq_len)
        return sampler.schedule(steps, seq_len, shift=DEFAULTS[self.variant]["shift"])

    def denoise(self, emb: PromptEmbedding, latents: mx.array, timesteps: Sequence[float],
                guidance: float | None, height: int, width: int) -> Iterator[tuple[int, mx.array, mx.array]]:
        """Yield (step, latents, predicted clean latents) after each Euler step.

        latents: packed [B, N, 64] float32 for a height x width image. Nothing is evaluated
        here: the caller evaluates, reports and may stop between steps.
        """
        b = latents.shape[0]
        img_ids = sampler.image_ids(height, width)
        txt_ids = sampler.text_ids(emb.txt.shape[1])
        g = mx.full((b,), guidance, dtype=mx.float32) if self.transformer.config.guidance_embed else None
        txt = mx.broadcast_to(emb.txt, (b, *emb.txt.shape[1:]))
        pooled = mx.broadcast_to(emb.pooled, (b, emb.pooled.shape[-1]))
        cond = self.transformer.prepare(txt, pooled, img_ids, txt_ids, guidance=g)
        step = self.transformer.compiled_step if self.compile else self.transformer.step
        for i, (t, t_next) in enumerate(zip(timesteps[:-1], timesteps[1:])):
            tt = mx.full((b,), t, dtype=mx.float32)
            v = step(latents.astype(self.dtype), tt, cond).astype(mx.float32)
            x0 = latents - t * v
            latents = latents + (t_next - t) * v
            yield i + 1, latents, x0

    def generate(self, prompt: str, width: int = 1024, height: int = 1024, steps: int | None = None,
                 guidance: float | None = None, seed: int | None = None, latents: np.ndarray | None = None,
                 callback: Callable[[StepEvent], None] | None = None) -> GenerationResult:
        """One image. See the README for the parameters; raising from `callback` cancels."""
        seeds = [seed if seed is not None else secrets.randbelow(2**32)]
        return self._generate(prompt, width, height, steps, guidance, seeds, latents, callback)[0]

    def generate_batch(self, prompt: str, seeds: Sequence[int], width: int = 1024, height: int = 1024,
                       steps: int | None = None, guidance: float | None = None,
                       callback: Callable[[StepEvent], None] | None = None,
                       max_batch: int | None = None) -> list[GenerationResult]:
        """One image per seed, the prompt encoded once and the transformer run on batches.

        Batches hold at most `max_batch` seeds (None: as many as fit in memory, see
        `auto_max_batch`). Step events count over all batches (step 1..batches*steps).
        """
        seeds = list(seeds)
        if not seeds:
            raise InputError("seeds must not be empty")
        _check_size(width, height)
        if max_batch is None:
            max_batch = self.auto_max_batch(width, height)
        elif max_batch < 1:
            raise InputError(f"max_batch must be at least 1, not {max_batch}")
        chunks = [seeds[i : i + max_batch] for i in range(0, len(seeds), max_batch)]
        t0 = time.perf_counter()
        results: list[GenerationResult] = []
        for k, chunk in enumerate(chunks):
            report = _chunk_progress(callback, k, len(chunks), t0)
            results += self._generate(prompt, width, height, steps, guidance, chunk, None, report)
        return results

    def auto_max_batch(self, width: int, height: int) -> int:
        """How many images one transformer batch may hold at this size on this machine.

        The weights are already resident; a batch adds activations. Half of the memory
        MLX does not hold yet goes to them, the rest stays for the VAE decode, the caches
        and the system.
        """
        free = max(0, memory.machine_memory() - mx.get_active_memory())
        per_image = activation_bytes(self.transformer.config, width, height, self.t5_length, self.dtype,
                                     fused_attention=mx.default_device() == mx.gpu)
        return max(1, (free // 2) // per_image)

    def warmup(self, width: int = 1024, height: int = 1024, batch: int = 1, force: bool = False) -> float:
        """Run the text encoders, one denoising step at this size and a small VAE decode once,
        so that the first real generation is as fast as later ones. Returns the seconds spent.
        `batch`: the batch size to expect (a compiled step is traced per shape).

        What a first run pays on a GPU: kernel compilation (Metal, CUDA) and the `mx.compile`
        trace for these shapes (measured on CUDA: first step 13x a later one; after warmup the
        same). Meant to run in the background right after loading (the app does it while the
        user types). On the CPU the first step measured as fast as later ones (no kernels to
        build, no compile), so only the text encoders run there unless `force`: a CPU step of
        the real model takes minutes the user's first generation would wait for.
        """
        _check_size(width, height)
        t0 = time.perf_counter()
        if mx.default_device() == mx.cpu and not force:
            if not self.low_memory:
                self.encode_prompt("")
            return time.perf_counter() - t0
        if self.low_memory:  # do not load the encoders only to warm them
            cfg = self.transformer.config
            emb = PromptEmbedding(mx.zeros((1, self.t5_length, cfg.context_in_dim), self.dtype),
                                  mx.zeros((1, cfg.vec_in_dim), self.dtype), False)
        else:
            emb = self.encode_prompt("")
        channels = self.vae.config.latent_channels
        x = sampler.pack(mx.zeros((batch, height // 8, width // 8, channels), mx.float32))
        guidance = self.default_guidance or 1.0
        with memory.bounded_steps(self.transformer.config, batch, x.shape[1] + emb.txt.shape[1]):
            for _, x, _ in self.denoise(emb, x, [1.0, 0.5], guidance, height, width):
                mx.eval(x)
        mx.eval(self.vae.decode(mx.zeros((1, 8, 8, channels), self.dtype)))
        return time.perf_counter() - t0

    def _generate(self, prompt, width, height, steps, guidance, seeds, latents, callback):
        _check_size(width, height)
        steps = self.default_steps if steps is None else int(steps)
        if steps < 1:
            raise InputError(f"steps must be at least 1, not {steps}")
        if self.transformer.config.guidance_embed:
            guidance = self.default_guidance if guidance is None else float(guidance)
        else:
            guidance = None  # schnell has no guidance embedding: the value would be ignored
        timings: dict[str, float] = {}
        memory.configure_cache(self.low_memory)  # per generation: the limit is the process's, not ours
        meter = memory.PeakMeter()
        meter.start("encode")
        t0 = time.perf_counter()
        emb = self.encode_prompt(prompt)
        timings["encode"] = time.perf_counter() - t0

        channels = self.vae.config.latent_channels
        if latents is not None:
            x = self._initial_latents(latents, width, height, channels, len(seeds))
        else:
            x = mx.concatenate([sampler.noise(s, 1, height, width, channels) for s in seeds])
        packed = sampler.pack(x)
        timesteps = self.schedule(steps, width, height)

        meter.start("denoise")
        t1 = time.perf_counter()

        def report(step: int, done: mx.array, x0: mx.array) -> None:
            mx.eval(done)  # waits for this step only: the next one is already queued
            if callback is not None:
                callback(StepEvent(step, steps, time.perf_counter() - t1, timesteps[step],
                                   self._preview_fn(x0, height, width)))

        pending = None
        with memory.bounded_steps(self.transformer.config, len(seeds), packed.shape[1] + emb.txt.shape[1]):
            for step, packed, x0 in self.denoise(emb, packed, timesteps, guidance, height, width):
                # Queue this step before reporting the previous one, so the device keeps computing
                # while Python waits, runs the callback (previews) and builds the next graph.
                mx.async_eval(packed, x0)
                if pending is not None:
                    report(*pending)
                pending = (step, packed, x0)
            report(*pending)
        timings["denoise"] = time.perf_counter() - t1

        # The steps' cached buffers have the transformer's sizes, not the decoder's: hand them back
        # before it allocates its own (the decode is a generation's peak; they would go at its end).
        mx.clear_cache()
        meter.start("decode")
        t2 = time.perf_counter()
        final = sampler.unpack(packed, height, width)
        images = []
        for i in range(len(seeds)):  # decode one at a time: the VAE is the memory peak
            tile = memory.LOW_MEMORY_TILE if self.low_memory else None  # None: the VAE decides by size
            img = self.vae.decode(final[i : i + 1].astype(self.dtype), tile=tile)
            images.append(_to_pil(img[0]))
        timings["decode"] = time.perf_counter() - t2
        meter.stop()

        results = []
        for i, seed in enumerate(seeds):
            meta = {"prompt": prompt, "seed": seed, "steps": steps, "guidance": guidance, "width": width,
                    "height": height, "model": self.model_name, "version": __version__}
            results.append(GenerationResult(images[i], sampler.nhwc_to_nchw(final[i : i + 1]), seed, meta,
                                            emb.truncated, dict(timings), dict(meter.peaks)))
        mx.clear_cache()  # between generations the app holds its weights, not the last image's buffers
        return results

    def _initial_latents(self, latents, width, height, channels, batch) -> mx.array:
        arr = np.asarray(latents, dtype=np.float32)
        want = (batch, channels, height // 8, width // 8)
        if arr.shape != want:
            raise InputError(f"latents must have shape {want} (N, C, H/8, W/8), not {arr.shape}")
        return sampler.nchw_to_nhwc(arr)

    def _preview_fn(self, x0: mx.array, height: int, width: int) -> Callable[[], Image.Image]:
        def preview() -> Image.Image:
            return self._previewer(sampler.unpack(x0[:1], height, width)[0])

        return preview


def _chunk_progress(callback: Callable[[StepEvent], None] | None, chunk: int, chunks: int,
                    t0: float) -> Callable[[StepEvent], None] | None:
    """Step events of batch `chunk` renumbered over all batches, time counted from t0."""
    if callback is None or chunks == 1:
        return callback

    def report(event: StepEvent) -> None:
        callback(dataclasses.replace(event, step=chunk * event.total + event.step, total=chunks * event.total,
                                     elapsed=time.perf_counter() - t0))

    return report


def activation_bytes(config, width: int, height: int, txt_len: int, dtype: mx.Dtype,
                     fused_attention: bool) -> int:
    """Peak activation memory of one image in one transformer step (an upper estimate).

    Inside a single block about 24 hidden-size rows per token are alive at once (residual,
    fused qkv|mlp projection, GELU, attention output, float32 RoPE copies of q and k). An
    unfused attention (the CPU's) also holds the heads x tokens^2 float32 scores twice
    (scores and softmax).
    """
    tokens = (width // 16) * (height // 16) + txt_len
    total = 24 * tokens * config.hidden_size * max(dtype.size, 4)
    if not fused_attention:
        total += 2 * config.num_heads * tokens * tokens * 4
    return total


def _check_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or v < 16 or v % 16:
            raise InputError(f"{name} must be a positive multiple of 16, not {v}")


def _to_pil(img: mx.array) -> Image.Image:
    """[-1, 1] float HWC -> 8-bit RGB, rounding like diffusers."""
    x = mx.clip(img.astype(mx.float32) * 0.5 + 0.5, 0.0, 1.0)
    arr = np.array(mx.round(x * 255.0)).astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")


def _transformer_config(files: ModelFiles) -> FluxConfig | None:
    """A single file's config, from its base's config.json (folders carry their own)."""
    if files.transformer.is_file() and files.transformer_config is not None:
        return FluxConfig.from_diffusers(files.transformer_config)
    return None


def _on_load(files: ModelFiles, quantize: int | None) -> int | None:
    # our quantized folder's components load as stored: nothing is left to quantize on load
    return None if files.quantized is not None else quantize
