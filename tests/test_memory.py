"""Memory: model sizes from headers, the low-memory decision, phased generation, per-phase peaks."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_flux import FluxPipeline, memory
from mlx_flux.loading import find_files
from mlx_flux.quantized_writer import quantize_to_folder

PROMPT = "a lighthouse at dusk"
GB = memory.GB


def nbytes(module) -> int:
    return sum(v.nbytes for _, v in tree_flatten(module.parameters()))


@pytest.fixture(scope="module")
def normal(tiny_schnell):
    return FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", low_memory=False)


def test_sizes_from_headers_match_what_loads(tiny_schnell, normal, tmp_path):
    sizes = memory.component_bytes(find_files(tiny_schnell), mx.float32, None)
    assert sizes["transformer"] == nbytes(normal.transformer)
    assert sizes["vae"] == nbytes(normal.vae)
    assert sizes["text_encoder_2"] == nbytes(normal._t5) and sizes["text_encoder"] == nbytes(normal._clip)
    # a quantized folder: the stored sizes are what loads
    q4 = quantize_to_folder(tiny_schnell, 4, tmp_path / "q4", dtype="float32")
    loaded = FluxPipeline.from_pretrained(q4, dtype="float32", low_memory=False)
    stored = memory.component_bytes(find_files(q4), mx.float32, None)
    assert stored["transformer"] == nbytes(loaded.transformer)
    assert stored["transformer"] < sizes["transformer"] / 2


def test_plan_decides_from_the_budget():
    sizes = {"transformer": 24 * GB, "text_encoder_2": 9 * GB, "text_encoder": GB // 4, "vae": GB // 6}
    assert memory.plan(sizes, budget=64 * GB).low_memory is False
    low = memory.plan(sizes, budget=24 * GB)
    assert low.low_memory and low.need > low.budget
    assert memory.plan(sizes, low_memory=False, budget=GB).low_memory is False  # an explicit choice wins


def test_auto_low_memory_follows_the_machine(tiny_schnell, monkeypatch):
    monkeypatch.setattr(memory, "machine_memory", lambda: 1 * GB)  # the tiny model + one step's working set
    small = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32")
    assert small.low_memory and small._t5 is None  # encoders only loaded when a prompt needs them
    monkeypatch.setattr(memory, "machine_memory", lambda: 512 * GB)
    assert not FluxPipeline.from_pretrained(tiny_schnell, dtype="float32").low_memory


def test_low_memory_phases_give_the_same_image(tiny_schnell, normal, monkeypatch):
    low = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", low_memory=True)
    tiles = []
    decode = low.vae.decode
    monkeypatch.setattr(low.vae, "decode", lambda z, tile=None: tiles.append(tile) or decode(z, tile=tile))
    a = low.generate(PROMPT, width=96, height=64, steps=2, seed=4)
    b = normal.generate(PROMPT, width=96, height=64, steps=2, seed=4)
    assert low._clip is None and low._t5 is None  # released after encoding
    assert tiles == [memory.LOW_MEMORY_TILE]  # decoded in tiles (the VAE's tests check the seams)
    np.testing.assert_array_equal(a.latents, b.latents)
    np.testing.assert_array_equal(np.asarray(a.image), np.asarray(b.image))  # one tile covers 96 x 64


def test_peak_memory_is_reported_per_phase(normal):
    r = normal.generate(PROMPT, width=64, height=64, steps=2, seed=1)
    assert set(r.memory) == {"encode", "denoise", "decode"}
    weights = nbytes(normal.transformer)
    assert r.memory["denoise"] >= weights  # the weights are resident while denoising
    assert all(isinstance(v, int) and v > 0 for v in r.memory.values())


def test_peak_meter_sees_an_allocation():
    meter = memory.PeakMeter()
    meter.start("a")
    x = mx.zeros((1024, 1024))  # 4 MiB
    mx.eval(x)
    meter.start("b")
    meter.stop()
    assert meter.peaks["a"] >= x.nbytes and meter.peaks["b"] >= x.nbytes  # b starts with x resident


def test_steps_are_reported_in_order_while_the_next_is_queued(normal, monkeypatch):
    """Step k is reported (callback, previews) only after step k+1 is built and handed to MLX to
    evaluate asynchronously, so the device computes while Python reports."""
    order, events = [], []
    real_step, real_async = normal.transformer.step, mx.async_eval
    monkeypatch.setattr(normal.transformer, "step", lambda *a: order.append("build") or real_step(*a))
    monkeypatch.setattr(mx, "async_eval", lambda *a: order.append("queue") or real_async(*a))
    normal.generate(PROMPT, width=32, height=32, steps=4, seed=2,
                    callback=lambda e: order.append(f"report {e.step}") or events.append(e))
    assert order == ["build", "queue", "build", "queue", "report 1", "build", "queue", "report 2",
                     "build", "queue", "report 3", "report 4"]
    assert [e.step for e in events] == [1, 2, 3, 4] and all(e.total == 4 for e in events)
    assert all(a.elapsed <= b.elapsed for a, b in zip(events, events[1:]))
    assert events[-1].preview().size[0] > 0


def cache_limit() -> int:
    limit = mx.set_cache_limit(0)  # returns the limit it replaces
    mx.set_cache_limit(limit)
    return limit


def test_each_generation_sets_the_cpu_cache_its_mode_wants(tiny_schnell, normal):
    """The limit is the process's: a low-memory pipeline next to a normal one must not leave
    the normal one without its cache, nor take the low-memory one's memory."""
    if mx.default_device() != mx.cpu:
        pytest.skip("MLX's own cache limit stands on a GPU")
    low = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", low_memory=True)
    big = min(memory.CPU_CACHE_LIMIT, memory.machine_memory() // 8)
    for pipe, want in [(low, memory.MLX_CPU_CACHE_LIMIT), (normal, big), (low, memory.MLX_CPU_CACHE_LIMIT)]:
        seen = []
        pipe.generate(PROMPT, width=32, height=32, steps=2, seed=1, callback=lambda e: seen.append(cache_limit()))
        assert seen == [want, want]


def test_pipeline_keeps_step_buffers_for_the_steps_only(normal, monkeypatch):
    cached_at_clear, cached_at_decode = [], []
    real_clear, real_decode = mx.clear_cache, normal.vae.decode

    def clear() -> None:
        cached_at_clear.append(mx.get_cache_memory())
        real_clear()

    def decode(z, tile=None):
        cached_at_decode.append(mx.get_cache_memory())
        return real_decode(z, tile=tile)

    monkeypatch.setattr(mx, "clear_cache", clear)
    monkeypatch.setattr(normal.vae, "decode", decode)
    normal.generate(PROMPT, width=256, height=256, steps=2, seed=1)
    # the steps' freed buffers were cached while they ran, handed back before the decoder
    # allocated its own, and the decoder's at the generation's end; what remains is what
    # its last local arrays released on return
    assert len(cached_at_clear) == 2 and min(cached_at_clear) > 1024**2
    assert len(cached_at_decode) == 1 and cached_at_decode[0] < cached_at_clear[0] / 10
    assert mx.get_cache_memory() < cached_at_clear[-1] / 10


# --- bounded evaluation -------------------------------------------------------------------------

def test_eval_headroom_sets_the_limit_from_what_is_resident_and_restores_it():
    before = mx.get_memory_limit()
    with memory.eval_headroom(123 * 1024**2):
        assert mx.get_memory_limit() == mx.get_active_memory() + 123 * 1024**2
    assert mx.get_memory_limit() == before
    with pytest.raises(KeyError):  # a cancelled generation raises through it
        with memory.eval_headroom(1024**2):
            raise KeyError("cancelled")
    assert mx.get_memory_limit() == before
    with memory.eval_headroom(None):
        assert mx.get_memory_limit() == before


def test_step_headroom_is_on_by_default_on_the_cpu_only(monkeypatch):
    from mlx_flux.transformer import FluxConfig

    cfg = FluxConfig()  # FLUX.1: 3 x 3072 + 12288 features in a single block's first projection
    monkeypatch.delenv("MLX_FLUX_BOUNDED_EVAL", raising=False)
    expected = memory.STEP_HEADROOM * 2 * 4608 * 21504 * 4
    assert memory.step_headroom(cfg, 2, 4608) == (expected if mx.default_device() == mx.cpu else None)
    monkeypatch.setenv("MLX_FLUX_BOUNDED_EVAL", "0")
    assert memory.step_headroom(cfg, 2, 4608) is None
    monkeypatch.setenv("MLX_FLUX_BOUNDED_EVAL", "1")
    assert memory.step_headroom(cfg, 2, 4608) == expected


def test_bounded_step_has_a_lower_peak_and_the_same_result():
    from mlx_flux import sampler
    from mlx_flux.transformer import Flux, FluxConfig

    cfg = FluxConfig(hidden_size=256, num_heads=2, depth=1, depth_single_blocks=3, context_in_dim=64,
                     vec_in_dim=32, guidance_embed=True)
    model = Flux(cfg)
    size, text = 256, 32
    keys = mx.random.split(mx.random.key(0), 3)
    img = mx.random.normal((1, (size // 16) ** 2, 64), key=keys[0])
    cond = model.prepare(mx.random.normal((1, text, 64), key=keys[1]), mx.random.normal((1, 32), key=keys[2]),
                         sampler.image_ids(size, size), sampler.text_ids(text), guidance=mx.array([3.5]))
    mx.eval(model.parameters(), img, cond)
    headroom = memory.STEP_HEADROOM * (img.shape[1] + text) * (3 * 256 + 1024) * 4

    def step(nbytes):
        base = mx.get_active_memory()
        mx.reset_peak_memory()
        with memory.eval_headroom(nbytes):
            v = model.step(img, mx.array([0.5]), cond)
            mx.eval(v)
        return v, mx.get_peak_memory() - base

    free, free_peak = step(None)
    bounded, bounded_peak = step(headroom)
    assert mx.array_equal(free, bounded)
    # evaluation may pass the limit by the operation that crossed it (at most half the headroom)
    assert bounded_peak <= 1.5 * headroom
    # queued freely, the blocks' temporaries pile up (measured: 10.7 MB against 5.6 MB)
    assert free_peak > 1.5 * bounded_peak


def test_pipeline_bounds_its_steps_and_the_bound_changes_no_pixel(normal, monkeypatch):
    default = mx.get_memory_limit()
    limits = []
    monkeypatch.setenv("MLX_FLUX_BOUNDED_EVAL", "1")
    bounded = normal.generate(PROMPT, width=64, height=64, steps=2, seed=3,
                              callback=lambda e: limits.append(mx.get_memory_limit()))
    assert len(limits) == 2 and all(lim < default for lim in limits)
    assert mx.get_memory_limit() == default
    monkeypatch.setenv("MLX_FLUX_BOUNDED_EVAL", "0")
    free = normal.generate(PROMPT, width=64, height=64, steps=2, seed=3,
                           callback=lambda e: limits.append(mx.get_memory_limit()))
    assert limits[2:] == [default, default]
    assert np.array_equal(np.asarray(bounded.image), np.asarray(free.image))
