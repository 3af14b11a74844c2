"""Fanning CPU work out over streams: same bits as the whole, bounded memory, off where it should be."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlx_flux import fanout, layers, memory


@pytest.fixture
def streams(monkeypatch):
    """Fan-out on, with a fresh set of `n` streams for this thread."""
    def use(n: int) -> None:
        monkeypatch.setenv("MLX_FLUX_FANOUT", "1")
        monkeypatch.setattr(fanout.os, "cpu_count", lambda: n)
        monkeypatch.setattr(fanout._local, "streams", None, raising=False)
    yield use
    fanout._local.streams = None


def _qkv(B=1, H=6, S=96, D=32):
    keys = mx.random.split(mx.random.key(3), 3)
    return [mx.random.normal((B, H, S, D), key=k) for k in keys]


def _pe(S=96, D=32):
    ids = mx.concatenate([mx.zeros((S, 1)), mx.arange(S)[:, None], mx.arange(S)[::-1, None]], axis=1)
    return layers.embed_nd(ids[None], (D // 2, D // 4, D // 4), 10000.0)[:, None]


def _attention(q, k, v, pe, fan: str, monkeypatch, piece_bytes: float = 1e18):
    monkeypatch.setenv("MLX_FLUX_FANOUT", fan)
    monkeypatch.setattr(layers, "ATTENTION_PIECE_BYTES", piece_bytes)
    out = layers.attention(q, k, v, pe)
    mx.eval(out)
    return out


def test_fan_out_covers_every_element_once_in_order(streams):
    streams(3)
    x = mx.arange(10)
    parts = fanout.fan_out(lambda a: a * 2, [x], axis=0, cpu_pieces=4)
    assert [p.shape[0] for p in parts] == [2, 3, 2, 3]
    assert np.array_equal(np.concatenate([np.array(p) for p in parts]), np.arange(10) * 2)
    # never more pieces than elements
    assert len(fanout.fan_out(lambda a: a, [mx.arange(2)], axis=0, cpu_pieces=9)) == 2


@pytest.mark.parametrize("n_streams", [1, 2, 3])
@pytest.mark.parametrize("piece_bytes", [1e18, 96 * 96 * 4 * 2])  # whole, or two heads a piece
def test_attention_fanned_out_is_bitwise_the_whole(streams, monkeypatch, n_streams, piece_bytes):
    q, k, v = _qkv()
    pe = _pe()
    whole = _attention(q, k, v, pe, "0", monkeypatch)
    streams(n_streams)
    split = _attention(q, k, v, pe, "1", monkeypatch, piece_bytes)
    assert split.shape == whole.shape == (1, 96, 6 * 32)
    assert mx.array_equal(split, whole).item()


def test_gelu_and_blocks_fanned_out_are_bitwise_the_whole(streams, monkeypatch):
    x = mx.random.normal((2, 5, 37), key=mx.random.key(1)) * 3
    monkeypatch.setenv("MLX_FLUX_FANOUT", "0")
    whole = layers.gelu_tanh(x)
    streams(2)
    parts = layers.gelu_tanh_parts(x)
    assert len(parts) == 2
    assert mx.array_equal(mx.concatenate(parts, axis=-1), whole).item()

    block = layers.SingleStreamBlock(64, 4, 4.0)
    h = mx.random.normal((1, 40, 64), key=mx.random.key(2))
    vec = mx.random.normal((1, 64), key=mx.random.key(4))
    pe = _pe(40, 16)
    out_fan = block(h, vec, pe)
    monkeypatch.setenv("MLX_FLUX_FANOUT", "0")
    assert mx.array_equal(block(h, vec, pe), out_fan).item()


def test_gelu_is_the_tanh_approximation():
    x = np.linspace(-8, 8, 2001, dtype=np.float32)
    ref = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x.astype(np.float64) ** 3)))
    np.testing.assert_allclose(np.array(layers.gelu_tanh(mx.array(x))), ref, rtol=2e-6, atol=2e-7)
    bf = layers.gelu_tanh(mx.array(x).astype(mx.bfloat16))
    assert bf.dtype == mx.bfloat16


def test_attention_pieces_bound_the_cpu_working_set(streams, monkeypatch):
    """Many small pieces must not all be alive at once (MLX runs a wide graph level by level)."""
    q, k, v = _qkv(H=16, S=512, D=32)
    pe = _pe(512, 32)
    mx.eval(q, k, v, pe)
    streams(2)

    def peak(piece_bytes: float) -> int:
        _attention(q, k, v, pe, "1", monkeypatch, piece_bytes)  # warm
        base = mx.get_active_memory()
        mx.reset_peak_memory()
        _attention(q, k, v, pe, "1", monkeypatch, piece_bytes)
        return mx.get_peak_memory() - base

    scores = 16 * 512 * 512 * 4  # all heads' float32 scores: 16 MiB
    one_piece_per_stream, one_head_per_piece = peak(1e18), peak(512 * 512 * 4)
    assert one_piece_per_stream >= scores
    assert one_head_per_piece < scores / 2


def test_off_the_cpu_or_switched_off_it_is_one_call(streams, monkeypatch):
    streams(4)
    monkeypatch.setenv("MLX_FLUX_FANOUT", "0")
    assert len(fanout.fan_out(lambda a: a, [mx.arange(8)], axis=0)) == 1
    # pieces asked for memory's sake still apply on the CPU without extra streams
    assert len(fanout.fan_out(lambda a: a, [mx.arange(8)], axis=0, cpu_pieces=4)) == 4
    monkeypatch.setenv("MLX_FLUX_FANOUT", "1")
    monkeypatch.setattr(fanout.mx, "default_device", lambda: mx.gpu)
    assert len(fanout.fan_out(lambda a: a, [mx.arange(8)], axis=0, cpu_pieces=4)) == 1


def test_cpu_cache_keeps_a_steps_buffers(monkeypatch):
    previous = mx.set_cache_limit(0)
    try:
        monkeypatch.setattr(memory, "machine_memory", lambda: 16 * memory.GB)
        memory.configure_cache()
        assert mx.set_cache_limit(0) == 2 * memory.GB  # an eighth of the machine, at most 4 GB
        monkeypatch.setattr(memory, "machine_memory", lambda: 128 * memory.GB)
        memory.configure_cache()
        assert mx.set_cache_limit(0) == memory.CPU_CACHE_LIMIT
    finally:
        mx.set_cache_limit(previous)
