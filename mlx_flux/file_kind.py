"""What a single .safetensors file holds, from its tensor names alone (nothing else is read).

A file picked as a model may be a LoRA, a Stable Diffusion checkpoint or a lone VAE; saying so
before anything is loaded (or a 10 GB base downloaded for it) is the point:

    check_model_file(path)   # raises ModelNotFoundError: "“x.safetensors” is not a FLUX.1 model (…)"

Light on purpose: no MLX import, so the GUI thread can ask.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelNotFoundError
from .safetensors_header import HeaderError, read_raw_header


# Tensor-name pieces, checked in this order (a FLUX.1 LoRA also names double_blocks).
_LORA = ("lora_", ".lora.", "_lora", ".alpha", "lora_unet_", "lora_te")
_FLUX = ("double_blocks.", "single_blocks.", "transformer_blocks.", "single_transformer_blocks.")
_SD = ("input_blocks.", "conditioner.embedders", "cond_stage_model.", "first_stage_model.", "down_blocks.",
       "add_embedding.")
_VAE = ("decoder.conv_in.", "encoder.conv_in.", "decoder.up.", "decoder.up_blocks.")
_TEXT = ("encoder.block.", "text_model.encoder.", "shared.weight", "encoder.layers.")

LOOKS_LIKE = {
    "lora": "it looks like a LoRA: add it in the LoRA list",
    "sd": "it looks like a Stable Diffusion checkpoint",
    "vae": "it looks like a VAE (autoencoder) on its own",
    "text": "it looks like a text encoder on its own",
    "other": "its tensors are not a FLUX.1 transformer's",
}


def tensor_names(path: str | Path) -> list[str]:
    """The tensor names in a safetensors header; ModelNotFoundError (one line) if it has none."""
    path = Path(path)
    try:
        header, _ = read_raw_header(path)
    except FileNotFoundError:
        raise ModelNotFoundError(f"no such model file: {path}") from None
    except OSError as e:
        raise ModelNotFoundError(f"“{path.name}” cannot be read ({e.strerror or e})") from None
    except HeaderError:
        raise ModelNotFoundError(f"“{path.name}” is not a safetensors file") from None
    return [k for k in header if k != "__metadata__"]


def kind_of(names: list[str]) -> str:
    """"flux", "lora", "sd", "vae", "text" or "other" for a file with these tensor names."""
    if any(piece in name for name in names for piece in _LORA):
        return "lora"
    if any(piece in name for name in names for piece in _FLUX):
        return "flux"
    if any(piece in name for name in names for piece in _SD):
        return "sd"
    if any(piece in name for name in names for piece in _VAE):
        return "vae"
    if any(piece in name for name in names for piece in _TEXT):
        return "text"
    return "other"


def check_model_file(path: str | Path) -> None:
    """Raise ModelNotFoundError, in one line, unless `path` holds a FLUX.1 transformer."""
    path = Path(path)
    kind = kind_of(tensor_names(path))
    if kind != "flux":
        raise ModelNotFoundError(f"“{path.name}” is not a FLUX.1 model ({LOOKS_LIKE[kind]})")
