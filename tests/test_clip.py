"""CLIP text tower: parity with transformers' CLIPTextModel, pooling rules, loading and its errors.

The reference runs the very files our loader reads (transformers' `from_pretrained` on the
same folder), in float32 on one thread.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from safetensors.numpy import load_file, save_file

from mlx_flux.clip import CLIPConfig, CLIPTextModel, load_clip
from mlx_flux.weights import WeightError

BOS, EOS = 49406, 49407
ATOL = RTOL = 1e-4


# --- helpers ----------------------------------------------------------------------------------

def clip_ids(content_lengths: list[int], length: int = 77, pad: int = EOS, seed: int = 0) -> np.ndarray:
    """Token ids as the tokenizer writes them: BOS, content, EOS, then padding."""
    rng = np.random.default_rng(seed)
    ids = np.full((len(content_lengths), length), pad, dtype=np.int64)
    for row, n in enumerate(content_lengths):
        ids[row, 0] = BOS
        ids[row, 1 : n + 1] = rng.integers(300, 49000, n)
        ids[row, n + 1] = EOS
    return ids


def run_torch(folder: Path, ids: np.ndarray, torch) -> tuple[np.ndarray, np.ndarray]:
    from transformers import CLIPTextModel as TorchCLIP

    model = TorchCLIP.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(ids))
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def run_mlx(model: CLIPTextModel, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hidden, pooled = model(mx.array(ids, dtype=mx.int32))
    return np.array(hidden.astype(mx.float32)), np.array(pooled.astype(mx.float32))


def errors(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Max abs error, and max relative error over entries not close to zero (|ref| > 1e-2)."""
    err = np.abs(ours - ref)
    big = np.abs(ref) > 1e-2
    return float(err.max()), float((err[big] / np.abs(ref[big])).max())


def assert_parity(label: str, ours: np.ndarray, ref: np.ndarray) -> None:
    abs_err, rel_err = errors(ours, ref)
    print(f"\n[parity] CLIP {label}: max abs {abs_err:.2e}, max rel {rel_err:.2e}, max |ref| {np.abs(ref).max():.2f}")
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL, err_msg=label)


def write_variant(src: Path, dst: Path, edit_weights=None, edit_config=None) -> Path:
    """A copy of a checkpoint folder with its tensors and/or config.json edited."""
    dst.mkdir(parents=True)
    weights = {}
    for f in sorted(src.glob("*.safetensors")):
        weights.update(load_file(f))
    config = json.loads((src / "config.json").read_text())
    if edit_weights:
        weights = edit_weights(weights)
    if edit_config:
        config = edit_config(config)
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    return dst


@pytest.fixture(scope="module")
def clip_dir(tiny_schnell) -> Path:
    return tiny_schnell / "text_encoder"


@pytest.fixture(scope="module")
def clip(clip_dir) -> CLIPTextModel:
    return load_clip(clip_dir, dtype=mx.float32)


@pytest.fixture(scope="module")
def small_clip_dir(clip_dir, tmp_path_factory) -> Path:
    """Embeddings scaled down so LayerNorm inputs have a variance near eps (1e-5).

    With O(1) activations a wrong epsilon moves outputs by ~1e-6, under any float32
    tolerance; here it changes the first normalisation by a large factor.
    """

    def shrink(w):
        for key in w:
            if "embedding" in key:
                w[key] = w[key] * np.float32(2e-3)
        return w

    return write_variant(clip_dir, tmp_path_factory.mktemp("clip-small") / "text_encoder", shrink)


# --- parity -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "content, length",
    [([5, 75], 77), ([12, 30], 77), ([3, 9], 16)],
    ids=["77-short-and-full", "77-typical", "16-short"],
)
def test_parity_with_transformers(clip, clip_dir, torch_ref, content, length):
    ids = clip_ids(content, length)
    hidden, pooled = run_mlx(clip, ids)
    ref_hidden, ref_pooled = run_torch(clip_dir, ids, torch_ref)
    assert_parity(f"last_hidden_state {content}/{length}", hidden, ref_hidden)
    assert_parity(f"pooler_output {content}/{length}", pooled, ref_pooled)


def test_parity_small_activations(small_clip_dir, torch_ref):
    ids = clip_ids([7, 40])
    hidden, pooled = run_mlx(load_clip(small_clip_dir, dtype=mx.float32), ids)
    ref_hidden, ref_pooled = run_torch(small_clip_dir, ids, torch_ref)
    assert_parity("last_hidden_state (small activations)", hidden, ref_hidden)
    assert_parity("pooler_output (small activations)", pooled, ref_pooled)


def test_tolerance_catches_wrong_epsilon_and_swapped_qk(clip_dir, small_clip_dir, torch_ref):
    """The parity check must fail for the bugs it is meant to catch."""
    ids = clip_ids([7, 40])
    ref_hidden, _ = run_torch(small_clip_dir, ids, torch_ref)
    model = load_clip(small_clip_dir, dtype=mx.float32)
    for layer in model.encoder.layers:
        layer.layer_norm1.eps = 1e-6  # nn.LayerNorm's eps is a plain attribute
    hidden, _ = run_mlx(model, ids)
    assert errors(hidden, ref_hidden)[0] > 100 * ATOL

    ref_hidden, _ = run_torch(clip_dir, ids, torch_ref)
    model = load_clip(clip_dir, dtype=mx.float32)
    attn = model.encoder.layers[0].self_attn
    attn.q_proj, attn.k_proj = attn.k_proj, attn.q_proj
    hidden, _ = run_mlx(model, ids)
    assert errors(hidden, ref_hidden)[0] > 100 * ATOL


# --- pooling ----------------------------------------------------------------------------------

def test_pooled_is_first_eos_and_ignores_what_follows(clip):
    ids = clip_ids([4, 20])
    hidden, pooled = run_mlx(clip, ids)
    np.testing.assert_array_equal(np.array(clip.eos_positions(mx.array(ids))), [5, 21])
    np.testing.assert_array_equal(pooled, hidden[[0, 1], [5, 21]])
    # causal attention + first-EOS pooling: padding id after the EOS cannot matter
    _, pooled_pad0 = run_mlx(clip, clip_ids([4, 20], pad=0))
    np.testing.assert_allclose(pooled_pad0, pooled, atol=1e-6)


@pytest.mark.parametrize("eos_token_id", [2, EOS], ids=["legacy-eos-2", "corrected-eos-49407"])
def test_pooled_rule_follows_config(clip_dir, tmp_path, torch_ref, eos_token_id):
    def set_eos(config):
        return {**config, "eos_token_id": eos_token_id}

    folder = write_variant(clip_dir, tmp_path / "text_encoder", edit_config=set_eos)
    model = load_clip(folder, dtype=mx.float32)
    assert model.config.eos_token_id == eos_token_id
    # Row 0 is a normal prompt, where both rules agree. Row 1 has neither BOS nor EOS: the
    # legacy rule pools at its largest id, the corrected one at position 0.
    ids = np.concatenate([clip_ids([6]), clip_ids([9], pad=0)])
    ids[1, [0, 4, 10]] = [300, 49000, 0]
    expected = [7, 4] if eos_token_id == 2 else [7, 0]
    np.testing.assert_array_equal(np.array(model.eos_positions(mx.array(ids))), expected)
    hidden, pooled = run_mlx(model, ids)
    ref_hidden, ref_pooled = run_torch(folder, ids, torch_ref)
    assert_parity(f"pooler_output eos_token_id={eos_token_id}", pooled, ref_pooled)


# --- loading ----------------------------------------------------------------------------------

def test_config_from_dict_ignores_unknown_keys(clip_dir):
    config = CLIPConfig.from_dict(json.loads((clip_dir / "config.json").read_text()))
    assert (config.hidden_size, config.num_hidden_layers, config.head_dim) == (24, 2, 6)
    assert config.eos_token_id == 2


def test_old_style_checkpoint(clip, clip_dir, tmp_path):
    """transformers 4.x layout: `text_model.` prefix, a position_ids buffer, `torch_dtype`."""

    def old_keys(w):
        out = {f"text_model.{k}": v for k, v in w.items()}
        out["text_model.embeddings.position_ids"] = np.arange(77, dtype=np.int64)[None]
        return out

    def old_config(config):
        config = {k: v for k, v in config.items() if k != "dtype"}
        return {**config, "torch_dtype": "float32", "transformers_version": "4.43.3", "_name_or_path": "x"}

    folder = write_variant(clip_dir, tmp_path / "text_encoder", old_keys, old_config)
    ids = clip_ids([5, 50])
    for ours, ref in zip(run_mlx(load_clip(folder, dtype=mx.float32), ids), run_mlx(clip, ids)):
        np.testing.assert_array_equal(ours, ref)


def test_sanitize_maps_every_key(clip_dir):
    weights = {}
    for f in clip_dir.glob("*.safetensors"):
        weights.update(load_file(f))
    model = CLIPTextModel(CLIPConfig.from_dict(json.loads((clip_dir / "config.json").read_text())))
    assert set(model.sanitize(weights)) == {k for k, _ in tree_flatten(model.parameters())}


def test_bfloat16_load(clip, clip_dir):
    model = load_clip(clip_dir, dtype=mx.bfloat16)
    assert {v.dtype for _, v in tree_flatten(model.parameters())} == {mx.bfloat16}
    ids = clip_ids([5, 60])
    hidden, pooled = model(mx.array(ids, dtype=mx.int32))
    assert hidden.dtype == pooled.dtype == mx.bfloat16
    hidden, pooled = np.array(hidden.astype(mx.float32)), np.array(pooled.astype(mx.float32))
    assert np.isfinite(hidden).all() and np.isfinite(pooled).all()
    ref_hidden, ref_pooled = run_mlx(clip, ids)
    for ours, ref in ((hidden, ref_hidden), (pooled, ref_pooled)):
        assert np.abs(ours - ref).max() < 0.05 * np.abs(ref).max()


def test_default_dtype_on_cpu(clip_dir):
    from mlx_flux.weights import default_dtype

    model = load_clip(clip_dir)
    assert model.final_layer_norm.weight.dtype == default_dtype()


# --- load errors ------------------------------------------------------------------------------

def test_missing_folder(tmp_path):
    with pytest.raises(WeightError, match="missing model folder"):
        load_clip(tmp_path / "nope")


def test_missing_config(clip_dir, tmp_path):
    folder = tmp_path / "text_encoder"
    shutil.copytree(clip_dir, folder)
    (folder / "config.json").unlink()
    with pytest.raises(WeightError, match="missing config.json"):
        load_clip(folder)


def test_missing_weights_file(clip_dir, tmp_path):
    folder = tmp_path / "text_encoder"
    folder.mkdir()
    shutil.copy(clip_dir / "config.json", folder)
    with pytest.raises(WeightError, match="no .safetensors"):
        load_clip(folder)


def test_truncated_file(clip_dir, tmp_path):
    folder = tmp_path / "text_encoder"
    shutil.copytree(clip_dir, folder)
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(WeightError, match="model.safetensors") as info:
        load_clip(folder)
    assert "corrupt" in str(info.value) and "\n" not in str(info.value)


def test_wrong_shape(clip_dir, tmp_path):
    def bad(w):
        w["encoder.layers.1.mlp.fc1.weight"] = w["encoder.layers.1.mlp.fc1.weight"][:-1]
        return w

    folder = write_variant(clip_dir, tmp_path / "text_encoder", bad)
    with pytest.raises(WeightError, match=r"encoder\.layers\.1\.mlp\.fc1\.weight has shape \(47, 24\)"):
        load_clip(folder)


def test_missing_tensor(clip_dir, tmp_path):
    def drop(w):
        del w["final_layer_norm.bias"]
        return w

    folder = write_variant(clip_dir, tmp_path / "text_encoder", drop)
    with pytest.raises(WeightError, match=r"missing final_layer_norm\.bias"):
        load_clip(folder)


def test_config_that_does_not_fit_the_weights(clip_dir, tmp_path):
    folder = write_variant(clip_dir, tmp_path / "text_encoder", edit_config=lambda c: {**c, "num_hidden_layers": 3})
    with pytest.raises(WeightError, match=r"missing encoder\.layers\.2\."):
        load_clip(folder)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: {**c, "hidden_act": "swish"}, "unsupported hidden_act 'swish'"),
        (lambda c: {**c, "num_attention_heads": 5}, "not divisible"),
        (lambda c: {k: v for k, v in c.items() if k != "hidden_size"}, "hidden_size"),
    ],
    ids=["activation", "heads", "missing-dimension"],
)
def test_unusable_config(clip_dir, tmp_path, edit, message):
    folder = write_variant(clip_dir, tmp_path / "text_encoder", edit_config=edit)
    with pytest.raises(WeightError, match=message) as info:
        load_clip(folder)
    assert "config.json" in str(info.value)
