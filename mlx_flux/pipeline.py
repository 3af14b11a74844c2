"""Text to image: tokenize, encode, denoise with the flow-matching sampler, decode.

`FluxPipeline` owns the loaded models and implements the `Engine` protocol (`generate`,
`generate_batch`). A generation runs in three phases, each under its memory policy:
prepare (encode the prompt, make the initial latents), denoise (the free generator
`sampler.denoise`, under bounded evaluation), decode (the VAE, the generation's peak).
Every request is resolved first (`resolve`), and the result carries the resolved request.
"""

from __future__ import annotations

import dataclasses
import gc
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import mlx.core as mx
import numpy as np
from PIL import Image

from . import hub, image_modes, images, memory, quantized_io, sampler, variants
from .autoencoder import load_autoencoder
from .clip import load_clip
from .engine import DECODE, GenerationResult, ImageInput, PhaseCallback, StepCallback, StepEvent
from .errors import FluxError, NonFiniteError
from .images import InputImage, load_image
from .loader import load_component
from .loading import ModelFiles, find_files
from .lora import ActiveLora, apply_loras, lora_scale, lora_target, text_encoder_part
from .lora_formats import LoraError, read_lora
from .preview import LatentPreviewer
from .request import EDIT, IMAGE_TO_IMAGE, INPAINT, OUTPAINT, GenerationRequest, ImageRef, InputError, LoraRef
from .t5 import SPEC as T5_SPEC
from .tokenizers import CLIPTokenizer, T5Tokenizer
from .transformer import FluxConfig, load_transformer
from .weights import default_dtype, parse_dtype

__all__ = ["FluxPipeline", "GenerationRequest", "GenerationResult", "InputError", "PromptEmbedding", "StepEvent"]


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
        self.variant_info = variants.detect(transformer.config.guidance_embed, files.model_index)
        self.variant: str = self.variant_info.name
        self.model_name = files.name
        self.default_steps: int = self.variant_info.steps
        self.default_guidance: float | None = self.variant_info.guidance
        self.t5_length: int = self.variant_info.t5_length
        self.clip_tokenizer = CLIPTokenizer.from_pretrained(files.tokenizer)
        self.t5_tokenizer = T5Tokenizer.from_pretrained(files.tokenizer_2)
        self._clip = None
        self._t5 = None
        self._prompts: OrderedDict[str, PromptEmbedding] = OrderedDict()
        self._loras: tuple[ActiveLora, ...] = ()
        self._previewer = LatentPreviewer(vae)
        # mx.compile fuses the elementwise work between matmuls: a gain on a GPU; on the CPU
        # it measured no faster and its first trace costs ~20 s of C++ compilation.
        self.compile: bool = mx.default_device() == mx.gpu
        # One generation at a time per pipeline: two threads would interleave their steps on one
        # model, its prompt cache and the process's MLX memory settings.
        self._lock = threading.RLock()

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model: str | Path, base: str | Path | None = None, dtype: str | None = None,
                        quantize: int | str | None = None, progress: hub.Progress | None = None,
                        low_memory: bool | None = None,
                        loras: Sequence[tuple[str | Path, float]] = (), force: bool = False) -> "FluxPipeline":
        """Load a model folder, a BFL single file (+ `base`), or a hub repo id.

        dtype None picks the device's best (bfloat16 on a GPU, float32 on the CPU).
        quantize 4 or 8 quantizes the transformer and T5 weights. low_memory releases the
        text encoders after each encoding, decodes in tiles and, on the CPU, keeps MLX's small
        buffer cache (see `memory.configure_cache`); None decides from the machine's memory
        and the model's size (see `memory.plan`). loras: (path or hub reference, scale) pairs,
        applied as `set_loras` would.

        A model that cannot fit the machine's memory even in low-memory mode is refused before
        anything is read (`memory.ModelTooLargeError`, naming the precision that fits) unless
        `force`; quantize="auto" picks the highest precision that fits (full, 8 or 4 bits).
        """
        if quantize not in (None, 4, 8, "auto"):
            raise InputError(f"quantize must be 4 or 8 bits or 'auto', not {quantize}")
        dt = parse_dtype(dtype) or default_dtype()
        files = find_files(model, base, progress)
        if files.quantized is not None:  # our quantized folder: loads as stored, never in full precision
            quantize = quantized_io.check_requested_bits(files.quantized, files.transformer.parent,
                                                         None if quantize == "auto" else quantize)
            memory.choose_precision(lambda _: memory.component_bytes(files, dt, quantize), quantize, force)
        else:  # from the headers' sizes, before anything is read
            quantize = memory.choose_precision(lambda bits: memory.component_bytes(files, dt, bits), quantize, force)
        if progress:
            progress("Loading transformer", None)
        # quantize=N quantizes each block as it is read
        transformer = load_transformer(files.transformer, dtype=dt, config=_transformer_config(files),
                                       quantize=_on_load(files, quantize))
        if variants.detect(True, files.model_index).fills and transformer.config.in_channels == transformer.config.out_channels:
            raise FluxError(f"{files.name} names FluxFillPipeline but its transformer takes "
                            f"{transformer.config.in_channels} input channels, not a Fill model's latents + masked image + mask")
        if progress:
            progress("Loading VAE", None)
        vae = load_autoencoder(files.vae, dtype=dt)
        if low_memory is None:
            low_memory = memory.plan(memory.component_bytes(files, dt, quantize)).low_memory
        pipe = cls(files, transformer, vae, dt, low_memory=low_memory, quantize=quantize)
        if loras:
            if progress:
                progress("Applying LoRAs", None)
            pipe.set_loras(loras)
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
            apply_loras(self._clip, self._loras, "text_encoder")
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

    # --- LoRAs -------------------------------------------------------------------------------

    def set_loras(self, loras: Sequence[tuple[str | Path, float]]) -> None:
        """Make `loras` ((path or hub reference, scale) pairs) the active set; [] removes all.

        The base weights are not reloaded: LoRAs are side paths on the layers they cover
        (`lora.apply_loras`). Every file is read and checked before anything changes, so a
        file that fails leaves the previous set active. A hub reference is `owner/repo` (its
        one .safetensors file) or `owner/repo:file.safetensors`, resolved through the Hugging
        Face cache as models are. Cached prompt embeddings made with other CLIP LoRAs are dropped.
        """
        active = tuple(ActiveLora(read_lora(hub.resolve_file(source)), lora_scale(scale)) for source, scale in loras)
        transformer, blocks = lora_target(self.transformer)
        with self._lock:  # not while another thread's generation runs on these layers
            try:
                apply_loras(transformer, active, "transformer", blocks)
                if self._clip is not None:
                    apply_loras(self._clip, active, "text_encoder")
            except LoraError:
                apply_loras(transformer, self._loras, "transformer", blocks)  # back to the set that worked
                if self._clip is not None:
                    apply_loras(self._clip, self._loras, "text_encoder")
                raise
            if text_encoder_part(active) != text_encoder_part(self._loras):
                self._prompts.clear()  # embeddings of the text encoder the old set changed
            self._loras = active

    @property
    def loras(self) -> tuple[LoraRef, ...]:
        """The active LoRAs as a request records them (file name, content hash, scale)."""
        return tuple(LoraRef(a.file.path.name, a.file.fingerprint(), a.scale) for a in self._loras)

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

    # --- requests ----------------------------------------------------------------------------

    def resolve(self, request: GenerationRequest, image: ImageInput | None = None,
                mask: ImageInput | None = None) -> GenerationRequest:
        """`request` checked and completed: this model's defaults, a random seed if it has none,
        the model's name, precision and LoRAs, and what it starts from (`mode`): exactly what
        the result will record.

        With an input `image`, a text-to-image model does img2img (strength default 0.6) and a
        Kontext model edits it; `image_modes.plan` gives the sizing rules. `request.image`
        records the image's content hash and the size the model saw it at; a request that has
        one needs the same image again.

        A Fill model repaints an input `image` where `mask` is white (inpaint; `request.mask`
        records the mask's hash at the output size) or extends it by `request.expand` (outpaint,
        `request.image` the original image, width/height the larger canvas); strength default
        1.0. See `image_modes.fill_plan` and `fill_mask` for the sizing and mask rules.
        """
        request.check()
        fills = self.variant_info.fills
        if not fills and (mask is not None or request.mask is not None or request.expand is not None):
            raise InputError(f"a mask or expand needs a FLUX.1 Fill model; {self.model_name} is not one")
        guided = self.transformer.config.guidance_embed
        picture = load_image(image) if image is not None else None
        stencil = load_image(mask) if mask is not None else None
        if fills:
            width, height, used, mode = image_modes.fill_plan(request, picture, stencil, self.model_name)
        else:
            width, height, used, mode = image_modes.plan(request, picture, self.variant_info, self.model_name)
        self.check_size(1024 if width is None else int(width), 1024 if height is None else int(height))
        if mode == INPAINT:
            image_modes.fill_mask(stencil, picture, int(width), int(height))  # refuses an all-black mask now
        return request.with_(
            width=1024 if width is None else int(width), height=1024 if height is None else int(height),
            steps=self.default_steps if request.steps is None else int(request.steps),
            # schnell has no guidance embedding: a value would be ignored, so none is recorded
            guidance=(self.default_guidance if request.guidance is None else float(request.guidance)) if guided
            else None,
            seed=secrets.randbelow(2**32) if request.seed is None else int(request.seed),
            image=None if picture is None else ImageRef(picture.ref.fingerprint, *used),
            mask=None if stencil is None else ImageRef(stencil.ref.fingerprint, int(width), int(height)),
            strength=(image_modes.DEFAULT_STRENGTH if request.strength is None else float(request.strength))
            if mode == IMAGE_TO_IMAGE else
            (image_modes.FILL_STRENGTH if request.strength is None else float(request.strength))
            if mode in (INPAINT, OUTPAINT) else None,
            model=self.model_name, quantize=self.quantize, loras=self.loras, mode=mode,
        )

    def generate(self, prompt: str | GenerationRequest, width: int | None = None, height: int | None = None,
                 steps: int | None = None, guidance: float | None = None, seed: int | None = None,
                 latents: np.ndarray | None = None, callback: StepCallback | None = None,
                 image: ImageInput | None = None, strength: float | None = None,
                 mask: ImageInput | None = None,
                 expand: tuple[int, int, int, int] | None = None,
                 on_phase: PhaseCallback | None = None) -> GenerationResult:
        """One image, from keyword options or from a `GenerationRequest` (then give no options
        but the input `image` the request names).

        width/height None: 1024, or with an input image the size `resolve` explains. `image`
        (a PIL image or a file) is img2img's start with `strength`, or a Kontext model's image
        to edit. See the README for the rest; raising from `callback` cancels. `on_phase(DECODE)`
        says the steps are done and the (unstoppable) VAE decode begins; raising from it cancels too.
        """
        request = GenerationRequest.of_call(prompt, width=width, height=height, steps=steps, guidance=guidance,
                                            seed=seed, strength=strength, expand=expand)
        picture = load_image(image) if image is not None else None
        stencil = load_image(mask) if mask is not None else None
        return self._generate(self.resolve(request, picture, stencil), None, latents, callback, picture, stencil,
                              on_phase)[0]

    def generate_batch(self, prompt: str | GenerationRequest, seeds: Sequence[int], width: int | None = None,
                       height: int | None = None, steps: int | None = None, guidance: float | None = None,
                       callback: StepCallback | None = None, max_batch: int | None = None,
                       image: ImageInput | None = None, strength: float | None = None,
                       mask: ImageInput | None = None,
                       expand: tuple[int, int, int, int] | None = None,
                       on_phase: PhaseCallback | None = None) -> list[GenerationResult]:
        """One image per seed, the prompt (and an input image) encoded once and the transformer
        run on batches.

        Batches hold at most `max_batch` seeds (None: as many as fit in memory, see
        `auto_max_batch`). Step events count over all batches (step 1..batches*steps);
        `on_phase(DECODE)` comes before each batch's decode.
        """
        request = GenerationRequest.of_call(prompt, width=width, height=height, steps=steps, guidance=guidance,
                                            strength=strength, expand=expand)
        seeds = list(seeds)
        if not seeds:
            raise InputError("seeds must not be empty")
        picture = load_image(image) if image is not None else None
        stencil = load_image(mask) if mask is not None else None
        request = self.resolve(request.with_(seed=seeds[0]), picture, stencil)
        for s in seeds:
            request.with_(seed=s).check()
        if max_batch is None:
            max_batch = self.auto_max_batch(request.width, request.height)
        elif max_batch < 1:
            raise InputError(f"max_batch must be at least 1, not {max_batch}")
        chunks = [seeds[i : i + max_batch] for i in range(0, len(seeds), max_batch)]
        t0 = time.perf_counter()
        results: list[GenerationResult] = []
        for k, chunk in enumerate(chunks):
            report = _chunk_progress(callback, k, len(chunks), t0)
            results += self._generate(request, [int(s) for s in chunk], None, report, picture, stencil, on_phase)
        return results

    def image_bytes(self, width: int, height: int) -> int:
        """Memory one width x height image needs beyond the weights: the larger of a denoising
        step's activations and the VAE decode's (tiled above 2 GiB: the image and the latent stage)."""
        step = activation_bytes(self.transformer.config, width, height, self.t5_length, self.dtype,
                                fused_attention=mx.default_device() == mx.gpu)
        shape = (1, height // 8, width // 8, self.vae.config.latent_channels)
        tiled = width * height * 3 * 4 * 2 + (height // 8) * (width // 8) * self.vae.config.block_out_channels[-1] * 16
        return max(step, min(self.vae.decode_bytes(shape), tiled))

    def check_size(self, width: int, height: int) -> None:
        """InputError when a width x height image cannot fit this machine's memory, naming the
        largest square that does (API, CLI and app all resolve through here)."""
        budget = memory.machine_memory()
        need = self.image_bytes(width, height)
        if need <= budget:
            return
        lo, hi = 1, max(1, max(width, height) // 16)  # sides in units of 16 pixels
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.image_bytes(16 * mid, 16 * mid) <= budget else (lo, mid - 1)
        largest = (f"the largest that fits is about {16 * lo}x{16 * lo}"
                   if self.image_bytes(16 * lo, 16 * lo) <= budget else "not even 16x16 fits")
        raise InputError(f"a {width}x{height} image needs about {memory.describe_bytes(need)} of memory; "
                         f"this machine has {memory.describe_bytes(budget)}: {largest}")

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
        GenerationRequest("", width=width, height=height).check()
        with self._lock:
            return self._warmup(width, height, batch, force)

    def _warmup(self, width: int, height: int, batch: int, force: bool) -> float:
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
        cond = self.condition(emb, batch, height, width, self.default_guidance or 1.0)
        model = self.transformer
        if self.variant_info.fills:  # the conditioning channels' shapes, as a generation has them
            model = image_modes.WithInputs(
                model, channels=mx.zeros((1, x.shape[1], self.transformer.config.in_channels - x.shape[2])))
        with memory.bounded_steps(self.transformer.config, batch, x.shape[1] + emb.txt.shape[1]):
            for _, x, _ in sampler.denoise(model, cond, x, sampler.FlowMatchEuler((1.0, 0.5)),
                                           compiled=self.compile):
                mx.eval(x)
        mx.eval(self.vae.decode(mx.zeros((1, 8, 8, channels), self.dtype)))
        return time.perf_counter() - t0

    # --- the phases of a generation ----------------------------------------------------------

    def sampler_for(self, request: GenerationRequest) -> sampler.FlowMatchEuler:
        """The schedule of a resolved request: the repo's scheduler config, else the variant's."""
        seq_len = (request.width // 16) * (request.height // 16)
        return sampler.FlowMatchEuler.for_model(request.steps, seq_len, self.files.scheduler,
                                                shift=self.variant_info.shift)

    def condition(self, emb: PromptEmbedding, batch: int, height: int, width: int,
                  guidance: float | None, extra_ids: mx.array | None = None):
        """The transformer's per-generation conditioning for a batch of height x width images,
        `extra_ids` the position ids of image tokens that follow the output's (a reference image)."""
        g = mx.full((batch,), guidance, dtype=mx.float32) if self.transformer.config.guidance_embed else None
        txt = mx.broadcast_to(emb.txt, (batch, *emb.txt.shape[1:]))
        pooled = mx.broadcast_to(emb.pooled, (batch, emb.pooled.shape[-1]))
        img_ids = sampler.image_ids(height, width)
        if extra_ids is not None:
            img_ids = mx.concatenate([img_ids, extra_ids], axis=0)
        return self.transformer.prepare(txt, pooled, img_ids, sampler.text_ids(emb.txt.shape[1]), guidance=g)

    def _generate(self, request: GenerationRequest, seeds: list[int] | None, latents: np.ndarray | None,
                  callback: StepCallback | None, image: InputImage | None = None,
                  mask: InputImage | None = None, on_phase: PhaseCallback | None = None) -> list[GenerationResult]:
        """Images of a resolved `request`, one per seed (None: the request's own seed)."""
        with self._lock:
            return self._generate_locked(request, seeds, latents, callback, image, mask, on_phase)

    def _generate_locked(self, request: GenerationRequest, seeds: list[int] | None, latents: np.ndarray | None,
                         callback: StepCallback | None, image: InputImage | None,
                         mask: InputImage | None = None,
                         on_phase: PhaseCallback | None = None) -> list[GenerationResult]:
        seeds = [request.seed] if seeds is None else seeds
        memory.configure_cache(self.low_memory)  # per generation: the limit is the process's, not ours
        meter = memory.PeakMeter()
        timings: dict[str, float] = {}

        meter.start("encode")
        t0 = time.perf_counter()
        emb = self.encode_prompt(request.prompt)
        x = self._noise(request, seeds, latents)
        steps = self.sampler_for(request)
        reference = fill = None
        if request.mode in (INPAINT, OUTPAINT):
            # diffusers' FluxFillPipeline: the masked image (repainted pixels zeroed) encoded once,
            # its latents and the packed mask read beside the output's latents at every step
            pixels, stencil = image_modes.fill_inputs(request, image, mask)
            masked = self._encode_image(pixels * (1.0 - stencil[None, :, :, None]))
            fill = image_modes.fill_condition(masked, stencil)
            steps = steps.start_at(image_modes.strength_start(steps.steps, request.strength))
            if steps.sigmas[0] < 1.0:
                x = image_modes.img2img_start(x, self._encode_image(pixels), steps.sigmas[0])
        elif request.mode == IMAGE_TO_IMAGE:
            steps = steps.start_at(image_modes.strength_start(steps.steps, request.strength))
            if steps.sigmas[0] < 1.0:  # at 1 the image would be multiplied by 0: pure noise, as text-to-image
                z = self._encode_image(images.fit(image, request.width, request.height))
                x = image_modes.img2img_start(x, z, steps.sigmas[0])
        elif request.mode == EDIT:
            w, h = request.image.width, request.image.height
            pixels = image_modes.reference_pixels(image, w, h)
            reference = image_modes.Reference.of(self._encode_image(pixels), w, h)
        timings["encode"] = time.perf_counter() - t0

        meter.start("denoise")
        t1 = time.perf_counter()
        final = self._denoise(request, emb, x, steps, callback, reference, fill)
        timings["denoise"] = time.perf_counter() - t1
        if on_phase is not None:
            on_phase(DECODE)  # may raise to cancel: nothing is decoded then

        # The steps' cached buffers have the transformer's sizes, not the decoder's: hand them back
        # before it allocates its own (the decode is a generation's peak; they would go at its end).
        mx.clear_cache()
        meter.start("decode")
        t2 = time.perf_counter()
        decoded = self._decode(final)
        timings["decode"] = time.perf_counter() - t2
        meter.stop()

        results = [GenerationResult(decoded[i], sampler.nhwc_to_nchw(final[i : i + 1]), request.with_(seed=seed),
                                    emb.truncated, dict(timings), dict(meter.peaks))
                   for i, seed in enumerate(seeds)]
        mx.clear_cache()  # between generations the app holds its weights, not the last image's buffers
        return results

    def _noise(self, request: GenerationRequest, seeds: list[int], latents: np.ndarray | None) -> mx.array:
        """The noise [B, H/8, W/8, C] of the output: the seeds', or the caller's (NCHW, as diffusers takes it)."""
        channels = self.vae.config.latent_channels
        h, w = request.height, request.width
        if latents is None:
            return mx.concatenate([sampler.noise(s, 1, h, w, channels) for s in seeds])
        arr = np.asarray(latents, dtype=np.float32)
        want = (len(seeds), channels, h // 8, w // 8)
        if arr.shape != want:
            raise InputError(f"latents must have shape {want} (N, C, H/8, W/8), not {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError("latents must be finite numbers (they hold NaN or infinity)")
        return sampler.nchw_to_nhwc(arr)

    def _encode_image(self, pixels: np.ndarray) -> mx.array:
        """VAE posterior mean of NHWC [-1, 1] pixels, scaled as the transformer sees latents."""
        z = self.vae.encode(mx.array(pixels))
        mx.eval(z)
        mx.clear_cache()  # the encoder's full-resolution buffers are no use to the steps
        return z

    def _denoise(self, request: GenerationRequest, emb: PromptEmbedding, x: mx.array, steps: sampler.Sampler,
                 callback: StepCallback | None, reference: image_modes.Reference | None = None,
                 fill: mx.array | None = None) -> mx.array:
        """Run the sampler from latents x [B, H/8, W/8, C]; returns the final latents, same layout."""
        h, w = request.height, request.width
        packed = sampler.pack(x)
        extra = None if reference is None else reference.ids
        cond = self.condition(emb, packed.shape[0], h, w, request.guidance, extra_ids=extra)
        model = self.transformer
        if reference is not None or fill is not None:
            model = image_modes.WithInputs(model, tokens=None if reference is None else reference.tokens, channels=fill)
        tokens = packed.shape[1] + emb.txt.shape[1] + (0 if reference is None else reference.tokens.shape[1])
        total = len(steps.sigmas) - 1
        t1 = time.perf_counter()

        def report(step: int, done: mx.array, x0: mx.array, finite: mx.array) -> None:
            mx.eval(done, finite)  # waits for this step only: the next one is already queued
            if not finite.item():  # NaN weights give a black image otherwise, and exit 0
                raise NonFiniteError(f"the model produced NaN/inf values at step {step}: "
                                     "the weights may be corrupt")
            if callback is not None:
                callback(StepEvent(step, total, time.perf_counter() - t1, steps.sigmas[step],
                                   self._preview_fn(x0, h, w)))

        pending = None
        with memory.bounded_steps(self.transformer.config, packed.shape[0], tokens):
            for step, packed, x0 in sampler.denoise(model, cond, packed, steps, compiled=self.compile):
                # Queue this step before reporting the previous one, so the device keeps computing
                # while Python waits, runs the callback (previews) and builds the next graph.
                finite = mx.isfinite(packed).all()  # one cheap reduction per step
                mx.async_eval(packed, x0, finite)
                if pending is not None:
                    report(*pending)
                pending = (step, packed, x0, finite)
            report(*pending)
        return sampler.unpack(packed, h, w)

    def _decode(self, final: mx.array) -> list[Image.Image]:
        """The VAE decode of final latents [B, H/8, W/8, C], one image at a time (the memory peak)."""
        tile = memory.LOW_MEMORY_TILE if self.low_memory else None  # None: the VAE decides by size
        images = []
        for i in range(final.shape[0]):
            img = self.vae.decode(final[i : i + 1].astype(self.dtype), tile=tile)[0]
            finite = mx.isfinite(img).all()
            mx.eval(img, finite)
            if not finite.item():
                raise NonFiniteError("the VAE produced NaN/inf values: its weights may be corrupt")
            images.append(_to_pil(img))
        return images

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
