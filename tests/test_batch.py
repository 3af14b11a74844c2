"""Batches (chunked to fit memory), warm start, and the CLI's --seeds / --count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from mlx_flux import FluxPipeline, memory, pipeline
from mlx_flux.metadata import read_metadata
from mlx_flux.pipeline import InputError

PROMPT = "a lighthouse in the fog"
SIZE = dict(width=48, height=32, steps=2)
SEEDS = [3, 4, 5]
SCRIPT = Path(sys.executable).parent / "mlx-flux"


@pytest.fixture(scope="module")
def pipe(tiny_schnell):
    return FluxPipeline.from_pretrained(tiny_schnell, dtype="float32")


@pytest.fixture(scope="module")
def singles(pipe):
    """One-at-a-time results, the reference every batch must reproduce."""
    return {s: pipe.generate(PROMPT, seed=s, **SIZE) for s in SEEDS}


def assert_same(batch, singles):
    for r in batch:
        one = singles[r.seed]
        # Bit for bit: a batch row goes through exactly the per-row arithmetic of a batch of one.
        np.testing.assert_array_equal(r.latents, one.latents)
        np.testing.assert_array_equal(np.asarray(r.image), np.asarray(one.image))
        assert r.metadata == one.metadata


@pytest.mark.parametrize("max_batch, chunks", [
    (1, [1, 1, 1]),
    (2, [2, 1]),
    (3, [3]),
    (64, [3]),
])
def test_chunks_equal_one_at_a_time(pipe, singles, monkeypatch, max_batch, chunks):
    sizes = []
    real = pipe.transformer.step

    def spy(img, t, cond):  # the batch axis of what the transformer is given, once per chunk
        sizes.append(img.shape[0])
        return real(img, t, cond)

    monkeypatch.setattr(pipe.transformer, "step", spy)
    batch = pipe.generate_batch(PROMPT, seeds=SEEDS, max_batch=max_batch, **SIZE)
    assert sizes[:: SIZE["steps"]] == chunks and len(sizes) == len(chunks) * SIZE["steps"]
    assert [r.seed for r in batch] == SEEDS
    assert_same(batch, singles)


def test_automatic_batch_size(pipe, singles):
    batch = pipe.generate_batch(PROMPT, seeds=[5, 3], **SIZE)
    assert [r.seed for r in batch] == [5, 3]
    assert_same(batch, singles)


def test_step_events_count_over_all_chunks(pipe):
    events = []
    pipe.generate_batch(PROMPT, seeds=[1, 2, 3], max_batch=2, callback=events.append,
                        **{**SIZE, "width": 32, "height": 32})
    assert [(e.step, e.total) for e in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(b.elapsed >= a.elapsed for a, b in zip(events, events[1:]))
    assert events[-1].preview().mode == "RGB"


@pytest.mark.parametrize("kwargs, message", [
    (dict(seeds=[]), "seeds must not be empty"),
    (dict(seeds=[1], max_batch=0), "max_batch must be at least 1"),
    (dict(seeds=[1], width=40), "width must be a positive multiple of 16"),
])
def test_bad_batches_are_refused(pipe, kwargs, message):
    with pytest.raises(InputError, match=message):
        pipe.generate_batch(PROMPT, **{**dict(width=32, height=32), **kwargs})


def test_auto_max_batch_follows_free_memory(pipe, monkeypatch):
    per_image = pipeline.activation_bytes(pipe.transformer.config, 64, 64, pipe.t5_length, pipe.dtype,
                                          fused_attention=False)
    active = mx.get_active_memory()
    monkeypatch.setattr(memory, "machine_memory", lambda: active + 2 * 7 * per_image + 10)
    assert pipe.auto_max_batch(64, 64) == 7  # half of what is free goes to activations
    monkeypatch.setattr(memory, "machine_memory", lambda: 0)
    assert pipe.auto_max_batch(64, 64) == 1  # never less than one image


def test_activation_estimate_grows_with_the_image():
    from mlx_flux.transformer import FluxConfig

    flux = FluxConfig()  # the real FLUX.1 dimensions
    small = pipeline.activation_bytes(flux, 512, 512, 256, mx.bfloat16, fused_attention=True)
    large = pipeline.activation_bytes(flux, 1024, 1024, 256, mx.bfloat16, fused_attention=True)
    unfused = pipeline.activation_bytes(flux, 1024, 1024, 256, mx.bfloat16, fused_attention=False)
    assert small < large < unfused
    # 1024x1024: 4352 tokens x 3072 x 24 rows x 4 bytes ~ 1.3 GB; attention scores add ~3.6 GB
    assert 1.0e9 < large < 1.6e9 and 4e9 < unfused < 6e9


def test_warmup_runs_once_and_changes_nothing(tiny_schnell, singles, monkeypatch):
    pipe = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32")
    pipe.compile = False  # count eager steps (a GPU would compile them)
    steps = []
    real = pipe.transformer.step
    monkeypatch.setattr(pipe.transformer, "step", lambda *a: steps.append(1) or real(*a))
    assert pipe.warmup(48, 32, batch=2, force=True) > 0
    assert steps == [1]  # one step, at the requested shape
    assert_same([pipe.generate(PROMPT, seed=4, **SIZE)], singles)
    with pytest.raises(InputError):
        pipe.warmup(50, 32)


def test_warmup_on_the_cpu_only_encodes(pipe, monkeypatch):
    """On the CPU a first step is as fast as later ones: a warm-up step would only cost time."""
    if mx.default_device() != mx.cpu:
        pytest.skip("the GPU warm-up runs a step")

    def fail(*a):
        raise AssertionError("a transformer step ran")

    monkeypatch.setattr(pipe.transformer, "step", fail)
    pipe.warmup(48, 32)
    assert "" in pipe._prompts


def test_warmup_does_not_load_released_encoders(tiny_schnell):
    pipe = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", low_memory=True)
    pipe.warmup(32, 32, force=True)
    assert pipe._clip is None and pipe._t5 is None


def test_compile_is_used_only_where_it_pays(tiny_schnell, monkeypatch):
    # On the CPU mx.compile measured no faster and costs ~20 s of C++ compilation: a generation
    # there runs the eager step; on a GPU, the compiled one.
    pipe = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32")
    used = []
    for name in ("step", "compiled_step"):
        real = getattr(pipe.transformer, name)
        monkeypatch.setattr(pipe.transformer, name, lambda *a, _n=name, _r=real: used.append(_n) or _r(*a))
    pipe.generate(PROMPT, seed=1, **SIZE)
    assert used == ["compiled_step" if mx.default_device() == mx.gpu else "step"] * SIZE["steps"]


@pytest.mark.slow  # the CPU backend JIT-compiles the fused kernels (~20 s the first time on a machine)
@pytest.mark.parametrize("dtype, quantize, levels", [("float32", None, 1), ("bfloat16", None, 8), ("bfloat16", 4, 8)])
def test_the_gpu_path_traces_once_per_shape(tiny_schnell, monkeypatch, dtype, quantize, levels):
    """What a Mac runs: the compiled step. A retrace costs a first step's time (13x a later
    one on CUDA), so it must happen once per shape, not per step, seed or generation."""
    pipe = FluxPipeline.from_pretrained(tiny_schnell, dtype=dtype, quantize=quantize)
    linear1 = pipe.transformer.single_blocks[0].linear1
    assert isinstance(linear1, nn.QuantizedLinear) == (quantize is not None)
    eager = {s: pipe.generate(PROMPT, seed=s, **SIZE) for s in (3, 4)}
    pipe.compile = True
    traced: list[tuple[int, ...]] = []
    real = pipe.transformer.step
    monkeypatch.setattr(pipe.transformer, "step", lambda img, *a: traced.append(img.shape) or real(img, *a))
    pipe.warmup(SIZE["width"], SIZE["height"], force=True)
    compiled = [pipe.generate(PROMPT, seed=s, **SIZE) for s in (3, 4)]
    compiled += pipe.generate_batch(PROMPT, seeds=[3, 4], max_batch=2, **SIZE)
    pipe.generate_batch(PROMPT, seeds=[5, 6], max_batch=2, **SIZE)
    pipe.generate(PROMPT, seed=3, width=32, height=32, steps=2)
    tokens = (SIZE["width"] // 16) * (SIZE["height"] // 16)
    assert traced == [(1, tokens, 64), (2, tokens, 64), (1, 4, 64)]
    for r in compiled:  # the fused kernels round differently, nothing more
        diff = np.abs(np.asarray(r.image, dtype=int) - np.asarray(eager[r.seed].image, dtype=int))
        assert diff.max() <= levels, (r.seed, diff.max())


# --- command line ---------------------------------------------------------------------------

def run_cli(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_cli_count_and_seed_template(tiny_schnell, tmp_path):
    proc = run_cli("generate", "--model", tiny_schnell, "--prompt", PROMPT, "--width", 32, "--height", 32,
                   "--steps", 1, "--count", 3, "--output", "img-{seed}.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = [Path(line) for line in proc.stdout.split()]
    assert len(written) == 3 and all((tmp_path / p).is_file() for p in written)
    seeds = [read_metadata(tmp_path / p)["seed"] for p in written]
    assert [p.name for p in written] == [f"img-{s}.png" for s in seeds]
    assert seeds == list(range(seeds[0], seeds[0] + 3))  # consecutive from a random start


def test_cli_seeds_match_the_python_api(tiny_schnell, tmp_path, singles):
    from PIL import Image

    proc = run_cli("generate", "--model", tiny_schnell, "--prompt", PROMPT, "--width", 48, "--height", 32,
                   "--steps", 2, "--seeds", "5,3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["flux-5.png", "flux-3.png"]
    for seed in (5, 3):
        with Image.open(tmp_path / f"flux-{seed}.png") as im:
            cli = np.asarray(im.convert("RGB"))
        api = np.asarray(singles[seed].image)
        np.testing.assert_array_equal(cli, api)
