"""lora_formats: every layout reads back to the same updates, agrees with diffusers' own
conversion where diffusers converts, and anything else is refused in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import lora_files as lf
from mlx_flux.errors import FluxError
from mlx_flux.lora_formats import LoraError, LoraFile, read_lora

TINY = lf.Dims()


def effective(lora: LoraFile, d: lf.Dims) -> dict[str, np.ndarray]:
    """target -> the sum of our updates' deltas, placed at their rows of the full weight."""
    out: dict[str, np.ndarray] = {}
    for u in lora.updates:
        full = out.setdefault(u.target, np.zeros(lf.target_shape(d, u.target)))
        full[u.rows] += np.array(u.delta(), dtype=np.float64)
    return out


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for target, delta in want.items():
        np.testing.assert_allclose(got[target], delta, rtol=1e-4, atol=1e-5, err_msg=target)


# --- every layout round-trips ----------------------------------------------------------------

@pytest.mark.parametrize("layout", sorted(lf.WRITERS))
def test_each_layout_round_trips(tmp_path, layout):
    desc = lf.random_description(TINY, rank=4, seed=1)
    lora = read_lora(lf.WRITERS[layout](tmp_path / "a.safetensors", TINY, desc))
    assert lora.format == layout
    assert_same(effective(lora, TINY), lf.expected_deltas(TINY, desc, layout))
    for u in lora.updates:
        assert u.component == ("text_encoder" if u.target.startswith("encoder.") else "transformer")
        assert u.down.shape[0] == u.up.shape[1] == u.rank
        assert u.delta().dtype == mx.float32


def test_unprefixed_diffusers_keys(tmp_path):
    desc = lf.random_description(TINY, seed=2, clip=False)
    lora = read_lora(lf.write_diffusers(tmp_path / "a.safetensors", TINY, desc, prefixed=False))
    assert lora.format == "diffusers"
    assert_same(effective(lora, TINY), lf.expected_deltas(TINY, desc))


def test_half_precision_files(tmp_path):
    desc = lf.random_description(TINY, seed=3, dtype=np.float16)
    lora = read_lora(lf.write_kohya(tmp_path / "a.safetensors", TINY, desc))
    assert lora.updates[0].up.dtype == mx.float16
    assert_same(effective(lora, TINY), lf.expected_deltas(TINY, desc))


def test_fused_offsets_come_from_the_file(tmp_path):
    # An odd width (24) no FLUX.1 has: offsets must come from the pieces' own rows.
    d = lf.Dims(hidden=24, depth=1, depth_single=1)
    desc = lf.random_description(d, seed=4, targets=["double_blocks.0.img_attn.qkv", "single_blocks.0.linear1"])
    desc["double_blocks.0.img_attn.qkv"][0] = None  # no q piece: k starts after q's 24 rows anyway
    desc["single_blocks.0.linear1"] = [None, None, None, desc["single_blocks.0.linear1"][3]]  # mlp only
    modules = [(f"transformer.{n}", p) for t, v in desc.items()
               for n, p in zip(lf.diffusers_name(t), v) if p is not None]
    lora = read_lora(lf._save(tmp_path / "a.safetensors", modules, "A", "key"))
    offsets = sorted((u.target, u.row_offset, u.up.shape[0]) for u in lora.updates)
    assert offsets == [("double_blocks.0.img_attn.qkv", 24, 24), ("double_blocks.0.img_attn.qkv", 48, 24),
                       ("single_blocks.0.linear1", 72, 96)]  # mlp after q, k, v of in-features 24 each


def test_kohya_split_qkv_pieces(tmp_path):
    # sd-scripts with split_qkv keeps q, k, v as `lora_down.0/1/2`, `lora_up.0/1/2`, one alpha
    rng = np.random.default_rng(5)
    h, r = 8, 2
    tensors = {"lora_unet_double_blocks_0_img_attn_qkv.alpha": np.array(1.0, np.float32)}
    for j in range(3):
        tensors[f"lora_unet_double_blocks_0_img_attn_qkv.lora_down.{j}.weight"] = rng.standard_normal((r, h)).astype(np.float32)
        tensors[f"lora_unet_double_blocks_0_img_attn_qkv.lora_up.{j}.weight"] = rng.standard_normal((h, r)).astype(np.float32)
    lora = read_lora(lf.write_raw(tmp_path / "a.safetensors", tensors))
    assert [(u.target, u.row_offset, u.alpha, u.rank) for u in lora.updates] == [
        ("double_blocks.0.img_attn.qkv", o, 1.0, r) for o in (0, 8, 16)]


def test_final_layer_halves(tmp_path):
    """diffusers' norm_out.linear is [scale; shift]: its B halves are swapped into our [shift; scale];
    a BFL-named final_layer.adaLN_modulation.1 is already in our order."""
    down = np.ones((1, 4), np.float32)
    up = np.arange(8, dtype=np.float32)[:, None]
    dif = read_lora(lf.write_raw(tmp_path / "d.safetensors", {
        "transformer.norm_out.linear.lora_A.weight": down, "transformer.norm_out.linear.lora_B.weight": up}))
    kohya = read_lora(lf.write_raw(tmp_path / "k.safetensors", {
        "lora_unet_final_layer_adaLN_modulation_1.lora_down.weight": down,
        "lora_unet_final_layer_adaLN_modulation_1.lora_up.weight": up}))
    for lora, rows in ((dif, [4, 5, 6, 7, 0, 1, 2, 3]), (kohya, list(range(8)))):
        (u,) = lora.updates
        assert u.target == "final_layer.adaLN_modulation.1" and u.row_offset == 0
        assert np.array(u.up)[:, 0].tolist() == rows


# --- alpha -----------------------------------------------------------------------------------

def _alphas(lora: LoraFile) -> set[float]:
    return {u.alpha for u in lora.updates}


def test_alpha_from_keys_metadata_or_rank(tmp_path):
    desc = lf.random_description(TINY, rank=4, seed=6)
    # key
    lora = read_lora(lf.write_kohya(tmp_path / "k.safetensors", TINY, desc))
    assert _alphas(lora) == {lf.merged(v)[2] for v in desc.values()}
    # PEFT's lora_alpha in diffusers' header, per component
    lora = read_lora(lf.write_diffusers(tmp_path / "m.safetensors", TINY, desc, alpha="metadata"))
    assert {(u.component, u.alpha) for u in lora.updates} == {("transformer", 8.0), ("text_encoder", 2.0)}
    assert_same(effective(lora, TINY), lf.expected_deltas(TINY, desc))
    # PEFT alpha_pattern overrides lora_alpha for the modules it names
    meta = {"lora_adapter_metadata": json.dumps({"transformer.lora_alpha": 8, "transformer.alpha_pattern": {"proj_out": 3}})}
    lf.write_diffusers(tmp_path / "p.safetensors", TINY, desc, alpha="fold")
    tensors = dict(mx.load(str(tmp_path / "p.safetensors")))
    lora = read_lora(lf.write_raw(tmp_path / "p.safetensors", {k: np.array(v) for k, v in tensors.items()}, meta))
    by_target = {u.target: u.alpha for u in lora.updates if u.component == "transformer"}
    assert by_target["final_layer.linear"] == by_target["single_blocks.0.linear2"] == 3.0
    assert by_target["img_in"] == 8.0
    # sd-scripts' ss_network_alpha when the file has no alpha keys
    lora = read_lora(lf.write_kohya(tmp_path / "s.safetensors", TINY, desc, alpha="none",
                                    metadata={"ss_network_alpha": "16", "ss_network_dim": "4"}))
    assert _alphas(lora) == {16.0}
    # nothing: alpha = rank (XLabs stores none)
    lora = read_lora(lf.write_xlabs(tmp_path / "x.safetensors", TINY, desc))
    assert all(u.alpha == u.rank for u in lora.updates)
    assert lora.metadata == {}


def test_metadata_is_returned(tmp_path):
    desc = lf.random_description(TINY, seed=7, clip=False)
    meta = {"ss_tag_frequency": "{}", "modelspec.title": "Style", "ss_network_alpha": "1"}
    lora = read_lora(lf.write_kohya(tmp_path / "a.safetensors", TINY, desc, metadata=meta))
    assert lora.metadata == meta


# --- agreement with diffusers' own conversion ------------------------------------------------

def _diffusers_index(d: lf.Dims) -> dict[str, tuple[str, int]]:
    """diffusers module name -> (our target, piece index or -1)."""
    index = {}
    for target in {**lf.flux_targets(d), **lf.clip_targets(d)}:
        name = lf.diffusers_name(target)
        prefix = "text_encoder." if target.startswith("encoder.") else "transformer."
        for i, n in enumerate(name) if isinstance(name, list) else [(-1, name)]:
            index[prefix + n] = (target, i)
    return index


def _old_te_name(key: str) -> str:
    # diffusers gives kohya's CLIP parts in its old attention-processor names
    key = re.sub(r"\.to_(q|k|v|out)_lora\.", r".\1_proj.", key).replace(".lora_linear_layer.", ".")
    return key.replace(".down.weight", ".lora_A.weight").replace(".up.weight", ".lora_B.weight")


def diffusers_effective(sd: dict, d: lf.Dims, probe) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What diffusers' converted A/B mean (its alphas are already folded in) on our targets,
    applied to probe inputs, with the mask of the rows it covers: only modules diffusers keeps
    (`transformer.`/`text_encoder.` and a real module name), fused pieces placed in q, k, v(, mlp)
    order, the final layer's halves swapped back."""
    index = _diffusers_index(d)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in sd:
        key_a = _old_te_name(key)
        if not key_a.endswith(".lora_A.weight") or key_a.removesuffix(".lora_A.weight") not in index:
            continue
        target, piece = index[key_a.removesuffix(".lora_A.weight")]
        a = sd[key].float().numpy().astype(np.float64)
        b = sd[key.replace("lora_A", "lora_B").replace(".down.", ".up.")].float().numpy().astype(np.float64)
        rows, cols = lf.target_shape(d, target)
        full, kept = out.setdefault(target, (np.zeros((rows, 2)), np.zeros(rows, bool)))
        start = 0 if piece < 0 else sum(lf.piece_rows(d, target)[:piece])
        full[start:start + b.shape[0]] = b @ (a @ probe(cols))
        kept[start:start + b.shape[0]] = True
        if target == "final_layer.adaLN_modulation.1":
            full[:] = np.concatenate(np.split(full, 2)[::-1])
    return out


def ours_effective(lora: LoraFile, d: lf.Dims, probe) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for u in lora.updates:
        rows, cols = lf.target_shape(d, u.target)
        full = out.setdefault(u.target, np.zeros((rows, probe(cols).shape[1])))
        down, up = np.array(u.down, np.float64), np.array(u.up, np.float64)
        full[u.rows] += (u.alpha / u.rank) * (up @ (down @ probe(cols)))
    return out


# diffusers' converters assume FLUX.1's widths (linear1 split 3072 x 3 + 12288; fal: all 19 + 38
# blocks), so these files are FLUX.1-wide and thin; deltas are compared on probe vectors.
WIDE = lf.Dims(hidden=3072, depth=1, depth_single=1)
FAL = lf.Dims(hidden=3072, depth=19, depth_single=38, clip_layers=0)
TOP = {"img_in", "txt_in", "time_in.in_layer", "time_in.out_layer", "vector_in.in_layer", "vector_in.out_layer",
       "guidance_in.in_layer", "guidance_in.out_layer", "final_layer.linear", "final_layer.adaLN_modulation.1"}
# What diffusers drops that we keep, per layout:
DROPPED = {
    # kohya/ComfyUI: the embedders and the final layer come out without the `transformer.` prefix
    # (and the final layer's alpha is ignored), so load_lora_weights never loads them.
    "kohya": TOP, "comfyui": TOP,
    # OneTrainer: diffusers' converter only names attention layers and top-level ones; the
    # modulations, MLPs, proj_mlp (so the whole linear1) and linear2 collapse onto the block name.
    "onetrainer": {f"double_blocks.0.{s}_{l}" for s in ("img", "txt") for l in ("mod.lin", "mlp.0", "mlp.2")}
    | {"single_blocks.0.modulation.lin", "single_blocks.0.linear1", "single_blocks.0.linear2"},
    "xlabs": set(), "fal-kontext": set(),
    # BFL names with lora_A/lora_B: diffusers recognises none of it (no `transformer.` keys).
    "bfl": None,  # everything
}


@pytest.mark.parametrize("layout", ["kohya", "comfyui", "onetrainer", "xlabs", "fal-kontext", "bfl"])
def test_matches_diffusers_conversion(tmp_path, layout):
    diffusers = pytest.importorskip("diffusers")
    d = FAL if layout == "fal-kontext" else WIDE
    targets = None
    if layout == "fal-kontext":  # exactly the layers fal's Kontext trainer writes (diffusers insists)
        targets = [t for t in lf.flux_targets(d) if t not in TOP or t == "final_layer.linear"]
    desc = lf.random_description(d, rank=1 if layout == "fal-kontext" else 2, seed=8, targets=targets,
                                 clip=layout in ("kohya", "comfyui", "onetrainer"))
    path = lf.WRITERS[layout](tmp_path / "a.safetensors", d, desc)
    rng = np.random.default_rng(0)
    probes: dict[int, np.ndarray] = {}

    def probe(n: int) -> np.ndarray:
        return probes.setdefault(n, rng.standard_normal((n, 2)))

    ours = ours_effective(read_lora(path), d, probe)
    theirs = diffusers_effective(diffusers.FluxPipeline.lora_state_dict(str(path)), d, probe)
    dropped = set(ours) if DROPPED[layout] is None else DROPPED[layout]
    assert set(theirs) <= set(ours) and dropped <= set(ours)
    for target, delta in ours.items():
        value, kept = theirs.get(target, (np.zeros_like(delta), np.zeros(len(delta), bool)))
        np.testing.assert_allclose(delta[kept], value[kept], rtol=1e-4, atol=1e-4, err_msg=target)
        if target in dropped:  # diffusers loses (some rows of) these; we keep them
            assert not kept.all() and np.abs(delta[~kept]).max() > 0, target
        else:  # rows diffusers does not cover are rows the file does not touch (XLabs' linear1 mlp)
            assert not np.any(delta[~kept]), target


# --- refusals --------------------------------------------------------------------------------

def _refused(path: Path, *words: str) -> str:
    with pytest.raises(LoraError) as e:
        read_lora(path)
    message = str(e.value)
    assert "\n" not in message and path.name in message
    for word in words:
        assert word in message, message
    return message


def _pair(base: str, down="lora_down", up="lora_up", r=2, n=8) -> dict[str, np.ndarray]:
    return {f"{base}.{down}.weight": np.ones((r, n), np.float32), f"{base}.{up}.weight": np.ones((n, r), np.float32)}


def test_refuses_sdxl(tmp_path):
    kohya = _pair("lora_unet_input_blocks_1_1_proj_in") | _pair("lora_unet_output_blocks_2_1_proj_out")
    _refused(lf.write_raw(tmp_path / "sdxl.safetensors", kohya), "SDXL")
    dif = _pair("unet.down_blocks.1.attentions.0.proj_in", "lora_A", "lora_B")
    _refused(lf.write_raw(tmp_path / "sdxl2.safetensors", dif), "SDXL")


def test_refuses_unknown_keys_with_counts(tmp_path):
    desc = lf.random_description(TINY, seed=9, clip=False, targets=["img_in", "double_blocks.0.img_attn.proj"])
    lf.write_kohya(tmp_path / "a.safetensors", TINY, desc)
    tensors = {k: np.array(v) for k, v in mx.load(str(tmp_path / "a.safetensors")).items()}
    tensors |= _pair("lora_unet_double_blocks_0_img_attn_qkv_extra")
    _refused(lf.write_raw(tmp_path / "style.safetensors", tensors),
             "kohya LoRA, 6 of 8 keys match FLUX.1 layers", "first unknown: lora_unet_double_blocks_0_img_attn_qkv_extra")
    # FLUX.2-style diffusers names
    flux2 = _pair("transformer.double_stream_modulation_img.linear", "lora_A", "lora_B") | _pair(
        "transformer.transformer_blocks.0.attn.to_out.0", "lora_A", "lora_B")
    _refused(lf.write_raw(tmp_path / "f2.safetensors", flux2), "diffusers LoRA, 2 of 4 keys")
    # an A without its B
    half = {"transformer.proj_out.lora_A.weight": np.ones((2, 4), np.float32)}
    _refused(lf.write_raw(tmp_path / "half.safetensors", half), "0 of 1 keys")


def test_refuses_unsupported_kinds(tmp_path):
    dora = _pair("lora_unet_double_blocks_0_img_attn_proj") | {
        "lora_unet_double_blocks_0_img_attn_proj.dora_scale": np.ones((1, 8), np.float32)}
    _refused(lf.write_raw(tmp_path / "dora.safetensors", dora), "DoRA")
    t5 = _pair("lora_te2_encoder_block_0_layer_0_SelfAttention_q")
    _refused(lf.write_raw(tmp_path / "t5.safetensors", t5), "T5")
    conv = {"transformer.proj_out.lora_A.weight": np.ones((2, 4, 1, 1), np.float32),
            "transformer.proj_out.lora_B.weight": np.ones((4, 2, 1, 1), np.float32)}
    _refused(lf.write_raw(tmp_path / "conv.safetensors", conv), "not a linear LoRA pair")


def test_refuses_empty_missing_and_corrupt_files(tmp_path):
    _refused(lf.write_raw(tmp_path / "empty.safetensors", {}), "no tensors")
    _refused(tmp_path / "missing.safetensors", "not found")
    text = tmp_path / "notes.safetensors"
    text.write_text("this is not a safetensors file at all")
    _refused(text, "not a readable safetensors")
    desc = lf.random_description(TINY, seed=10, clip=False)
    good = lf.write_kohya(tmp_path / "cut.safetensors", TINY, desc)
    good.write_bytes(good.read_bytes()[:-100])
    _refused(good, "not a readable safetensors")
    alphas_only = {"lora_unet_img_in.alpha": np.array(1.0, np.float32)}
    _refused(lf.write_raw(tmp_path / "alpha.safetensors", alphas_only), "kohya LoRA, 0 of 1 keys")


def test_errors_are_user_facing():
    assert issubclass(LoraError, FluxError) and issubclass(LoraError, ValueError)


# --- fingerprint -----------------------------------------------------------------------------

def test_fingerprint_is_stable_and_follows_the_bytes(tmp_path):
    desc = lf.random_description(TINY, seed=11)
    path = lf.write_kohya(tmp_path / "a.safetensors", TINY, desc)
    first = read_lora(path).fingerprint()
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert read_lora(path).fingerprint() == first
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor's data
    path.write_bytes(bytes(data))
    assert read_lora(path).fingerprint() != first
