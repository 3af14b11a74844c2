"""Tiny random FLUX.1 checkpoints in the real on-disk layouts, built with diffusers/transformers.

The reference libraries write the files themselves (real file names, key names and
config.json fields), so our loaders are tested on exactly what a user downloads; the
same torch modules then serve as the numerical reference.

Usable as a script, e.g. for the packaging smoke test or screenshots:
    python tests/tiny_models.py OUT_DIR [--variant schnell|dev] [--single-files]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

TOKENIZERS = Path(__file__).parent / "data" / "tokenizers"

# Small but structurally complete: 2 double + 2 single blocks, 3-axis RoPE summing to the
# head dim, 16 latent channels as in the real VAE, real vocabularies for both tokenizers.
TRANSFORMER = dict(
    patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=16,
    num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=24, axes_dims_rope=(4, 6, 6),
)
VAE = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[32, 32, 64, 64], layers_per_block=2,
    act_fn="silu", latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611,
    shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, force_upcast=True,
    mid_block_add_attention=True,
)
CLIP = dict(
    vocab_size=49408, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=24,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
T5 = dict(
    vocab_size=32128, d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2, feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
    tie_word_embeddings=False, is_encoder_decoder=True, pad_token_id=0, eos_token_id=1,
    decoder_start_token_id=0, dropout_rate=0.1,
)
SCHEDULER = {
    "schnell": {"shift": 1.0, "use_dynamic_shifting": False},
    "dev": {"shift": 3.0, "use_dynamic_shifting": True},
}
MODEL_INDEX = {
    "_class_name": "FluxPipeline",
    "_diffusers_version": "0.30.0.dev0",
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "FluxTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Re-draw every parameter so activations stay O(1) through the tiny nets.

    Default inits (std 0.02, zero biases, unit norms) would let a swapped or missing
    tensor go unnoticed; these values make every tensor matter.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                std = 1.0 if "embed" in name or "shared" in name or "relative_attention" in name else fan_in**-0.5
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif "norm" in name and name.endswith(("weight", "scale")):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return module.eval()


def make_transformer(variant: str = "schnell", seed: int = 0, in_channels: int = 64):
    """in_channels 384: a FLUX.1 Fill transformer (latents, masked-image latents, packed mask in;
    64 channels of velocity out, as in diffusers' FluxFill config)."""
    from diffusers import FluxTransformer2DModel

    model = FluxTransformer2DModel(guidance_embeds=variant == "dev",
                                   **{**TRANSFORMER, "in_channels": in_channels, "out_channels": 64})
    return randomize(model, seed)


def make_vae(seed: int = 1):
    from diffusers import AutoencoderKL

    return randomize(AutoencoderKL(**VAE), seed)


def make_clip(seed: int = 2):
    from transformers import CLIPTextConfig, CLIPTextModel

    return randomize(CLIPTextModel(CLIPTextConfig(**CLIP)), seed)


def make_t5(seed: int = 3):
    from transformers import T5Config, T5EncoderModel

    return randomize(T5EncoderModel(T5Config(**T5)), seed)


def copy_tokenizers(root: Path) -> None:
    shutil.copytree(TOKENIZERS / "clip-vit-large-patch14", root / "tokenizer", dirs_exist_ok=True)
    shutil.copytree(TOKENIZERS / "t5-v1_1", root / "tokenizer_2", dirs_exist_ok=True)
    for p in (root / "tokenizer").glob("*"):
        p.chmod(0o644)
    for p in (root / "tokenizer_2").glob("*"):
        p.chmod(0o644)


def build_hf_layout(root: Path, variant: str = "schnell", seed: int = 0, pipeline_class: str = "FluxPipeline",
                    in_channels: int = 64) -> Path:
    """Write a tiny model in the layout of black-forest-labs/FLUX.1-{variant}; `pipeline_class`
    is model_index.json's `_class_name` (FluxKontextPipeline: a FLUX.1-Kontext-dev;
    FluxFillPipeline with in_channels 384: a FLUX.1-Fill-dev)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # Shard the two big components, as on the hub, so index files are exercised.
    make_transformer(variant, seed, in_channels).save_pretrained(root / "transformer", max_shard_size="100KB")
    make_vae(seed + 1).save_pretrained(root / "vae")
    make_clip(seed + 2).save_pretrained(root / "text_encoder")
    make_t5(seed + 3).save_pretrained(root / "text_encoder_2", max_shard_size="3MB")
    copy_tokenizers(root)
    scheduler = {
        "_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.30.0.dev0",
        "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
        "num_train_timesteps": 1000, **SCHEDULER[variant],
    }
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
    (root / "model_index.json").write_text(json.dumps({**MODEL_INDEX, "_class_name": pipeline_class}, indent=2))
    return root


# --- BFL single files -------------------------------------------------------------------------

def transformer_to_bfl(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers FluxTransformer2DModel state dict -> BFL flux1-*.safetensors keys.

    Written independently of the engine (from the published conversion table) so the
    engine's own key mapping is checked against it, not against itself.
    """
    out: dict[str, torch.Tensor] = {}
    sd = dict(sd)

    def take(src: str, dst: str) -> None:
        for kind in ("weight", "bias"):
            if f"{src}.{kind}" in sd:
                out[f"{dst}.{kind}"] = sd.pop(f"{src}.{kind}")

    def cat(srcs: list[str], dst: str) -> None:
        for kind in ("weight", "bias"):
            out[f"{dst}.{kind}"] = torch.cat([sd.pop(f"{s}.{kind}") for s in srcs])

    take("x_embedder", "img_in")
    take("context_embedder", "txt_in")
    take("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer")
    take("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer")
    take("time_text_embed.text_embedder.linear_1", "vector_in.in_layer")
    take("time_text_embed.text_embedder.linear_2", "vector_in.out_layer")
    take("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer")
    take("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer")
    n_double = len({k.split(".")[1] for k in sd if k.startswith("transformer_blocks.")})
    n_single = len({k.split(".")[1] for k in sd if k.startswith("single_transformer_blocks.")})
    for i in range(n_double):
        s, d = f"transformer_blocks.{i}", f"double_blocks.{i}"
        take(f"{s}.norm1.linear", f"{d}.img_mod.lin")
        take(f"{s}.norm1_context.linear", f"{d}.txt_mod.lin")
        cat([f"{s}.attn.to_q", f"{s}.attn.to_k", f"{s}.attn.to_v"], f"{d}.img_attn.qkv")
        cat([f"{s}.attn.add_q_proj", f"{s}.attn.add_k_proj", f"{s}.attn.add_v_proj"], f"{d}.txt_attn.qkv")
        out[f"{d}.img_attn.norm.query_norm.scale"] = sd.pop(f"{s}.attn.norm_q.weight")
        out[f"{d}.img_attn.norm.key_norm.scale"] = sd.pop(f"{s}.attn.norm_k.weight")
        out[f"{d}.txt_attn.norm.query_norm.scale"] = sd.pop(f"{s}.attn.norm_added_q.weight")
        out[f"{d}.txt_attn.norm.key_norm.scale"] = sd.pop(f"{s}.attn.norm_added_k.weight")
        take(f"{s}.attn.to_out.0", f"{d}.img_attn.proj")
        take(f"{s}.attn.to_add_out", f"{d}.txt_attn.proj")
        take(f"{s}.ff.net.0.proj", f"{d}.img_mlp.0")
        take(f"{s}.ff.net.2", f"{d}.img_mlp.2")
        take(f"{s}.ff_context.net.0.proj", f"{d}.txt_mlp.0")
        take(f"{s}.ff_context.net.2", f"{d}.txt_mlp.2")
    for i in range(n_single):
        s, d = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        take(f"{s}.norm.linear", f"{d}.modulation.lin")
        cat([f"{s}.attn.to_q", f"{s}.attn.to_k", f"{s}.attn.to_v", f"{s}.proj_mlp"], f"{d}.linear1")
        out[f"{d}.norm.query_norm.scale"] = sd.pop(f"{s}.attn.norm_q.weight")
        out[f"{d}.norm.key_norm.scale"] = sd.pop(f"{s}.attn.norm_k.weight")
        take(f"{s}.proj_out", f"{d}.linear2")
    take("proj_out", "final_layer.linear")
    # diffusers stores the final modulation as [scale; shift], BFL as [shift; scale].
    for kind in ("weight", "bias"):
        scale, shift = sd.pop(f"norm_out.linear.{kind}").chunk(2)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale])
    assert not sd, f"unmapped diffusers keys: {sorted(sd)}"
    return out


def vae_to_bfl(sd: dict[str, torch.Tensor], levels: int = 4) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL state dict -> BFL ae.safetensors keys (1x1 conv attention)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        k = key
        for side in ("encoder", "decoder"):
            k = k.replace(f"{side}.mid_block.resnets.0.", f"{side}.mid.block_1.")
            k = k.replace(f"{side}.mid_block.resnets.1.", f"{side}.mid.block_2.")
            k = k.replace(f"{side}.conv_norm_out.", f"{side}.norm_out.")
        k = k.replace("conv_shortcut", "nin_shortcut")
        if ".mid_block.attentions.0." in k:
            k = k.replace(".mid_block.attentions.0.", ".mid.attn_1.")
            k = (k.replace("group_norm", "norm").replace("to_q", "q").replace("to_k", "k")
                 .replace("to_v", "v").replace("to_out.0", "proj_out"))
            if value.ndim == 2:
                value = value[:, :, None, None]
        if k.startswith("encoder.down_blocks."):
            parts = k.split(".")
            i = parts[2]
            rest = ".".join(parts[3:]).replace("resnets.", "block.").replace("downsamplers.0.", "downsample.")
            k = f"encoder.down.{i}.{rest}"
        if k.startswith("decoder.up_blocks."):
            parts = k.split(".")
            i = levels - 1 - int(parts[2])
            rest = ".".join(parts[3:]).replace("resnets.", "block.").replace("upsamplers.0.", "upsample.")
            k = f"decoder.up.{i}.{rest}"
        out[k] = value.contiguous()
    return out


def build_single_files(root: Path, variant: str = "schnell", seed: int = 0, prefix: str = "") -> tuple[Path, Path]:
    """Write BFL `flux1-{variant}.safetensors` and `ae.safetensors` from the same tiny weights
    `build_hf_layout(…, seed)` uses, so both layouts must give identical images."""
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sd = transformer_to_bfl(make_transformer(variant, seed).state_dict())
    flux = root / f"flux1-{variant}.safetensors"
    save_file({prefix + k: v.contiguous() for k, v in sd.items()}, flux)
    ae = root / "ae.safetensors"
    save_file(vae_to_bfl(make_vae(seed + 1).state_dict()), ae)
    return flux, ae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--variant", choices=["schnell", "dev"], default="schnell")
    parser.add_argument("--single-files", action="store_true", help="also write the BFL single files")
    args = parser.parse_args()
    build_hf_layout(args.out, args.variant)
    if args.single_files:
        build_single_files(args.out, args.variant)
    print(args.out)


if __name__ == "__main__":
    main()
