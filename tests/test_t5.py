"""T5 encoder: parity with transformers' T5EncoderModel, position buckets, checkpoint variants, errors.

The reference runs the very files our loader reads (transformers' `from_pretrained` on the
same folder), in float32 on one thread, without an attention mask, as FLUX calls it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from safetensors.numpy import load_file, save_file

import tiny_models
from mlx_flux.t5 import T5Config, T5Encoder, load_t5, relative_position_bucket
from mlx_flux.weights import WeightError

PAD, EOS = 0, 1
ATOL = RTOL = 1e-4
EMBED = "shared.weight"
EMBED_TOKENS = "encoder.embed_tokens.weight"


# --- helpers ----------------------------------------------------------------------------------

def t5_ids(content_lengths: list[int], length: int, seed: int = 0) -> np.ndarray:
    """Token ids as the tokenizer writes them: content, EOS, then pad 0 up to `length`."""
    rng = np.random.default_rng(seed)
    ids = np.full((len(content_lengths), length), PAD, dtype=np.int64)
    for row, n in enumerate(content_lengths):
        n = min(n, length - 1)
        ids[row, :n] = rng.integers(3, 32000, n)
        ids[row, n] = EOS
    return ids


def run_torch(folder: Path, ids: np.ndarray, torch) -> np.ndarray:
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(torch.from_numpy(ids)).last_hidden_state.numpy()


def run_mlx(model: T5Encoder, ids: np.ndarray) -> np.ndarray:
    return np.array(model(mx.array(ids, dtype=mx.int32)).astype(mx.float32))


def errors(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Max abs error, and max relative error over entries not close to zero (|ref| > 1e-2)."""
    err = np.abs(ours - ref)
    big = np.abs(ref) > 1e-2
    return float(err.max()), float((err[big] / np.abs(ref[big])).max())


def assert_parity(label: str, ours: np.ndarray, ref: np.ndarray) -> None:
    abs_err, rel_err = errors(ours, ref)
    print(f"\n[parity] T5 {label}: max abs {abs_err:.2e}, max rel {rel_err:.2e}, max |ref| {np.abs(ref).max():.2f}")
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL, err_msg=label)


def read_weights(folder: Path) -> dict[str, np.ndarray]:
    weights = {}
    for f in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(f))
    return weights


def write_variant(src: Path, dst: Path, edit_weights=None, edit_config=None) -> Path:
    """A single-file copy of a checkpoint folder with its tensors and/or config.json edited."""
    dst.mkdir(parents=True)
    weights = read_weights(src)
    config = json.loads((src / "config.json").read_text())
    if edit_weights:
        weights = edit_weights(weights)
    if edit_config:
        config = edit_config(config)
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    return dst


@pytest.fixture(scope="module")
def t5_dir(tiny_schnell) -> Path:
    """transformers 5's own layout: `dtype` config, only `shared.weight`, two shards + index."""
    folder = tiny_schnell / "text_encoder_2"
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


@pytest.fixture(scope="module")
def t5(t5_dir) -> T5Encoder:
    return load_t5(t5_dir, dtype=mx.float32)


@pytest.fixture(scope="module")
def small_t5_dir(t5_dir, tmp_path_factory) -> Path:
    """Token embeddings scaled so the first RMSNorm sees a mean square near eps (1e-6).

    With O(1) activations a wrong epsilon moves outputs by ~1e-6, under any float32
    tolerance; here it changes the first normalisation by a large factor.
    """

    def shrink(w):
        w[EMBED] = w[EMBED] * np.float32(1e-3)
        return w

    return write_variant(t5_dir, tmp_path_factory.mktemp("t5-small") / "text_encoder_2", shrink)


# --- relative position buckets ----------------------------------------------------------------

def test_bucket_rule_reference_vector():
    buckets = relative_position_bucket(10, 10)
    assert buckets.shape == (10, 10)
    assert buckets[0].tolist() == [0, 17, 18, 19, 20, 21, 22, 23, 24, 24]
    assert buckets[9].tolist() == [8, 8, 7, 6, 5, 4, 3, 2, 1, 0]


def test_bucket_rule_matches_transformers_at_every_distance(torch_ref):
    """Including the log-bucket boundaries (16, 32, 64, 128) and beyond max_distance."""
    from transformers.models.t5.modeling_t5 import T5Attention

    length = 700
    ref = T5Attention._relative_position_bucket(
        torch_ref.arange(length)[None, :] - torch_ref.arange(length)[:, None], True, 32, 128
    )
    np.testing.assert_array_equal(relative_position_bucket(length, length, 32, 128), ref.numpy())


# --- parity -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "content, length",
    [([20, 600], 512), ([7, 100], 256), ([30, 76], 77), ([3, 10], 12)],
    ids=["512", "256", "77", "12-short"],
)
def test_parity_with_transformers(t5, t5_dir, torch_ref, content, length):
    ids = t5_ids(content, length)
    assert_parity(f"last_hidden_state {content}/{length}", run_mlx(t5, ids), run_torch(t5_dir, ids, torch_ref))


def test_parity_small_activations(small_t5_dir, torch_ref):
    ids = t5_ids([9, 40], 64)
    ours = run_mlx(load_t5(small_t5_dir, dtype=mx.float32), ids)
    assert_parity("last_hidden_state (small activations)", ours, run_torch(small_t5_dir, ids, torch_ref))


def test_tolerance_catches_wrong_epsilon_and_swapped_qk(t5_dir, small_t5_dir, torch_ref):
    """The parity check must fail for the bugs it is meant to catch."""
    ids = t5_ids([9, 40], 64)
    ref = run_torch(small_t5_dir, ids, torch_ref)
    model = load_t5(small_t5_dir, dtype=mx.float32)
    model.encoder.block[0].layer[0].layer_norm.eps = 1e-5  # MLX's nn.RMSNorm default
    assert errors(run_mlx(model, ids), ref)[0] > 100 * ATOL

    ref = run_torch(t5_dir, ids, torch_ref)
    model = load_t5(t5_dir, dtype=mx.float32)
    attn = model.encoder.block[1].layer[0].SelfAttention
    attn.q, attn.k = attn.k, attn.q
    assert errors(run_mlx(model, ids), ref)[0] > 100 * ATOL


def test_pad_positions_are_not_masked(t5):
    """FLUX passes no mask: changing the pad length changes every output (reference 6.6)."""
    short, long = t5_ids([5], 16), t5_ids([5], 32)
    assert np.abs(run_mlx(t5, short)[:, :6] - run_mlx(t5, long)[:, :6]).max() > 1e-3


# --- checkpoint variants ----------------------------------------------------------------------

def old_config(config: dict) -> dict:
    """config.json as transformers 4.x wrote it for google/t5-v1_1-xxl / FLUX's text_encoder_2."""
    config = {k: v for k, v in config.items() if k not in ("dtype", "scale_decoder_outputs")}
    return {
        **config, "torch_dtype": "float32", "transformers_version": "4.43.3", "tie_word_embeddings": False,
        "is_encoder_decoder": True, "output_past": True, "use_cache": True, "_name_or_path": "google/t5-v1_1-xxl",
    }


@pytest.mark.parametrize(
    "variant",
    ["embed-tokens-only", "both-equal", "both-different", "with-decoder"],
)
def test_untied_embeddings_and_4x_config(t5_dir, tmp_path, torch_ref, variant):
    """4.x-style config.json with the token table under either or both names.

    When both tables are present and differ, transformers unties them and the encoder reads
    `encoder.embed_tokens`; we must read the same one.
    """

    def edit(w):
        table = w[EMBED]
        if variant == "embed-tokens-only":
            w[EMBED_TOKENS] = w.pop(EMBED)
        elif variant == "both-equal":
            w[EMBED_TOKENS] = table.copy()
        elif variant == "both-different":
            w[EMBED_TOKENS] = table[::-1].copy()
        else:  # a full encoder-decoder file: the decoder half is not ours to load
            w["decoder.block.0.layer.0.SelfAttention.q.weight"] = w["encoder.block.0.layer.0.SelfAttention.q.weight"]
        return w

    folder = write_variant(t5_dir, tmp_path / "text_encoder_2", edit, old_config)
    ids = t5_ids([12, 50], 64)
    assert_parity(f"last_hidden_state ({variant}, 4.x config)", run_mlx(load_t5(folder, mx.float32), ids),
                  run_torch(folder, ids, torch_ref))


@pytest.mark.parametrize("feed_forward_proj", ["relu", "gated-silu", "gelu"])
def test_other_feed_forward_kinds(tmp_path, torch_ref, feed_forward_proj):
    from transformers import T5Config as TorchT5Config
    from transformers import T5EncoderModel

    folder = tmp_path / "text_encoder_2"
    model = T5EncoderModel(TorchT5Config(**{**tiny_models.T5, "feed_forward_proj": feed_forward_proj}))
    tiny_models.randomize(model, seed=5).save_pretrained(folder)
    ids = t5_ids([6, 30], 40)
    assert_parity(f"last_hidden_state ({feed_forward_proj})", run_mlx(load_t5(folder, mx.float32), ids),
                  run_torch(folder, ids, torch_ref))


def test_config_from_dict(t5_dir):
    config = T5Config.from_dict(json.loads((t5_dir / "config.json").read_text()))
    assert (config.d_model, config.num_heads, config.d_kv, config.num_layers) == (32, 4, 8, 2)
    assert config.is_gated and config.activation == "gelu_new"  # tanh GELU, not erf
    assert replace(config, feed_forward_proj="gelu").activation == "gelu"  # exact erf GELU, ungated


def test_sanitize_maps_every_key(t5_dir):
    model = T5Encoder(T5Config.from_dict(json.loads((t5_dir / "config.json").read_text())))
    expected = {k for k, _ in tree_flatten(model.parameters())}
    assert set(model.sanitize(read_weights(t5_dir))) == expected
    # only block 0 owns the relative position table
    assert [k for k in expected if "relative_attention_bias" in k] == [
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    ]


def test_bfloat16_load(t5, t5_dir):
    model = load_t5(t5_dir, dtype=mx.bfloat16)
    assert {v.dtype for _, v in tree_flatten(model.parameters())} == {mx.bfloat16}
    ids = t5_ids([10, 200], 256)
    out = model(mx.array(ids, dtype=mx.int32))
    assert out.dtype == mx.bfloat16
    out = np.array(out.astype(mx.float32))
    ref = run_mlx(t5, ids)
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()


def test_float16_keeps_wo_in_float32(t5_dir):
    """As transformers does, since T5's feed-forward output overflows float16."""
    model = load_t5(t5_dir, dtype=mx.float16)
    dtypes = {k: v.dtype for k, v in tree_flatten(model.parameters())}
    assert {d for k, d in dtypes.items() if ".wo." in k} == {mx.float32}
    assert {d for k, d in dtypes.items() if ".wo." not in k} == {mx.float16}
    assert np.isfinite(run_mlx(model, t5_ids([4, 20], 32))).all()


# --- load errors ------------------------------------------------------------------------------

def copy_dir(t5_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "text_encoder_2"
    shutil.copytree(t5_dir, folder)
    return folder


def test_missing_folder(tmp_path):
    with pytest.raises(WeightError, match="missing model folder"):
        load_t5(tmp_path / "nope")


def test_missing_config(t5_dir, tmp_path):
    folder = copy_dir(t5_dir, tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(WeightError, match="missing config.json"):
        load_t5(folder)


def test_missing_shard(t5_dir, tmp_path):
    folder = copy_dir(t5_dir, tmp_path)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(WeightError, match="model-00002-of-00002.safetensors"):
        load_t5(folder)


def test_truncated_shard(t5_dir, tmp_path):
    folder = copy_dir(t5_dir, tmp_path)
    shard = folder / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(WeightError, match="model-00001-of-00002.safetensors") as info:
        load_t5(folder)
    assert "corrupt" in str(info.value) and "\n" not in str(info.value)


def test_wrong_shape(t5_dir, tmp_path):
    def bad(w):
        key = "encoder.block.1.layer.1.DenseReluDense.wi_1.weight"
        w[key] = w[key][:, :-2].copy()
        return w

    folder = write_variant(t5_dir, tmp_path / "text_encoder_2", bad)
    with pytest.raises(WeightError, match=r"encoder\.block\.1\.layer\.1\.DenseReluDense\.wi_1\.weight has shape"):
        load_t5(folder)


@pytest.mark.parametrize(
    "key",
    ["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", EMBED],
)
def test_missing_tensor(t5_dir, tmp_path, key):
    def drop(w):
        del w[key]
        return w

    folder = write_variant(t5_dir, tmp_path / "text_encoder_2", drop)
    with pytest.raises(WeightError, match=f"missing {key}".replace(".", r"\.")):
        load_t5(folder)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: {**c, "feed_forward_proj": "gated-mish"}, "unsupported feed_forward_proj 'gated-mish'"),
        (lambda c: {**c, "feed_forward_proj": "fancy-gelu"}, "unsupported feed_forward_proj"),
        (lambda c: {k: v for k, v in c.items() if k != "d_model"}, "d_model"),
    ],
    ids=["activation", "format", "missing-dimension"],
)
def test_unusable_config(t5_dir, tmp_path, edit, message):
    folder = write_variant(t5_dir, tmp_path / "text_encoder_2", edit_config=edit)
    with pytest.raises(WeightError, match=message) as info:
        load_t5(folder)
    assert "config.json" in str(info.value)
