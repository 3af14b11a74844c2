"""The staged loader: stage order, the adapters hook, strict errors, quantized folders and
quantize-on-load through the one `load_component`, and T5's float32 `wo` in float16."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_flux import loader, t5, transformer
from mlx_flux.loader import Checkpoint, ComponentSpec, load_component
from mlx_flux.quantize import plan_of, quantize_module
from mlx_flux.quantized_io import read_manifest
from mlx_flux.quantized_writer import quantize_to_folder
from mlx_flux.weights import WeightError

# --- a small component of our own, so every stage can be watched --------------------------------


@dataclass(frozen=True)
class ToyConfig:
    width: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ToyConfig":
        return cls(width=int(d["width"]))


class Toy(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.blocks = [nn.Linear(config.width, config.width) for _ in range(2)]
        self.out = nn.Linear(config.width, 4)


def toy_sanitize(weights: Mapping[str, mx.array]) -> dict[str, mx.array]:
    return {k.removeprefix("model."): v for k, v in weights.items()}  # checkpoint names carry a prefix


@pytest.fixture
def toy(tmp_path) -> tuple[Path, dict[str, mx.array]]:
    """A folder with config.json and prefixed weights; returns it and the sanitized float32 tensors."""
    mx.random.seed(0)
    weights = {k: mx.random.normal(v.shape) for k, v in tree_flatten(Toy(ToyConfig(64)).parameters())}
    mx.save_safetensors(str(tmp_path / "model.safetensors"), {"model." + k: v for k, v in weights.items()})
    (tmp_path / "config.json").write_text(json.dumps({"width": 64, "unused": True}))
    return tmp_path, weights


def spied_spec(calls: list[str]) -> ComponentSpec:
    def config_from_dict(d):
        calls.append("read config")
        return ToyConfig.from_dict(d)

    def build(config):
        calls.append("build")
        return Toy(config)

    def sanitize(weights):
        calls.append("sanitize")
        return toy_sanitize(weights)

    return ComponentSpec(name="toy", build=build, sanitize=sanitize, config_from_dict=config_from_dict,
                         label="toy ({where})", blocks=lambda m: [(f"blocks.{i}", b) for i, b in enumerate(m.blocks)])


@pytest.fixture
def stages(monkeypatch) -> list[str]:
    """The names of the stages as they run (the real stages still do their work)."""
    calls: list[str] = []
    for name, label in (("load_safetensors", "find files"), ("apply_plan", "quantize (stored)"),
                        ("apply_weights", "strict apply"), ("quantize_blockwise", "quantize (on load)"),
                        ("evaluate", "evaluate")):
        real = getattr(loader, name)

        def spy(*args, _real=real, _label=label, **kwargs):
            calls.append(_label)
            return _real(*args, **kwargs)

        monkeypatch.setattr(loader, name, spy)
    return calls


def test_stage_order_float_and_quantize_on_load(toy, stages):
    folder, _ = toy
    spec = spied_spec(stages)
    adapter = lambda model, weights: stages.append("adapters") or weights  # noqa: E731
    load_component(spec, folder, "float32", adapters=[adapter])
    assert stages == ["find files", "read config", "build", "sanitize", "adapters", "strict apply", "evaluate"]
    stages.clear()
    model = load_component(spec, folder, "float32", quantize=4, adapters=[adapter])
    assert stages == ["find files", "read config", "build", "sanitize", "adapters", "strict apply",
                      "quantize (on load)", "evaluate"]
    assert isinstance(model.blocks[0], nn.QuantizedLinear)


def test_stage_order_stored_plan(toy, stages, tmp_path):
    folder, _ = toy
    model = load_component(spied_spec([]), folder, "float32", quantize=8)
    plan = plan_of(model)
    stored = tmp_path / "stored.safetensors"
    mx.save_safetensors(str(stored), dict(tree_flatten(model.parameters())))
    stages.clear()
    again = load_component(spied_spec(stages), Checkpoint((stored,), folder, plan=plan), "float32")
    assert stages == ["find files", "read config", "build", "sanitize", "quantize (stored)", "strict apply",
                      "evaluate"]
    for (name, a), (_, b) in zip(tree_flatten(model.parameters()), tree_flatten(again.parameters())):
        assert a.dtype == b.dtype and mx.array_equal(a, b), name
    with pytest.raises(ValueError, match="already quantized"):
        load_component(spied_spec([]), Checkpoint((stored,), folder, plan=plan), quantize=4)


def test_adapters_see_the_sanitized_weights_and_what_they_return_is_loaded(toy):
    folder, weights = toy
    seen = []

    def double_out(model, w):
        seen.append((model, dict(w)))
        return {**w, "out.weight": w["out.weight"] * 2}

    def then_zero_bias(model, w):
        seen.append((model, dict(w)))
        return {**w, "out.bias": mx.zeros_like(w["out.bias"])}

    model = load_component(spied_spec([]), folder, "float32", adapters=[double_out, then_zero_bias])
    first, second = seen
    assert first[0] is model and second[0] is model
    assert set(first[1]) == set(weights)  # sanitized names, no "model." prefix
    assert mx.array_equal(first[1]["out.weight"], weights["out.weight"])
    assert mx.array_equal(second[1]["out.weight"], weights["out.weight"] * 2)  # in order, chained
    assert mx.array_equal(model.out.weight, weights["out.weight"] * 2)
    assert mx.array_equal(model.out.bias, mx.zeros((4,)))
    assert mx.array_equal(model.blocks[1].weight, weights["blocks.1.weight"])


def test_strict_apply_checks_what_the_adapters_return(toy):
    folder, _ = toy
    spec = spied_spec([])
    extra = lambda model, w: {**w, "lora_up.weight": mx.zeros((2, 2))}  # noqa: E731
    with pytest.raises(WeightError, match=r"toy \(.*\) checkpoint does not match the model: unexpected lora_up"):
        load_component(spec, folder, adapters=[extra])
    dropped = lambda model, w: {k: v for k, v in w.items() if k != "out.bias"}  # noqa: E731
    with pytest.raises(WeightError, match="missing out.bias"):
        load_component(spec, folder, adapters=[dropped])
    wrong = lambda model, w: {**w, "out.bias": mx.zeros((3,))}  # noqa: E731
    with pytest.raises(WeightError, match=r"tensor out.bias has shape \(3,\), the model expects \(4,\)"):
        load_component(spec, folder, adapters=[wrong])


def test_missing_files_and_config_are_one_line(toy, tmp_path):
    folder, _ = toy
    spec = spied_spec([])
    with pytest.raises(WeightError, match="missing model folder"):
        load_component(spec, tmp_path / "nowhere")
    (folder / "config.json").write_text(json.dumps({"wide": 64}))
    with pytest.raises(WeightError, match=r"invalid toy config for .*: 'width'") as e:
        load_component(spec, folder)
    assert "\n" not in str(e.value)


# --- the real components ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def q8(tiny_schnell, tmp_path_factory) -> Path:
    return quantize_to_folder(tiny_schnell, 8, tmp_path_factory.mktemp("loader") / "q8", dtype="float32")


def test_quantized_folder_and_quantize_on_load_are_one_function(tiny_schnell, q8):
    stored = load_component(transformer.SPEC, q8 / "transformer", "float32")
    on_load = load_component(transformer.SPEC, tiny_schnell / "transformer", "float32", quantize=8)
    manifest = read_manifest(q8)
    assert plan_of(stored) == plan_of(on_load) == manifest["components"]["transformer"]["plan"]
    a, b = dict(tree_flatten(stored.parameters())), dict(tree_flatten(on_load.parameters()))
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and mx.array_equal(a[k], b[k]), k
    # the public loader finds the stored part from the folder's root too
    assert plan_of(transformer.load_transformer(q8, dtype="float32")) == plan_of(stored)


@pytest.mark.parametrize("path", ["folder", "quantize on load", "stored"])
def test_t5_keeps_wo_float32_in_float16(tiny_schnell, q8, path):
    """load_t5's rule, whichever way T5 comes: every float `.wo.` tensor float32, the rest float16."""
    if path == "folder":
        model = t5.load_t5(tiny_schnell / "text_encoder_2", dtype="float16")
    elif path == "quantize on load":
        model = load_component(t5.SPEC, tiny_schnell / "text_encoder_2", "float16", quantize=8)
    else:
        model = load_component(t5.SPEC, q8 / "text_encoder_2", "float16")
    floats = {k: v.dtype for k, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating)}
    assert {d for k, d in floats.items() if ".wo." in k} == {mx.float32}
    assert {d for k, d in floats.items() if ".wo." not in k} == {mx.float16}
    if path != "folder":
        assert isinstance(model.encoder.block[0].layer[0].SelfAttention.q, nn.QuantizedLinear)


def test_t5_quantized_wo_keeps_float32_scales_both_ways(tmp_path):
    """With a `wo` wide enough to be quantized, its scales and biases stay float32 too."""
    config = dict(vocab_size=64, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
                  feed_forward_proj="gated-gelu")
    folder = tmp_path / "text_encoder_2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    mx.random.seed(1)
    model = t5.T5Encoder(t5.T5Config.from_dict(config))
    mx.save_safetensors(str(folder / "model.safetensors"),
                        {k: mx.random.normal(v.shape) * 0.1 for k, v in tree_flatten(model.parameters())})

    on_load = load_component(t5.SPEC, folder, "float16", quantize=4)
    wo = on_load.encoder.block[1].layer[1].DenseReluDense.wo
    assert isinstance(wo, nn.QuantizedLinear) and wo.scales.dtype == wo.biases.dtype == mx.float32

    # stored as a float16 run without the rule would have written it (bfloat16 scales)
    plain = t5.T5Encoder(t5.T5Config.from_dict(config))
    plain.load_weights(str(folder / "model.safetensors"))
    plain.set_dtype(mx.bfloat16)
    plan = quantize_module(plain, 4)
    stored_file = tmp_path / "stored.safetensors"
    mx.save_safetensors(str(stored_file), dict(tree_flatten(plain.parameters())))
    stored = load_component(t5.SPEC, Checkpoint((stored_file,), folder, plan=plan), "float16")
    wo = stored.encoder.block[1].layer[1].DenseReluDense.wo
    assert wo.scales.dtype == wo.biases.dtype == mx.float32
    assert stored.encoder.block[1].layer[1].DenseReluDense.wi_0.scales.dtype == mx.float16
    x = mx.array([[3, 5, 7, 1]])
    assert np.isfinite(np.array(stored(x).astype(mx.float32))).all()
    assert np.isfinite(np.array(on_load(x).astype(mx.float32))).all()
