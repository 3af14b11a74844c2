"""Telling a FLUX.1 transformer file from a LoRA, an SD checkpoint or a lone VAE by its tensor names."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from mlx_flux.errors import ModelNotFoundError
from mlx_flux.file_kind import check_model_file, kind_of

Z = np.zeros((1,), np.float32)


@pytest.mark.parametrize("names, kind", [
    (["double_blocks.0.img_attn.qkv.weight", "img_in.weight"], "flux"),
    (["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"], "flux"),
    (["transformer_blocks.0.attn.to_q.weight", "x_embedder.weight"], "flux"),
    (["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"], "lora"),
    (["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"], "lora"),
    (["double_blocks.0.processor.qkv_lora1.down.weight"], "lora"),
    (["model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.conv_in.weight"], "sd"),
    (["decoder.conv_in.weight", "encoder.conv_in.weight"], "vae"),
    (["encoder.block.0.layer.0.SelfAttention.q.weight", "shared.weight"], "text"),
    (["something.else"], "other"),
])
def test_kinds(names, kind):
    assert kind_of(names) == kind


def test_a_flux_file_passes_and_others_are_named(tmp_path, tiny_schnell):
    check_model_file(tiny_schnell / "flux1-schnell.safetensors")
    with pytest.raises(ModelNotFoundError, match=r"^“ae.safetensors” is not a FLUX.1 model \(it looks like a VAE"):
        check_model_file(tiny_schnell / "ae.safetensors")
    sd = tmp_path / "sdxl.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": Z}, str(sd))
    with pytest.raises(ModelNotFoundError, match="Stable Diffusion"):
        check_model_file(sd)
    junk = tmp_path / "notes.safetensors"
    junk.write_text("hello, not a checkpoint")
    with pytest.raises(ModelNotFoundError, match="is not a safetensors file"):
        check_model_file(junk)
