"""Reading FLUX.1 LoRA files of any common layout into low-rank updates on our module paths.

    lora = read_lora("style.safetensors")      # format detected from the keys
    for u in lora.updates:                     # u.target is our Linear, e.g. "double_blocks.3.img_attn.qkv"
        rows = slice(u.row_offset, u.row_offset + u.up.shape[0])
        # weight[rows] += u.delta(scale)       (applying is the pipeline's job)

This module is the only place that knows LoRA key names. The diffusers -> BFL transformer
names come from `transformer.py`'s tables (the same ones `Flux.sanitize` uses), so the two
mappings cannot drift apart.

Layouts (what writes them):
    diffusers   PEFT / diffusers / AI-Toolkit: `transformer.transformer_blocks.0.attn.to_q.lora_A.weight`
    kohya       sd-scripts: `lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`, `lora_te1_...`
    xlabs       XLabs-AI: `double_blocks.0.processor.qkv_lora1.down.weight`
    bfl         BFL names: `diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`
    comfyui     ComfyUI: `diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight`
    fal-kontext fal's trainer: `base_model.model.double_blocks.0.img_attn.qkv.lora_A.weight`
    onetrainer  OneTrainer: `lora_transformer_transformer_blocks_0_attn_to_q.lora_down.weight`
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import mlx.core as mx

from .lora_info import LoraError, file_sha256
from .transformer import _DOUBLE, _FUSION_ORDER, _SINGLE, _TOP
from .weights import read_header


@dataclass(frozen=True)
class LoraUpdate:
    """One low-rank update `(alpha / rank) * up @ down` of rows of one of our Linear layers."""

    component: str  # "transformer" or "text_encoder" (CLIP-L)
    target: str  # our Linear's module path, e.g. "double_blocks.3.img_attn.qkv"
    down: mx.array  # A, [rank, in_features]
    up: mx.array  # B, [rows, rank]
    alpha: float
    row_offset: int = 0  # first output row of `target` covered (a piece of a fused qkv / linear1)

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def rows(self) -> slice:
        """The output rows of `target` this update covers."""
        return slice(self.row_offset, self.row_offset + self.up.shape[0])

    def delta(self, scale: float = 1.0) -> mx.array:
        """The float32 weight update [rows, in_features] = scale * alpha / rank * up @ down."""
        up = self.up.astype(mx.float32)
        return (scale * self.alpha / self.rank) * (up @ self.down.astype(mx.float32))


@dataclass(frozen=True)
class LoraFile:
    """A LoRA file read into updates on our module paths."""

    path: Path
    format: str  # see the module docstring
    updates: tuple[LoraUpdate, ...]
    metadata: dict[str, str]  # the safetensors header's __metadata__
    _digest: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def fingerprint(self) -> str:
        """Short content hash of the file: the first 12 hex digits of its sha256 (streamed)."""
        if "sha256" not in self._digest:  # hashing a large file costs a read: only when asked
            self._digest["sha256"] = file_sha256(self.path)
        return self._digest["sha256"][:12]


# --- our module names, from the transformer's diffusers -> BFL tables --------------------------

# diffusers Linear names -> BFL (the tables also rename norm scales, which LoRAs do not touch)
_DIF_DOUBLE = {k: v for k, v in _DOUBLE.items() if not k.endswith(".weight")}
_DIF_SINGLE = {k: v for k, v in _SINGLE.items() if not k.endswith(".weight")}
_DIF_FINAL_MOD = "norm_out.linear"  # final_layer.adaLN_modulation.1 with its row halves swapped
_FINAL_MOD = "final_layer.adaLN_modulation.1"
# diffusers piece -> (fused BFL Linear, index in the fusion order q, k, v(, mlp))
_DIF_DOUBLE_PIECES = {p: (f, i) for f in ("img_attn.qkv", "txt_attn.qkv") for i, p in enumerate(_FUSION_ORDER[f])}
_DIF_SINGLE_PIECES = {p: ("linear1", i) for i, p in enumerate(_FUSION_ORDER["linear1"])}
# every BFL Linear a LoRA may target
_BFL_DOUBLE = set(_DIF_DOUBLE.values()) | {f for f, _ in _DIF_DOUBLE_PIECES.values()}
_BFL_SINGLE = set(_DIF_SINGLE.values()) | {"linear1"}
_BFL_TOP = set(_TOP.values()) | {_FINAL_MOD}
# CLIP-L Linears (clip.py, after `text_model.` is stripped)
_CLIP_LINEAR = re.compile(r"encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])")


@dataclass(frozen=True)
class _Site:
    """Where one module of a LoRA file lands in our model."""

    component: str
    target: str
    piece: int = -1  # index in `_FUSION_ORDER` for a diffusers piece of a fused Linear, -1: whole
    swap_halves: bool = False  # diffusers' final modulation is [scale; shift], ours [shift; scale]


def _bfl(name: str) -> _Site | None:
    """A dotted BFL module name (`double_blocks.0.img_attn.qkv`)."""
    m = re.fullmatch(r"(double_blocks|single_blocks)\.(\d+)\.(.+)", name)
    if m:
        known = _BFL_DOUBLE if m.group(1) == "double_blocks" else _BFL_SINGLE
        return _Site("transformer", name) if m.group(3) in known else None
    return _Site("transformer", name) if name in _BFL_TOP else None


def _diffusers(name: str) -> _Site | None:
    """A dotted diffusers module name (`transformer_blocks.0.attn.to_q`)."""
    m = re.fullmatch(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)", name)
    if m:
        double = m.group(1) == "transformer_blocks"
        block = f"{'double_blocks' if double else 'single_blocks'}.{m.group(2)}"
        table, pieces = (_DIF_DOUBLE, _DIF_DOUBLE_PIECES) if double else (_DIF_SINGLE, _DIF_SINGLE_PIECES)
        rest = m.group(3)
        if rest in table:
            return _Site("transformer", f"{block}.{table[rest]}")
        if rest in pieces:
            fused, index = pieces[rest]
            return _Site("transformer", f"{block}.{fused}", piece=index)
        return None
    if name == _DIF_FINAL_MOD:
        return _Site("transformer", _FINAL_MOD, swap_halves=True)
    return _Site("transformer", _TOP[name]) if name in _TOP else None


def _clip(name: str) -> _Site | None:
    """A dotted transformers CLIP module name, with or without `text_model.`."""
    name = name.removeprefix("text_model.")
    return _Site("text_encoder", name) if _CLIP_LINEAR.fullmatch(name) else None


def _underscored_blocks(resolve: Callable[[str], _Site | None], blocks: dict[str, list[str]],
                        top: list[str]) -> Callable[[str], _Site | None]:
    """kohya-style names: dotted names with every `.` written `_` (`double_blocks_0_img_attn_qkv`).

    That is ambiguous (`img_attn_qkv`), so the layer part is looked up among the names
    `resolve` knows, written the same way; block indices are free (never constants).
    """
    tables = {b: {n.replace(".", "_"): n for n in layers} for b, layers in blocks.items()}
    pattern = re.compile(rf"({'|'.join(sorted(blocks, key=len, reverse=True))})_(\d+)_(.+)")
    top_table = {n.replace(".", "_"): n for n in top}

    def lookup(name: str) -> _Site | None:
        m = pattern.fullmatch(name)
        if m and m.group(3) in tables[m.group(1)]:
            return resolve(f"{m.group(1)}.{m.group(2)}.{tables[m.group(1)][m.group(3)]}")
        return resolve(top_table[name]) if name in top_table else None

    return lookup


_kohya_unet = _underscored_blocks(
    _bfl, {"double_blocks": sorted(_BFL_DOUBLE), "single_blocks": sorted(_BFL_SINGLE)}, sorted(_BFL_TOP))
_onetrainer_transformer = _underscored_blocks(
    _diffusers,
    {"transformer_blocks": sorted(_DIF_DOUBLE) + sorted(_DIF_DOUBLE_PIECES),
     "single_transformer_blocks": sorted(_DIF_SINGLE) + sorted(_DIF_SINGLE_PIECES)},
    sorted(_TOP) + [_DIF_FINAL_MOD])


def _kohya_clip(name: str) -> _Site | None:
    """`text_model_encoder_layers_0_self_attn_q_proj` (kohya and OneTrainer CLIP-L names)."""
    m = re.fullmatch(r"text_model_encoder_layers_(\d+)_(self_attn_(?:q|k|v|out)_proj|mlp_fc[12])", name)
    if not m:
        return None
    layer = m.group(2).replace("self_attn_", "self_attn.").replace("mlp_", "mlp.")
    return _clip(f"encoder.layers.{m.group(1)}.{layer}")


def _prefixed(rules: list[tuple[str, Callable[[str], _Site | None]]]) -> Callable[[str], _Site | None]:
    """Try each (prefix, resolver) whose prefix the name has, on the rest of the name."""
    def lookup(name: str) -> _Site | None:
        for prefix, resolve in rules:
            if name.startswith(prefix) and (site := resolve(name[len(prefix):])):
                return site
        return None
    return lookup


_XLABS = {"qkv_lora1": "img_attn.qkv", "qkv_lora2": "txt_attn.qkv",
          "proj_lora1": "img_attn.proj", "proj_lora2": "txt_attn.proj"}
# XLabs' single-block processor adds qkv_lora to the first 3*hidden rows of linear1 (the q, k, v
# part; row offset 0) and proj_lora to linear2, as diffusers' converter reads it.
_XLABS_SINGLE = {"qkv_lora": "linear1", "proj_lora": "linear2"}


def _xlabs(name: str) -> _Site | None:
    m = re.fullmatch(r"(?:diffusion_model\.)?(double_blocks|single_blocks)\.(\d+)\.processor\.(\w+)", name)
    table = _XLABS if m and m.group(1) == "double_blocks" else _XLABS_SINGLE
    if not m or m.group(3) not in table:
        return None
    return _Site("transformer", f"{m.group(1)}.{m.group(2)}.{table[m.group(3)]}")


# T5 LoRA parts: not supported (no trainer we know of makes them useful; say so instead of ignoring)
_T5_PREFIXES = ("lora_te2_", "text_encoder_2.", "text_encoders.t5xxl.")

# format -> resolver of its module names (the key without `.lora_A.weight` etc.)
_RESOLVERS: dict[str, Callable[[str], _Site | None]] = {
    "diffusers": _prefixed([("transformer.", _diffusers), ("text_encoder.", _clip), ("", _diffusers)]),
    "kohya": _prefixed([("lora_unet_", _kohya_unet), ("lora_te1_", _kohya_clip), ("lora_te_", _kohya_clip)]),
    "xlabs": _xlabs,
    "bfl": _prefixed([("model.diffusion_model.", _bfl), ("diffusion_model.", _bfl)]),
    "comfyui": _prefixed([("model.diffusion_model.", _bfl), ("diffusion_model.", _bfl),
                          ("text_encoders.clip_l.transformer.", _clip)]),
    "fal-kontext": _prefixed([("base_model.model.", _bfl)]),
    "onetrainer": _prefixed([("lora_transformer_", _onetrainer_transformer), ("lora_te1_", _kohya_clip)]),
}

# --- keys -----------------------------------------------------------------------------------

# `<module>.<role>[.<i>].weight` or `<module>.alpha`; `.<i>` is sd-scripts' split q/k/v(/mlp)
_KEY = re.compile(r"(?P<module>.+?)\.(?P<role>lora_A|lora_B|lora_down|lora_up|down|up)(?:\.(?P<part>\d+))?\.weight")
_DOWN_ROLES = {"lora_A", "lora_down", "down"}


@dataclass
class _Module:
    """The tensors of one LoRA module of the file, by role."""

    down: dict[int, mx.array] = field(default_factory=dict)  # part (-1: not split) -> A
    up: dict[int, mx.array] = field(default_factory=dict)
    alpha: float | None = None
    keys: list[str] = field(default_factory=list)


def _split_keys(tensors: Mapping[str, mx.array]) -> tuple[dict[str, _Module], list[str]]:
    """Group the file's tensors by module; return the modules and the keys that are not LoRA keys."""
    modules: dict[str, _Module] = {}
    other = []
    for key, value in tensors.items():
        if key.endswith(".alpha"):
            module = modules.setdefault(key.removesuffix(".alpha"), _Module())
            module.alpha = float(value.astype(mx.float32).item())
        elif m := _KEY.fullmatch(key):
            module = modules.setdefault(m["module"], _Module())
            part = int(m["part"]) if m["part"] is not None else -1
            (module.down if m["role"] in _DOWN_ROLES else module.up)[part] = value
        else:
            other.append(key)
            continue
        module.keys.append(key)
    return modules, other


# SD 1.x / SDXL UNet LoRA names (kohya `lora_unet_input_blocks_...`, diffusers `unet.down_blocks...`)
_SD_UNET = re.compile(r"(^|[._])(input_blocks|output_blocks|middle_block|down_blocks|up_blocks|mid_block)[._]")


def _detect(keys: list[str]) -> str | None:
    """The layout of a file, from its key names (first rule that any key matches)."""
    def any_key(test: Callable[[str], bool]) -> bool:
        return any(test(k) for k in keys)

    if any_key(lambda k: ".processor." in k and ("qkv_lora" in k or "proj_lora" in k)):
        return "xlabs"
    if any_key(lambda k: k.startswith("base_model.model.")):
        return "fal-kontext"
    if any_key(lambda k: k.startswith("lora_transformer_")):
        return "onetrainer"
    if any_key(lambda k: k.startswith(("lora_unet_", "lora_te"))):
        return "kohya"
    if any_key(lambda k: k.startswith(("diffusion_model.", "model.diffusion_model.", "text_encoders."))):
        return "comfyui" if any_key(lambda k: ".lora_down." in k) else "bfl"
    if any_key(lambda k: k.startswith(("transformer.", "text_encoder.", "transformer_blocks.",
                                       "single_transformer_blocks.", "unet."))):
        return "diffusers"
    if any_key(lambda k: k.startswith(tuple(f"{n}." for n in (*_TOP, _DIF_FINAL_MOD)))):
        return "diffusers"
    return None


# --- alpha ----------------------------------------------------------------------------------

def _metadata_alpha(metadata: Mapping[str, str]) -> Callable[[str, str], float | None]:
    """alpha for (component, diffusers-side module name) from the header, when keys carry none.

    diffusers writes PEFT's config as JSON under `lora_adapter_metadata`
    (`transformer.lora_alpha`, `transformer.alpha_pattern`); sd-scripts writes `ss_network_alpha`.
    """
    peft: dict = {}
    try:
        peft = json.loads(metadata.get("lora_adapter_metadata") or "{}")
    except json.JSONDecodeError:
        pass
    try:
        kohya = float(metadata["ss_network_alpha"])
    except (KeyError, ValueError):
        kohya = None

    def alpha(component: str, module: str) -> float | None:
        # PEFT matches a pattern against the end of the module name
        for pattern, value in (peft.get(f"{component}.alpha_pattern") or {}).items():
            if re.fullmatch(rf"(.*\.)?({pattern})", module):
                return float(value)
        if f"{component}.lora_alpha" in peft:
            return float(peft[f"{component}.lora_alpha"])
        return kohya

    return alpha


# --- reading --------------------------------------------------------------------------------

def _load(path: Path) -> tuple[dict[str, mx.array], dict[str, str]]:
    if not path.is_file():
        raise LoraError(f"LoRA file not found: {path}")
    try:
        read_header(path)  # catches truncated downloads before mx.load would
        tensors, metadata = mx.load(str(path), return_metadata=True)
    except Exception as e:  # WeightError, or mlx's RuntimeError/ValueError with C++ text
        raise LoraError(f"{path.name}: not a readable safetensors LoRA ({e})") from e
    return tensors, dict(metadata or {})


def _refuse_unsupported(name: str, fmt: str, keys: list[str]) -> None:
    """Kinds of adapter files we recognise but cannot apply: say what they are."""
    def first(test: Callable[[str], bool]) -> str | None:
        return next((k for k in keys if test(k)), None)

    if k := first(lambda k: k.endswith(".dora_scale")):
        raise LoraError(f"{name}: {fmt} DoRA file ({k}); DoRA is not supported, only plain LoRA")
    if k := first(lambda k: re.search(r"\.(lokr_w|hada_w)", k) is not None):
        raise LoraError(f"{name}: LyCORIS LoKr/LoHa file ({k}); only plain LoRA is supported")
    if k := first(lambda k: k.startswith(_T5_PREFIXES)):
        raise LoraError(f"{name}: {fmt} LoRA with T5 text-encoder parts ({k}); T5 LoRAs are not supported")
    if k := first(lambda k: _SD_UNET.search(k) is not None):
        raise LoraError(f"{name}: looks like an SDXL (or SD 1.x) LoRA ({k}), not a FLUX.1 LoRA")


def read_lora(path: str | Path) -> LoraFile:
    """Read a FLUX.1 LoRA file of any common layout (detected from its keys).

    Every key must map onto one of our Linear layers; otherwise, or for another model's
    LoRA, a DoRA / LyCORIS file, or a file with no updates, raises `LoraError` with one
    line naming the file, the detected format and how many keys matched.
    """
    path = Path(path)
    tensors, metadata = _load(path)
    keys = list(tensors)
    if not keys:
        raise LoraError(f"{path.name}: the file holds no tensors")
    fmt = _detect(keys)
    _refuse_unsupported(path.name, fmt or "unknown", keys)
    if fmt is None:
        raise LoraError(f"{path.name}: not a FLUX.1 LoRA layout we know (first key: {keys[0]})")

    modules, other = _split_keys(tensors)
    resolve = _RESOLVERS[fmt]
    sites: dict[str, _Site] = {}
    unknown = list(other)
    for module_name, module in modules.items():
        site = resolve(module_name)
        if site is None or not module.down or set(module.down) != set(module.up):
            unknown.extend(module.keys)
        else:
            sites[module_name] = site
    if unknown:
        matched = len(keys) - len(unknown)
        raise LoraError(f"{path.name}: {fmt} LoRA, {matched} of {len(keys)} keys match FLUX.1 layers "
                        f"(first unknown: {unknown[0]})")

    default_alpha = _metadata_alpha(metadata)
    updates = _updates(path.name, {n: (sites[n], modules[n]) for n in sites}, default_alpha)
    if not updates:
        raise LoraError(f"{path.name}: {fmt} LoRA with no updates")
    return LoraFile(path=path, format=fmt, updates=tuple(updates), metadata=metadata)


def _check_pair(file: str, name: str, down: mx.array, up: mx.array) -> None:
    if down.ndim != 2 or up.ndim != 2 or down.shape[0] != up.shape[1]:
        raise LoraError(f"{file}: {name} has A {tuple(down.shape)} and B {tuple(up.shape)}, "
                        "not a linear LoRA pair [rank, in] / [out, rank]")


def _updates(file: str, found: dict[str, tuple[_Site, _Module]],
             default_alpha: Callable[[str, str], float | None]) -> list[LoraUpdate]:
    """The updates of the resolved modules, with alphas and the row offsets of fused pieces."""
    # diffusers' separate q, k, v(, mlp) of one fused Linear: q, k and v are equally wide, and
    # each piece starts after the pieces before it in the fusion order. The width comes from
    # the file (the pieces' own rows; with only the mlp piece, the in-features, which for
    # FLUX.1's fused inputs equal the hidden size): never a constant.
    widths: dict[tuple[str, str], set[int]] = {}
    for site, module in found.values():
        if 0 <= site.piece < 3:
            rows = {up.shape[0] for up in module.up.values()}
            widths.setdefault((site.component, site.target), set()).update(rows)
    for target, width in widths.items():
        if len(width) > 1:
            raise LoraError(f"{file}: the q/k/v pieces of {target[1]} differ in width {sorted(width)}")

    updates = []
    for name, (site, module) in found.items():
        for part in sorted(module.down):
            down, up = module.down[part], module.up[part]
            _check_pair(file, name, down, up)
        alpha_of = module.alpha if module.alpha is not None else default_alpha(site.component, name)
        offset = 0
        for part in sorted(module.down):  # sd-scripts' split q/k/v(/mlp): pieces in row order
            down, up = module.down[part], module.up[part]
            if site.piece > 0:
                (width,) = widths.get((site.component, site.target)) or {down.shape[1]}
                offset = site.piece * width
            if site.swap_halves:
                if up.shape[0] % 2:
                    raise LoraError(f"{file}: {name} has an odd number of rows ({up.shape[0]})")
                scale, shift = mx.split(up, 2, axis=0)
                up = mx.concatenate([shift, scale], axis=0)
            alpha = alpha_of if alpha_of is not None else float(down.shape[0])
            updates.append(LoraUpdate(site.component, site.target, down, up, alpha, offset))
            offset += up.shape[0]
    return updates
