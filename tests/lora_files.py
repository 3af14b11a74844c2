"""Write small random FLUX.1 LoRA files in each real layout, from one common description.

A description maps our target (a Linear's module path; CLIP-L ones start `encoder.layers.`)
to its low-rank update: `(down, up, alpha)`, or for a fused Linear (`img_attn.qkv`,
`txt_attn.qkv`, `linear1`) a list of such pieces covering consecutive rows in the reference
order q, k, v(, mlp), as diffusers-style trainers make them. Each writer stores the same
effective update in its own layout:

- layouts with separate q/k/v (diffusers, OneTrainer) write one module per piece;
- fused layouts (kohya, BFL, ComfyUI, fal, XLabs) write one module per fused Linear, the
  pieces' A stacked and B block-diagonal (what sd-scripts' split-qkv training saves);
- a layout that cannot hold an alpha folds it into B.

The name tables here are written out by hand from the reference (flux-reference.md §4.3) on
purpose: they are the tests' independent statement of the layouts, not a copy of the code's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

Update = tuple[np.ndarray, np.ndarray, float]  # (down [r, in], up [rows, r], alpha)
Description = dict[str, "Update | list[Update]"]
FUSED = ("img_attn.qkv", "txt_attn.qkv", "linear1")


@dataclass(frozen=True)
class Dims:
    """A model's Linear sizes (a tiny FLUX.1 by default)."""

    hidden: int = 32
    mlp_ratio: int = 4
    in_channels: int = 64
    context: int = 32
    vec: int = 16
    time_dim: int = 256
    depth: int = 2
    depth_single: int = 2
    clip_hidden: int = 16
    clip_layers: int = 1
    clip_mlp: int = 64

    @property
    def mlp(self) -> int:
        return self.hidden * self.mlp_ratio


# --- our targets and their shapes ------------------------------------------------------------

def flux_targets(d: Dims, guidance: bool = True) -> dict[str, tuple[int, int]]:
    """Every Linear of the transformer: module path -> (out, in)."""
    h = d.hidden
    t = {"img_in": (h, d.in_channels), "txt_in": (h, d.context),
         "time_in.in_layer": (h, d.time_dim), "time_in.out_layer": (h, h),
         "vector_in.in_layer": (h, d.vec), "vector_in.out_layer": (h, h),
         "final_layer.linear": (d.in_channels, h), "final_layer.adaLN_modulation.1": (2 * h, h)}
    if guidance:
        t |= {"guidance_in.in_layer": (h, d.time_dim), "guidance_in.out_layer": (h, h)}
    for i in range(d.depth):
        for s in ("img", "txt"):
            b = f"double_blocks.{i}.{s}"
            t |= {f"{b}_mod.lin": (6 * h, h), f"{b}_attn.qkv": (3 * h, h), f"{b}_attn.proj": (h, h),
                  f"{b}_mlp.0": (d.mlp, h), f"{b}_mlp.2": (h, d.mlp)}
    for i in range(d.depth_single):
        b = f"single_blocks.{i}"
        t |= {f"{b}.modulation.lin": (3 * h, h), f"{b}.linear1": (3 * h + d.mlp, h),
              f"{b}.linear2": (h, h + d.mlp)}
    return t


def clip_targets(d: Dims) -> dict[str, tuple[int, int]]:
    c = d.clip_hidden
    t = {}
    for i in range(d.clip_layers):
        b = f"encoder.layers.{i}"
        t |= {f"{b}.self_attn.{p}_proj": (c, c) for p in ("q", "k", "v", "out")}
        t |= {f"{b}.mlp.fc1": (d.clip_mlp, c), f"{b}.mlp.fc2": (c, d.clip_mlp)}
    return t


def target_shape(d: Dims, target: str) -> tuple[int, int]:
    return {**flux_targets(d), **clip_targets(d)}[target]


def piece_rows(d: Dims, target: str) -> list[int]:
    """Row counts of a fused Linear's diffusers pieces, in the reference order."""
    h = d.hidden
    return [h, h, h, d.mlp] if target.endswith("linear1") else [h, h, h]


def random_description(d: Dims, rank: int = 4, seed: int = 0, targets: list[str] | None = None,
                       clip: bool = True, dtype=np.float32) -> Description:
    """Random updates for `targets` (default: every Linear, CLIP-L too when `clip`).

    Fused Linears get independent pieces (their own A and alpha), as diffusers trains them.
    """
    rng = np.random.default_rng(seed)
    shapes = {**flux_targets(d), **(clip_targets(d) if clip else {})}

    def update(rows: int, cols: int) -> Update:
        alpha = float(rng.choice([1.0, rank / 2, rank, 2.0 * rank]))
        return (rng.standard_normal((rank, cols)).astype(dtype),
                (rng.standard_normal((rows, rank)) / rank).astype(dtype), alpha)

    desc: Description = {}
    for target in targets if targets is not None else shapes:
        rows, cols = shapes[target]
        if target.endswith(FUSED):
            desc[target] = [update(r, cols) for r in piece_rows(d, target)]
        else:
            desc[target] = update(rows, cols)
    return desc


def pieces(d: Dims, target: str, value: "Update | list[Update]") -> list[Update]:
    """A fused target's value as pieces in reference order (a whole update's B cut into rows)."""
    if isinstance(value, list):
        return value
    down, up, alpha = value
    cuts = np.cumsum(piece_rows(d, target))[:-1]
    return [(down, u, alpha) for u in np.split(up, cuts, axis=0)]


def merged(value: "Update | list[Update]") -> Update:
    """One update for a fused Linear: A stacked, B block-diagonal with each piece's alpha/rank
    folded in, and alpha = the stacked rank (so the file's own scale is 1)."""
    if not isinstance(value, list):
        return value
    downs = [dn for dn, _, _ in value]
    rank = sum(dn.shape[0] for dn in downs)
    up = np.zeros((sum(u.shape[0] for _, u, _ in value), rank), dtype=value[0][1].dtype)
    r0 = c0 = 0
    for dn, u, a in value:
        up[r0:r0 + u.shape[0], c0:c0 + dn.shape[0]] = u * (a / dn.shape[0])
        r0, c0 = r0 + u.shape[0], c0 + dn.shape[0]
    return np.concatenate(downs, axis=0), up, float(rank)


def expected_deltas(d: Dims, desc: Description, layout: str = "diffusers") -> dict[str, np.ndarray]:
    """target -> the full float64 delta [out, in] the description means, as `layout` can hold it."""
    out = {}
    for target, value in desc.items():
        if not _holds(layout, target):
            continue
        rows, cols = target_shape(d, target)
        full = np.zeros((rows, cols))
        r0 = 0
        for down, up, alpha in (value if isinstance(value, list) else [value]):
            full[r0:r0 + up.shape[0]] += (alpha / down.shape[0]) * (up.astype(np.float64) @ down)
            r0 += up.shape[0]
        if layout == "xlabs" and target.endswith("linear1"):
            full[3 * d.hidden:] = 0  # XLabs' single-block qkv_lora covers q, k, v only
        out[target] = full
    return out


def _holds(layout: str, target: str) -> bool:
    clip = target.startswith("encoder.layers.")
    if layout == "xlabs":
        return target.endswith(("attn.qkv", "attn.proj", "linear1", "linear2"))
    if layout in ("bfl", "fal-kontext"):
        return not clip
    return True


# --- names -----------------------------------------------------------------------------------

# BFL layer -> diffusers (flux-reference.md §4.3); fused ones to their pieces
_DIF_TOP = {"img_in": "x_embedder", "txt_in": "context_embedder",
            "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
            "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
            "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
            "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
            "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
            "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
            "final_layer.linear": "proj_out", "final_layer.adaLN_modulation.1": "norm_out.linear"}
_DIF_DOUBLE = {"img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
               "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
               "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2",
               "txt_mlp.0": "ff_context.net.0.proj", "txt_mlp.2": "ff_context.net.2",
               "img_attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
               "txt_attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"]}
_DIF_SINGLE = {"modulation.lin": "norm.linear", "linear2": "proj_out",
               "linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]}


def diffusers_name(target: str) -> "str | list[str]":
    """Our target -> its diffusers module name(s) (transformer-relative; CLIP with `text_model.`)."""
    if target.startswith("encoder.layers."):
        return f"text_model.{target}"
    if target in _DIF_TOP:
        return _DIF_TOP[target]
    blocks, i, layer = target.split(".", 2)
    table, prefix = (_DIF_DOUBLE, "transformer_blocks") if blocks == "double_blocks" else (_DIF_SINGLE, "single_transformer_blocks")
    name = table[layer]
    return [f"{prefix}.{i}.{n}" for n in name] if isinstance(name, list) else f"{prefix}.{i}.{name}"


def _swap_halves(up: np.ndarray) -> np.ndarray:
    a, b = np.split(up, 2, axis=0)
    return np.concatenate([b, a], axis=0)


def _diffusers_modules(d: Dims, desc: Description) -> list[tuple[str, str, Update]]:
    """(component, diffusers module name, update) per diffusers module, pieces separate and the
    final modulation in diffusers' [scale; shift] order."""
    out = []
    for target, value in desc.items():
        component = "text_encoder" if target.startswith("encoder.layers.") else "transformer"
        name = diffusers_name(target)
        if isinstance(name, list):
            out += [(component, n, p) for n, p in zip(name, pieces(d, target, value))]
        else:
            down, up, alpha = value
            if target == "final_layer.adaLN_modulation.1":
                up = _swap_halves(up)
            out.append((component, name, (down, up, alpha)))
    return out


def _fused_modules(desc: Description) -> list[tuple[str, str, Update]]:
    """(component, our target, update) with fused pieces merged (for BFL-named layouts)."""
    return [("text_encoder" if t.startswith("encoder.layers.") else "transformer", t, merged(v))
            for t, v in desc.items()]


# --- writers ---------------------------------------------------------------------------------

_ROLES = {"A": ("lora_A", "lora_B"), "down": ("lora_down", "lora_up"), "xlabs": ("down", "up")}


def _save(path: Path, modules: list[tuple[str, Update]], roles: str, alpha: str,
          metadata: dict[str, str] | None = None) -> Path:
    """Write (key base, update) pairs. alpha: "key" (a `.alpha` tensor), "fold" (into B, so
    that alpha = rank is right), or "none" (not stored: the caller put it in the metadata)."""
    down_role, up_role = _ROLES[roles]
    tensors = {}
    for base, (down, up, a) in modules:
        if alpha == "fold":
            up = (up * (a / down.shape[0])).astype(up.dtype)
        tensors[f"{base}.{down_role}.weight"] = np.ascontiguousarray(down)
        tensors[f"{base}.{up_role}.weight"] = np.ascontiguousarray(up)
        if alpha == "key":
            tensors[f"{base}.alpha"] = np.array(a, dtype=np.float32)
    save_file(tensors, str(path), metadata=metadata)
    return Path(path)


def write_diffusers(path: Path, d: Dims, desc: Description, alpha: str = "key",
                    prefixed: bool = True) -> Path:
    """PEFT / diffusers / AI-Toolkit: `transformer.<diffusers name>.lora_A.weight`.

    alpha "key": `.alpha` tensors; "metadata": PEFT's `lora_alpha` in the header (one value per
    component; each module's own alpha folded into B relative to it); "fold": none (alpha = rank).
    """
    modules, metadata = [], None
    shared = {"transformer": 8.0, "text_encoder": 2.0}
    for component, name, (down, up, a) in _diffusers_modules(d, desc):
        base = f"{component}.{name}" if prefixed or component != "transformer" else name
        if alpha == "metadata":
            up, a = (up * (a / shared[component])).astype(up.dtype), shared[component]
        modules.append((base, (down, up, a)))
    if alpha == "metadata":
        metadata = {"lora_adapter_metadata": json.dumps({f"{c}.lora_alpha": v for c, v in shared.items()})}
    return _save(path, modules, "A", "none" if alpha == "metadata" else alpha, metadata)


def write_onetrainer(path: Path, d: Dims, desc: Description) -> Path:
    """OneTrainer: diffusers names with `_`, `lora_transformer_` / `lora_te1_`, lora_down/up, alpha."""
    modules = []
    for component, name, update in _diffusers_modules(d, desc):
        prefix = "lora_transformer_" if component == "transformer" else "lora_te1_"
        modules.append((prefix + name.replace(".", "_"), update))
    return _save(path, modules, "down", "key")


def write_kohya(path: Path, d: Dims, desc: Description, alpha: str = "key",
                metadata: dict[str, str] | None = None) -> Path:
    """sd-scripts: `lora_unet_<BFL name with _>`, `lora_te1_text_model_<CLIP name with _>`."""
    modules = []
    for component, target, update in _fused_modules(desc):
        prefix = "lora_unet_" if component == "transformer" else "lora_te1_text_model_"
        modules.append((prefix + target.replace(".", "_"), update))
    return _save(path, modules, "down", alpha, metadata)


def write_bfl(path: Path, d: Dims, desc: Description) -> Path:
    """BFL names under `diffusion_model.`, lora_A/lora_B, `.alpha`."""
    modules = [(f"diffusion_model.{t}", u) for c, t, u in _fused_modules(desc) if c == "transformer"]
    return _save(path, modules, "A", "key")


def write_comfyui(path: Path, d: Dims, desc: Description) -> Path:
    """ComfyUI: BFL names under `diffusion_model.`, CLIP under `text_encoders.clip_l.transformer.`,
    lora_down/lora_up, `.alpha`."""
    modules = []
    for component, target, update in _fused_modules(desc):
        base = (f"diffusion_model.{target}" if component == "transformer"
                else f"text_encoders.clip_l.transformer.text_model.{target}")
        modules.append((base, update))
    return _save(path, modules, "down", "key")


def write_fal_kontext(path: Path, d: Dims, desc: Description) -> Path:
    """fal's Kontext trainer: BFL names under `base_model.model.`, lora_A/lora_B, no alpha."""
    modules = [(f"base_model.model.{t}", u) for c, t, u in _fused_modules(desc) if c == "transformer"]
    return _save(path, modules, "A", "fold")


def write_xlabs(path: Path, d: Dims, desc: Description) -> Path:
    """XLabs: `double_blocks.N.processor.{qkv,proj}_lora{1,2}` (1: image, 2: text) and
    `single_blocks.N.processor.{qkv,proj}_lora`, down/up, no alpha. Other layers are skipped."""
    names = {"img_attn.qkv": "qkv_lora1", "txt_attn.qkv": "qkv_lora2",
             "img_attn.proj": "proj_lora1", "txt_attn.proj": "proj_lora2",
             "linear1": "qkv_lora", "linear2": "proj_lora"}
    modules = []
    for component, target, (down, up, a) in _fused_modules(desc):
        if not _holds("xlabs", target):
            continue
        blocks, i, layer = target.split(".", 2)
        if layer == "linear1":
            up = up[:3 * d.hidden]  # the q, k, v rows
        modules.append((f"{blocks}.{i}.processor.{names[layer]}", (down, up, a)))
    return _save(path, modules, "xlabs", "fold")


WRITERS = {"diffusers": write_diffusers, "kohya": write_kohya, "xlabs": write_xlabs, "bfl": write_bfl,
           "comfyui": write_comfyui, "fal-kontext": write_fal_kontext, "onetrainer": write_onetrainer}


def write_raw(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    """Any keys, for the refusal tests."""
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=metadata)
    return Path(path)
