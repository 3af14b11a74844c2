"""The VAE: parity with diffusers' AutoencoderKL from both checkpoint layouts, the weight
mapping and its errors, banded and tiled decoding, bfloat16 loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map_with_path
from safetensors.numpy import load_file, save_file

import tiny_models
from mlx_flux import autoencoder
from mlx_flux.autoencoder import AutoEncoder, AutoEncoderConfig, GroupNorm, load_autoencoder, sanitize
from mlx_flux.weights import WeightError, load_safetensors

SCALE, SHIFT = 0.3611, 0.1159
LAYOUTS = ["vae", "ae.safetensors"]  # diffusers folder, BFL single file


@pytest.fixture(scope="module")
def reference(torch_ref):
    """The diffusers AutoencoderKL whose weights tiny_schnell holds (build_hf_layout seeds it 0 + 1)."""
    return tiny_models.make_vae(1)


@pytest.fixture(scope="module")
def vaes(tiny_schnell) -> dict[str, AutoEncoder]:
    return {layout: load_autoencoder(tiny_schnell / layout, mx.float32) for layout in LAYOUTS}


def _nchw(torch, a: np.ndarray):
    return torch.from_numpy(a).permute(0, 3, 1, 2)


def _report(name: str, ours: np.ndarray, ref: np.ndarray) -> float:
    err = np.abs(ours - ref).max()
    print(f"{name}: max abs err {err:.2e}, max rel err {err / np.abs(ref).max():.2e}")
    return err


# --- parity with diffusers ------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_decode_matches_diffusers(vaes, reference, torch_ref, layout):
    z = np.random.default_rng(0).standard_normal((2, 6, 10, 16)).astype(np.float32)  # non-square
    image = np.array(vaes[layout].decode(mx.array(z), tile=0))
    with torch_ref.no_grad():
        ref = reference.decode(_nchw(torch_ref, z) / SCALE + SHIFT).sample.permute(0, 2, 3, 1).numpy()
    assert image.shape == ref.shape == (2, 48, 80, 3)
    assert _report(f"decode {layout}", image, ref) < 5e-5 * np.abs(ref).max()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_encode_matches_diffusers(vaes, reference, torch_ref, layout):
    # 40x56 -> a 5x7 latent: odd sizes exercise the asymmetric down-sampling padding.
    x = np.random.default_rng(1).uniform(-1, 1, (2, 40, 56, 3)).astype(np.float32)
    z = np.array(vaes[layout].encode(mx.array(x)))
    with torch_ref.no_grad():
        mean = reference.encode(_nchw(torch_ref, x)).latent_dist.mean
        ref = ((mean - SHIFT) * SCALE).permute(0, 2, 3, 1).numpy()
    assert z.shape == ref.shape == (2, 5, 7, 16)
    assert _report(f"encode {layout}", z, ref) < 5e-5 * np.abs(ref).max()


def test_both_layouts_load_identical_weights(vaes):
    a = dict(tree_flatten(vaes["vae"].parameters()))
    b = dict(tree_flatten(vaes["ae.safetensors"].parameters()))
    assert a.keys() == b.keys()
    for name in a:
        assert mx.array_equal(a[name], b[name]), name
    assert vaes["vae"].config == vaes["ae.safetensors"].config  # inferred from shapes == config.json


def test_group_norm_matches_torch(torch_ref):
    """A variance of the order of eps catches a wrong eps (1e-5 would be off by ~2 here); a
    large mean catches naive statistics. The reference runs in float64: torch's own float32
    CPU group_norm is off by 1.6 on this input, ours by < 1e-3."""
    rng = np.random.default_rng(2)
    x = (3.0 + 1e-3 * rng.standard_normal((2, 5, 7, 64))).astype(np.float32)
    norm = GroupNorm(32, 64)
    norm.weight = mx.array(rng.standard_normal(64).astype(np.float32))
    norm.bias = mx.array(rng.standard_normal(64).astype(np.float32))
    ours = np.array(norm(mx.array(x)))
    as64 = lambda a: torch_ref.from_numpy(np.array(a)).double()
    ref = torch_ref.nn.functional.group_norm(
        _nchw(torch_ref, x).double(), 32, as64(norm.weight), as64(norm.bias), eps=1e-6
    ).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, atol=3e-3)


def test_banded_computation_matches_whole(vaes, monkeypatch):
    """One-row convolution bands, band-wise statistics and attention in query chunks give
    the same numbers as the single-band path the tiny model normally takes."""
    vae = vaes["vae"]
    z = mx.array(np.random.default_rng(3).standard_normal((1, 6, 10, 16)).astype(np.float32))
    x = mx.array(np.random.default_rng(4).uniform(-1, 1, (1, 24, 40, 3)).astype(np.float32))
    whole_dec, whole_enc = vae.decode(z, tile=0), vae.encode(x)
    monkeypatch.setattr(autoencoder, "_BAND_BYTES", 1)
    monkeypatch.setattr(autoencoder, "_SCORES_BYTES", 4 * 60 * 7)  # 7 queries at a time
    banded_dec, banded_enc = vae.decode(z, tile=0), vae.encode(x)
    assert mx.abs(banded_dec - whole_dec).max().item() < 1e-5
    assert mx.abs(banded_enc - whole_enc).max().item() < 1e-5


# --- the weight mapping ---------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_sanitize_maps_every_key(tiny_schnell, vaes, layout):
    path = tiny_schnell / layout
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    weights = sanitize(load_safetensors(files))
    expected = {k: v.shape for k, v in tree_flatten(vaes[layout].parameters())}
    assert {k: v.shape for k, v in weights.items()} == expected


def test_sanitize_transposes_and_renames():
    conv = mx.arange(4 * 3 * 3 * 3, dtype=mx.float32).reshape(4, 3, 3, 3)  # PyTorch [O, I, kh, kw]
    attn_conv = mx.arange(16, dtype=mx.float32).reshape(4, 4, 1, 1)
    linear = mx.arange(16, dtype=mx.float32).reshape(4, 4)
    diffusers = sanitize({
        "decoder.up_blocks.0.resnets.2.conv1.weight": conv,
        "decoder.up_blocks.3.resnets.0.conv_shortcut.weight": conv,
        "decoder.up_blocks.1.upsamplers.0.conv.weight": conv,
        "encoder.down_blocks.2.downsamplers.0.conv.bias": mx.zeros(4),
        "encoder.mid_block.resnets.1.norm2.weight": mx.zeros(4),
        "decoder.mid_block.attentions.0.to_out.0.weight": linear,
        "decoder.mid_block.attentions.0.group_norm.bias": mx.zeros(4),
        "decoder.conv_norm_out.weight": mx.zeros(4),
    })
    assert set(diffusers) == {
        "decoder.up.3.block.2.conv1.weight",  # diffusers counts up blocks in execution order
        "decoder.up.0.block.0.nin_shortcut.weight",
        "decoder.up.2.upsample.conv.weight",
        "encoder.down.2.downsample.conv.bias",
        "encoder.mid.block_2.norm2.weight",
        "decoder.mid.attn_1.proj_out.weight",
        "decoder.mid.attn_1.norm.bias",
        "decoder.norm_out.weight",
    }
    assert mx.array_equal(diffusers["decoder.up.3.block.2.conv1.weight"], conv.transpose(0, 2, 3, 1))
    assert mx.array_equal(diffusers["decoder.mid.attn_1.proj_out.weight"], linear)  # Linear: no transpose
    bfl = sanitize({"encoder.mid.attn_1.q.weight": attn_conv, "encoder.conv_in.weight": conv})
    assert mx.array_equal(bfl["encoder.mid.attn_1.q.weight"], linear)  # 1x1 conv -> Linear [O, I]
    assert mx.array_equal(bfl["encoder.conv_in.weight"], conv.transpose(0, 2, 3, 1))


# --- errors ---------------------------------------------------------------------------------

def _edited_copy(tiny_schnell: Path, tmp_path: Path, layout: str, edit) -> Path:
    """A copy of one layout with its tensors passed through `edit(dict) -> dict`."""
    src = tiny_schnell / layout
    dst = tmp_path / layout
    if src.is_dir():
        shutil.copytree(src, dst)
        file = next(dst.glob("*.safetensors"))
    else:
        shutil.copy(src, dst)
        file = dst
    save_file(edit(load_file(file)), file)
    return dst


@pytest.mark.parametrize("layout, key", [
    ("vae", "decoder.up_blocks.0.resnets.2.conv1.weight"),
    ("ae.safetensors", "decoder.up.3.block.2.conv1.weight"),
])
def test_missing_tensor_is_named(tiny_schnell, tmp_path, layout, key):
    path = _edited_copy(tiny_schnell, tmp_path, layout, lambda w: {k: v for k, v in w.items() if k != key})
    with pytest.raises(WeightError, match=r"missing.*decoder\.up\.3\.block\.2\.conv1\.weight"):
        load_autoencoder(path, mx.float32)


@pytest.mark.parametrize("layout, key", [
    ("vae", "encoder.mid_block.attentions.0.to_v.weight"),
    ("ae.safetensors", "encoder.mid.attn_1.v.weight"),
])
def test_misshapen_tensor_is_named(tiny_schnell, tmp_path, layout, key):
    def edit(w):
        w[key] = np.concatenate([w[key], w[key]])  # twice the output channels
        return w

    path = _edited_copy(tiny_schnell, tmp_path, layout, edit)
    with pytest.raises(WeightError, match=r"encoder\.mid\.attn_1\.v\.weight has shape"):
        load_autoencoder(path, mx.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unexpected_tensor_is_named(tiny_schnell, tmp_path, layout):
    extra = {"decoder.quant_conv.weight": np.zeros((4,), np.float32)}
    path = _edited_copy(tiny_schnell, tmp_path, layout, lambda w: {**w, **extra})
    with pytest.raises(WeightError, match=r"unexpected.*decoder\.quant_conv\.weight"):
        load_autoencoder(path, mx.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_truncated_file(tiny_schnell, tmp_path, layout):
    path = _edited_copy(tiny_schnell, tmp_path, layout, lambda w: w)
    file = next(path.glob("*.safetensors")) if path.is_dir() else path
    file.write_bytes(file.read_bytes()[:-100])
    with pytest.raises(WeightError, match="incomplete"):
        load_autoencoder(path, mx.float32)


def test_not_a_vae_and_missing_paths(tiny_schnell, tmp_path):
    with pytest.raises(WeightError, match="not an autoencoder"):
        load_autoencoder(tiny_schnell / "flux1-schnell.safetensors", mx.float32)
    with pytest.raises(WeightError, match="missing"):
        load_autoencoder(tmp_path / "nothing.safetensors", mx.float32)
    folder = tmp_path / "vae"
    shutil.copytree(tiny_schnell / "vae", folder)
    (folder / "config.json").unlink()
    with pytest.raises(WeightError, match="config.json"):
        load_autoencoder(folder, mx.float32)


def test_never_float16_and_inputs_checked(tiny_schnell, vaes):
    vae = load_autoencoder(tiny_schnell / "vae", mx.float16)  # the VAE overflows in float16
    assert vae.dtype == mx.bfloat16
    with pytest.raises(ValueError, match="NHWC"):
        vaes["vae"].decode(mx.zeros((1, 16, 6, 10)))  # NCHW by mistake
    with pytest.raises(ValueError, match="NHWC"):
        vaes["vae"].encode(mx.zeros((1, 3, 16, 16)))


# --- tiled decoding -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_vae() -> AutoEncoder:
    """Two levels (x2), narrow: cheap enough to decode a latent that needs many tiles."""
    vae = AutoEncoder(AutoEncoderConfig(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
                                        norm_num_groups=4, scale_factor=1.0, shift_factor=0.0))
    keys = iter(mx.random.split(mx.random.key(5), len(tree_flatten(vae.parameters()))))

    def draw(path, p):  # O(1) activations everywhere, every tensor matters (cf. tiny_models.randomize)
        noise = mx.random.normal(p.shape, key=next(keys))
        if p.ndim > 1:
            return noise * p[0].size ** -0.5
        return 1 + 0.2 * noise if "norm" in path and path.endswith("weight") else 0.1 * noise

    vae.update(tree_map_with_path(draw, vae.parameters()))
    mx.eval(vae.parameters())
    return vae


def _uneven_latent() -> mx.array:
    """Content whose statistics drift across the image, as in a real picture (sky vs ground),
    so tile-local normalisation would be visibly wrong."""
    z = mx.random.normal((1, 32, 40, 4), key=mx.random.key(6))
    rows = mx.linspace(0, 1, 32)[None, :, None, None]
    cols = mx.linspace(0, 1, 40)[None, None, :, None]
    return z * (0.5 + 2 * cols) + 3 * rows


def _boundaries(n: int, tile: int, f: int) -> list[int]:
    return [a * f for a, _ in autoencoder._spans(n, tile)[1:]]


def test_tiles_see_their_whole_receptive_field(small_vae, monkeypatch):
    """With the whole-image group-norm statistics imposed, tiled == untiled to rounding:
    the margins cover the receptive field and the blend is a partition of unity."""
    vae, z = small_vae, _uneven_latent()
    h = vae.decoder.latent_stage(z)
    seen = {}

    def spy(norm, x):
        seen[id(norm)] = norm.stats(x)
        return seen[id(norm)]

    untiled = vae.decoder.image_stage(h, stats=spy)
    exact = lambda norm, x: seen[id(norm)]
    tiled = vae._decode_tiles(h, 8, stats=exact)
    assert mx.abs(tiled - untiled).max().item() < 1e-5
    # ... and the check is sensitive: without the margin the tile edges show.
    monkeypatch.setattr(type(vae.decoder), "receptive_radius", lambda self: 0)
    short = vae._decode_tiles(h, 8, stats=exact)
    assert mx.abs(short - untiled).max().item() > 1e-2


def test_tiled_decode_is_close_and_seamless(small_vae):
    """Group norm is global, so tiles cannot be exact; the shared statistics must bring them
    far closer than tile-local normalisation (diffusers' tiling), and no tile edge may show."""
    vae, z = small_vae, _uneven_latent()
    h = vae.decoder.latent_stage(z)
    untiled = np.array(vae.decoder.image_stage(h))
    tiled = np.array(vae.decode(z, tile=8))  # 4 x 5 tiles of 16x16 pixels: a hard case
    local = np.array(vae._decode_tiles(h, 8, stats=lambda norm, x: norm.stats(x)))
    err, err_local = np.abs(tiled - untiled), np.abs(local - untiled)
    print(f"tiled vs untiled: max abs {err.max():.2e}, mean abs {err.mean():.2e} "
          f"(tile-local norms: {err_local.max():.2e}, {err_local.mean():.2e}); image std {untiled.std():.2f}")
    assert err.mean() < 0.04 * untiled.std()
    assert err.mean() < 0.2 * err_local.mean() and err.max() < 0.2 * err_local.max()
    # No seams: across tile boundaries the tiled image steps as much as the untiled one,
    # and the error changes no faster there than elsewhere.
    f = vae.config.downscale
    for axis, n in ((2, 40), (1, 32)):
        at = [b - 1 for b in _boundaries(n, 8, f)]
        step_tiled, step_untiled = np.abs(np.diff(tiled, axis=axis)), np.abs(np.diff(untiled, axis=axis))
        mismatch = np.abs(np.take(step_tiled, at, axis=axis) - np.take(step_untiled, at, axis=axis))
        assert mismatch.mean() < 0.05 * np.take(step_untiled, at, axis=axis).mean()
        err_step = np.abs(np.diff(tiled - untiled, axis=axis))
        assert np.take(err_step, at, axis=axis).mean() < 1.5 * err_step.mean()


def test_automatic_tiling_rule(small_vae, monkeypatch):
    z = _uneven_latent()[:, :16, :20]
    assert mx.array_equal(small_vae.decode(z), small_vae.decode(z, tile=0))  # small: untiled
    monkeypatch.setattr(autoencoder, "_TILE_ABOVE_BYTES", 0)
    monkeypatch.setattr(autoencoder, "_AUTO_TILE", 12)
    assert mx.array_equal(small_vae.decode(z), small_vae.decode(z, tile=12))


# --- bfloat16 -------------------------------------------------------------------------------

def test_bfloat16(tiny_schnell, vaes):
    vae = load_autoencoder(tiny_schnell / "ae.safetensors", mx.bfloat16)
    assert {p.dtype for _, p in tree_flatten(vae.parameters())} == {mx.bfloat16}
    z = mx.array(np.random.default_rng(7).standard_normal((1, 6, 10, 16)).astype(np.float32))
    image = vae.decode(z)
    assert image.dtype == mx.bfloat16
    image = np.array(image.astype(mx.float32))
    ref = np.array(vaes["vae"].decode(z))
    assert np.isfinite(image).all()
    assert np.abs(image - ref).max() < 0.05 * np.abs(ref).max()
    latent = vae.encode(mx.array(np.random.default_rng(8).uniform(-1, 1, (1, 16, 24, 3)).astype(np.float32)))
    assert latent.dtype == mx.float32 and np.isfinite(np.array(latent)).all()
