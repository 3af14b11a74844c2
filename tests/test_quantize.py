"""Quantization: which layers, the quantized model folder (write, reload, versioning), the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_flux import FluxPipeline
from mlx_flux.errors import FluxError
from mlx_flux.quantize import apply_plan, plan_of, quantize_module
from mlx_flux import transformer
from mlx_flux.loader import Checkpoint, load_component
from mlx_flux.quantized_io import FORMAT_VERSION, MANIFEST, FormatError
from mlx_flux.quantized_writer import quantize_to_folder
from mlx_flux.transformer import Flux, FluxConfig

SCRIPT = Path(sys.executable).parent / "mlx-flux"
PROMPT = "a lighthouse at dusk"
SIZE = dict(width=64, height=48)


@pytest.fixture(scope="module")
def q8_folder(tiny_schnell, tmp_path_factory) -> Path:
    """The tiny schnell quantized to 8 bits, stored in float32 so it can equal the in-memory path."""
    return quantize_to_folder(tiny_schnell, 8, tmp_path_factory.mktemp("q") / "q8", dtype="float32")


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --- which layers ---------------------------------------------------------------------------------

def test_blocks_are_quantized_and_the_ends_kept():
    cfg = FluxConfig(in_channels=64, out_channels=64, vec_in_dim=24, context_in_dim=32, hidden_size=32, num_heads=2,
                     depth=1, depth_single_blocks=1, axes_dim=(4, 6, 6), guidance_embed=True)
    model = Flux(cfg)
    plan = quantize_module(model, 4)
    b = model.double_blocks[0]
    for layer in (b.img_attn.qkv, b.img_mod.lin, b.txt_mlp[0], model.single_blocks[0].linear1, model.txt_in):
        assert isinstance(layer, nn.QuantizedLinear) and layer.bits == 4
    # in_features 32 -> group 32, 128 -> group 64 (the default wherever it fits)
    assert plan["double_blocks.0.img_attn.qkv"] == (4, 32) and plan["double_blocks.0.img_mlp.2"] == (4, 64)
    for layer in (model.img_in, model.time_in.in_layer, model.vector_in.out_layer, model.guidance_in.in_layer,
                  model.final_layer.linear, model.final_layer.adaLN_modulation[1]):
        assert type(layer) is nn.Linear
    assert plan_of(model) == plan
    with pytest.raises(ValueError, match="bits"):
        quantize_module(model, 3)


def test_apply_plan_rejects_a_plan_that_does_not_fit():
    model = nn.Sequential(nn.Linear(64, 64))
    with pytest.raises(ValueError, match="no linear layer layers.7"):
        apply_plan(model, {"layers.7": (4, 64)})


# --- the folder -----------------------------------------------------------------------------------

def test_folder_layout_and_manifest(q8_folder):
    manifest = json.loads((q8_folder / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["quantization"] == {"mode": "affine", "bits": 8, "group_size": 64}
    assert manifest["variant"] == "schnell" and manifest["dtype"] == "float32"
    t5_layers = {p for g in manifest["components"]["text_encoder_2"]["quantized"] for p in g["layers"]}
    assert "encoder.block.0.layer.0.SelfAttention.q" in t5_layers
    assert "encoder.block.0.layer.1.DenseReluDense.wo" not in t5_layers  # in_features 48: no group fits
    for sub in ("transformer", "text_encoder", "text_encoder_2", "vae", "tokenizer", "tokenizer_2", "scheduler"):
        assert (q8_folder / sub).is_dir()
    assert not [p for p in q8_folder.parent.iterdir() if ".partial-" in p.name]  # no leftovers


def test_round_trip_equals_in_memory_quantization(q8_folder, tiny_schnell):
    stored = FluxPipeline.from_pretrained(q8_folder, dtype="float32")
    memory = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", quantize=8)
    assert stored.quantize == memory.quantize == 8
    a = stored.generate(PROMPT, steps=2, seed=5, **SIZE)
    b = memory.generate(PROMPT, steps=2, seed=5, **SIZE)
    np.testing.assert_array_equal(a.latents, b.latents)
    np.testing.assert_array_equal(np.asarray(a.image), np.asarray(b.image))
    # and T5 came back quantized too
    assert isinstance(stored._t5.encoder.block[0].layer[0].SelfAttention.q, nn.QuantizedLinear)


def test_8_bit_stays_close_to_float(q8_folder, tiny_schnell):
    q = FluxPipeline.from_pretrained(q8_folder, dtype="float32").generate(PROMPT, steps=2, seed=5, **SIZE)
    f = FluxPipeline.from_pretrained(tiny_schnell, dtype="float32").generate(PROMPT, steps=2, seed=5, **SIZE)
    err = rel_err(q.latents, f.latents)
    print(f"8-bit vs float latents: relative error {err:.2e}")
    assert err < 0.03


def test_requesting_other_bits_of_a_quantized_folder_is_refused(q8_folder):
    with pytest.raises(FluxError, match="holds a 8-bit model; it cannot be loaded as 4-bit"):
        FluxPipeline.from_pretrained(q8_folder, quantize=4)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format_version=FORMAT_VERSION + 1, mlx_flux_version="9.0"),
     f"written by mlx-flux 9.0 in format version {FORMAT_VERSION + 1}; this mlx-flux 0.1.0 reads up to version"),
    (lambda m: m.update(format="something-else"), "unknown model format"),
    (lambda m: m.update(format_version="1"), "unknown format version '1'"),
    (lambda m: m["quantization"].update(mode="mxfp4"), "unsupported quantization mode 'mxfp4'"),
    (lambda m: m["components"]["transformer"]["quantized"][0].update(bits=7), "unsupported quantization (7 bits"),
])
def test_manifest_problems_are_one_clear_line(q8_folder, tmp_path, edit, message):
    broken = tmp_path / "broken"
    shutil.copytree(q8_folder, broken)
    manifest = json.loads((broken / MANIFEST).read_text())
    edit(manifest)
    (broken / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match=_re(message)) as e:
        FluxPipeline.from_pretrained(broken)
    assert "\n" not in str(e.value)


def test_missing_files_and_corrupt_manifest(q8_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(q8_folder, broken)
    (broken / "transformer" / "model.safetensors").unlink()
    with pytest.raises(FormatError, match="incomplete quantized model .*: missing transformer/model.safetensors"):
        FluxPipeline.from_pretrained(broken)
    shutil.rmtree(broken / "vae")
    (broken / MANIFEST).write_text("{not json")
    with pytest.raises(FormatError, match="corrupt mlx-flux.json"):
        FluxPipeline.from_pretrained(broken)


def test_existing_folders_are_never_overwritten(tiny_schnell, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "precious.txt").write_text("user data")
    with pytest.raises(FormatError, match="already exists and is not empty"):
        quantize_to_folder(tiny_schnell, 4, full)
    assert (full / "precious.txt").read_text() == "user data" and len(list(full.iterdir())) == 1
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is fine: nothing to lose
    quantize_to_folder(tiny_schnell, 4, empty)
    assert (empty / MANIFEST).is_file()
    with pytest.raises(FormatError, match="already quantized"):
        quantize_to_folder(empty, 4, tmp_path / "again")


def test_loading_never_materialises_full_precision(tmp_path):
    """A moderately sized model reloads within a fraction of what its float weights need."""
    cfg = FluxConfig(hidden_size=512, num_heads=4, depth=2, depth_single_blocks=2, context_in_dim=256,
                     vec_in_dim=64, axes_dim=(16, 56, 56))
    model = Flux(cfg)
    float_bytes = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    plan = quantize_module(model, 4)
    path = tmp_path / "model.safetensors"
    mx.save_safetensors(str(path), dict(tree_flatten(model.parameters())))
    stored = Checkpoint((path,), tmp_path, plan=plan)
    del model
    mx.clear_cache()

    mx.reset_peak_memory()
    before = mx.get_active_memory()
    loaded = load_component(transformer.SPEC, stored, mx.float32, config=cfg)
    peak = mx.get_peak_memory() - before
    stored = sum(v.nbytes for _, v in tree_flatten(loaded.parameters()))
    print(f"float {float_bytes / 2**20:.1f} MiB, 4-bit {stored / 2**20:.1f} MiB, load peak {peak / 2**20:.1f} MiB")
    assert peak < 0.4 * float_bytes
    assert plan_of(loaded) == plan
    for name, v in tree_flatten(loaded.parameters()):
        if name.endswith(".weight") and name.rsplit(".", 1)[0] in plan:  # packed integers, not floats
            assert v.dtype == mx.uint32, name


# --- command line ---------------------------------------------------------------------------------

def run(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_cli_quantize_then_generate(tiny_dev, tmp_path):
    out = tmp_path / "dev-q4"
    proc = run("quantize", tiny_dev, "--bits", "4", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert json.loads((out / MANIFEST).read_text())["variant"] == "dev"
    png = tmp_path / "img.png"
    proc = run("generate", "--model", out, "--prompt", PROMPT, "--width", 32, "--height", 32, "--steps", 2,
               "--seed", 1, "--output", png, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert png.is_file()

    again = run("quantize", tiny_dev, "--bits", "8", "--output", out)
    assert again.returncode != 0 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines()[-1].startswith("mlx-flux: error: output")
    assert "not empty" in again.stderr


def _re(text: str) -> str:
    import re

    return re.escape(text)
