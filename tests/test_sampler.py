"""The schedule, noise and packing against the reference numbers and diffusers."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlx_flux import sampler


def test_schnell_schedule_is_linear():
    assert sampler.schedule(4, 4096, shift=False) == [1.0, 0.75, 0.5, 0.25, 0.0]


@pytest.mark.parametrize(
    "seq_len, expected",
    [
        (4096, [1, 0.904531, 0.759511, 0.512844, 0]),  # 1024x1024, mu = 1.15
        (1024, [1, 0.849235, 0.652489, 0.384945, 0]),  # 512x512, mu = 0.63
    ],
)
def test_dev_schedule_matches_reference_values(seq_len, expected):
    np.testing.assert_allclose(sampler.schedule(4, seq_len, shift=True), expected, atol=1e-6)


def test_shift_is_not_clamped_above_4096_tokens():
    assert sampler.shift_mu(8192) > 1.15


@pytest.mark.parametrize("steps", [1, 4, 28, 50])
@pytest.mark.parametrize("seq_len", [16, 1024, 4080, 4096, 6000])
@pytest.mark.parametrize("variant", ["schnell", "dev"])
def test_schedule_matches_diffusers_scheduler(steps, seq_len, variant, torch_ref):
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    import tiny_models

    cfg = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
           "num_train_timesteps": 1000, **tiny_models.SCHEDULER[variant]}
    sched = FlowMatchEulerDiscreteScheduler(**cfg)
    mu = calculate_shift(seq_len, 256, 4096, 0.5, 1.15)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    ref = sched.sigmas.numpy()
    ours = sampler.config_schedule(cfg, steps, seq_len)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)
    # The BFL formula gives the same list for the official configs.
    np.testing.assert_allclose(sampler.schedule(steps, seq_len, shift=variant == "dev"), ref, atol=1e-6)


def test_pack_matches_diffusers_layout(torch_ref):
    from diffusers import FluxPipeline as DiffusersFlux

    torch = torch_ref
    nchw = torch.randn(2, 16, 6, 10, generator=torch.Generator().manual_seed(0))
    ref = DiffusersFlux._pack_latents(nchw, 2, 16, 6, 10).numpy()
    ours = np.array(sampler.pack(sampler.nchw_to_nhwc(nchw.numpy())))
    np.testing.assert_array_equal(ours, ref)
    back = sampler.nhwc_to_nchw(sampler.unpack(mx.array(ours), 48, 80))
    np.testing.assert_array_equal(back, nchw.numpy())


def test_image_ids_are_row_major_with_zero_first_axis(torch_ref):
    from diffusers import FluxPipeline as DiffusersFlux

    ids = np.array(sampler.image_ids(48, 80))
    ref = DiffusersFlux._prepare_latent_image_ids(1, 3, 5, "cpu", torch_ref.float32).numpy()
    np.testing.assert_array_equal(ids, ref)
    assert np.array(sampler.text_ids(7)).shape == (7, 3)


def test_noise_is_seeded_and_shaped():
    a = sampler.noise(42, 1, 64, 96)
    b = sampler.noise(42, 1, 64, 96)
    c = sampler.noise(43, 1, 64, 96)
    assert a.shape == (1, 8, 12, 16) and a.dtype == mx.float32
    assert mx.array_equal(a, b).item() and not mx.array_equal(a, c).item()
    assert abs(float(a.mean())) < 0.2 and abs(float(a.std()) - 1) < 0.2


def test_schedule_rejects_zero_steps():
    with pytest.raises(ValueError):
        sampler.schedule(0, 16, shift=False)


def test_euler_sampler_steps_and_clean_estimate():
    s = sampler.FlowMatchEuler.for_model(4, 256, shift=False)
    assert s.sigmas == (1.0, 0.75, 0.5, 0.25, 0.0) and s.steps == 4
    x, v = mx.array([2.0, -1.0]), mx.array([0.5, 4.0])
    # x_t = t * noise + (1 - t) * x0 and v = noise - x0, so x0 = x_t - t v, x_(t') = x_t + (t' - t) v
    np.testing.assert_allclose(np.array(s.step(x, v, 1)), [2.0 - 0.25 * 0.5, -1.0 - 0.25 * 4.0])
    np.testing.assert_allclose(np.array(s.x0(x, v, 1)), [2.0 - 0.75 * 0.5, -1.0 - 0.75 * 4.0])


def test_scheduler_config_wins_over_the_variant_rule():
    cfg = {"use_dynamic_shifting": False, "shift": 3.0}
    s = sampler.FlowMatchEuler.for_model(2, 4096, cfg, shift=True)
    assert s.sigmas == tuple(sampler.config_schedule(cfg, 2, 4096))
    assert s.sigmas != tuple(sampler.schedule(2, 4096, shift=True))


def test_partial_schedule_starts_later_and_keeps_the_end():
    s = sampler.FlowMatchEuler.for_model(10, 1024, shift=True)
    part = s.start_at(3)
    assert part.sigmas == s.sigmas[3:] and part.steps == 7 and part.sigmas[-1] == 0.0
    for bad in (-1, 10):
        with pytest.raises(ValueError, match="leaves no step"):
            s.start_at(bad)


class _Velocity:
    """A stand-in model: v = x * t (per batch row), enough to follow the loop's arithmetic."""

    dtype = mx.float32

    def __init__(self):
        self.calls = []

    def step(self, img, t, cond):
        self.calls.append((img.shape, np.array(t).tolist(), cond))
        return img * t[:, None, None]

    compiled_step = None


def test_denoise_runs_the_sampler_and_yields_each_step():
    model, s = _Velocity(), sampler.FlowMatchEuler((1.0, 0.6, 0.0))
    x = mx.ones((2, 3, 4))
    out = list(sampler.denoise(model, "cond", x, s))
    assert [step for step, _, _ in out] == [1, 2]
    np.testing.assert_allclose([c[1] for c in model.calls], [[1.0, 1.0], [0.6, 0.6]], rtol=1e-7)
    assert model.calls[0][2] == "cond"  # float32 sigmas for the model, as the reference passes them
    x1 = 1 + (0.6 - 1.0) * 1.0          # v = x * 1
    x2 = x1 + (0.0 - 0.6) * (x1 * 0.6)  # v = x1 * 0.6
    np.testing.assert_allclose(np.array(out[0][1]), np.full((2, 3, 4), x1), rtol=1e-6)
    np.testing.assert_allclose(np.array(out[1][1]), np.full((2, 3, 4), x2), rtol=1e-6)
    np.testing.assert_allclose(np.array(out[1][2]), np.full((2, 3, 4), x1 - 0.6 * x1 * 0.6), rtol=1e-6)
