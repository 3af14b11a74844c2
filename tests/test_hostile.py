"""Hostile inputs: corrupt model folders, absurd arguments, hostile PNGs, concurrent writers and threads.

Every failure must be one line (CLI: non-zero exit, no traceback) or a `FluxError` (API), within
seconds, with nothing written and nothing replaced. Model corruptions start from a copy of the
tiny schnell folder with exactly one thing broken.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from mlx_flux.errors import FluxError

# --- corrupt model folders ---------------------------------------------------------------------


def model_copy(tiny_schnell: Path, tmp_path: Path) -> Path:
    """The tiny schnell folder (diffusers layout only), copied to be broken."""
    dst = tmp_path / "model"
    shutil.copytree(tiny_schnell, dst, ignore=shutil.ignore_patterns("flux1-*", "ae.safetensors"))
    return dst


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    result = change(data)
    path.write_text(json.dumps(data if result is None else result))


def first_shard(folder: Path) -> Path:
    return sorted(folder.glob("*.safetensors"))[0]


def rewrite_header(path: Path, change) -> None:
    """Replace the JSON header of a safetensors file (the tensor bytes stay as they are)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    result = change(header)
    new = json.dumps(header if result is None else result).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


def load_all(folder: Path):
    from mlx_flux.pipeline import FluxPipeline

    return FluxPipeline.from_pretrained(folder, dtype="float32")


def _set(key, value):
    def change(d):
        d[key] = value
    return change


CORRUPTIONS = {
    # 10: configs that promise more (or other) than the tensors hold, refused before building
    "transformer num_layers 10**9": ("transformer/config.json", _set("num_layers", 10**9), "num_layers"),
    "transformer num_layers 3 (holds 2)": ("transformer/config.json", _set("num_layers", 3), "double_blocks"),
    "transformer num_layers 1e9": ("transformer/config.json", _set("num_layers", 1e9), "num_layers"),
    "T5 num_layers 1000 (holds 2)": ("text_encoder_2/config.json", _set("num_layers", 1000), "encoder.block"),
    "CLIP hidden_size other than its tensors": ("text_encoder/config.json", _set("hidden_size", 48),
                                                "token_embedding"),
    "VAE block_out_channels other than its tensors": ("vae/config.json", _set("block_out_channels", [32, 32, 64, 128]),
                                                      "conv_in"),
    # 12: malformed files
    "zero heads": ("transformer/config.json", _set("num_attention_heads", 0), "num_attention_heads"),
    "config is a list": ("text_encoder/config.json", lambda d: [d], "not a JSON object"),
    "string number": ("text_encoder_2/config.json", _set("d_model", "32"), "d_model"),
    "null required number": ("text_encoder/config.json", _set("hidden_size", None), "hidden_size"),
    "VAE norm_num_groups 0": ("vae/config.json", _set("norm_num_groups", 0), "norm_num_groups"),
    "index is a list": ("transformer/diffusion_pytorch_model.safetensors.index.json", lambda d: [d], "index"),
    "weight_map is a list": ("transformer/diffusion_pytorch_model.safetensors.index.json",
                             lambda d: {**d, "weight_map": list(d["weight_map"])}, "weight_map"),
    "scheduler base == max seq len": ("scheduler/scheduler_config.json",
                                      lambda d: {**d, "use_dynamic_shifting": True, "max_image_seq_len": 256},
                                      "must differ"),
    # 15: non-finite or absurd scheduler values, refused up front
    "scheduler max_shift 1e6": ("scheduler/scheduler_config.json", _set("max_shift", 1e6), "max_shift"),
    "scheduler shift NaN": ("scheduler/scheduler_config.json", _set("shift", float("nan")), "shift"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_config_is_one_line_naming_the_file(tiny_schnell, tmp_path, case):
    rel, change, fragment = CORRUPTIONS[case]
    model = model_copy(tiny_schnell, tmp_path)
    edit_json(model / rel, change)
    with pytest.raises(FluxError) as e:
        load_all(model)
    message = str(e.value)
    assert "\n" not in message and fragment in message, message
    assert str(model / Path(rel).parts[0]) in message, message  # names the file (or its folder)


def test_non_utf8_json_is_one_line(tiny_schnell, tmp_path):
    model = model_copy(tiny_schnell, tmp_path)
    (model / "text_encoder_2" / "config.json").write_bytes(b'{"d_model": "\xff\xfe"}')
    with pytest.raises(FluxError, match="not UTF-8.*text_encoder_2"):
        load_all(model)


def test_deeply_nested_config_is_one_line(tiny_schnell, tmp_path):
    model = model_copy(tiny_schnell, tmp_path)
    (model / "vae" / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(FluxError, match="vae"):
        load_all(model)


@pytest.mark.parametrize("change, fragment", [
    (lambda h: [h], "not a JSON object"),
    (lambda h: {k: {kk: vv for kk, vv in v.items() if kk != "data_offsets"} if k != "__metadata__" else v
                for k, v in h.items()}, "bad entry"),
    (lambda h: {k: {**v, "shape": [10**9, 10**9]} if k != "__metadata__" else v for k, v in h.items()}, "bad entry"),
], ids=["header is a list", "no data_offsets", "shape beyond its bytes"])
def test_corrupt_safetensors_header_is_one_line(tiny_schnell, tmp_path, change, fragment):
    model = model_copy(tiny_schnell, tmp_path)
    shard = first_shard(model / "transformer")
    rewrite_header(shard, change)
    with pytest.raises(FluxError, match=fragment) as e:
        load_all(model)
    assert shard.name in str(e.value)


def test_integer_dtype_in_a_float_tensor_is_refused(tiny_schnell, tmp_path):
    """16: a header edited from F32 to I32 (same size, so the file still looks complete)."""
    from mlx_flux.transformer import load_transformer

    model = model_copy(tiny_schnell, tmp_path)
    shard = first_shard(model / "transformer")
    edited = []

    def to_int(header):
        name = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
        header[name]["dtype"] = "I32"
        edited.append(name)

    rewrite_header(shard, to_int)
    with pytest.raises(FluxError, match="int32.*floating-point"):
        load_transformer(model / "transformer", dtype="float32")


@pytest.fixture(scope="module")
def tiny_quantized(tiny_schnell, tmp_path_factory) -> Path:
    from mlx_flux.quantized_writer import quantize_to_folder

    return quantize_to_folder(tiny_schnell, 8, tmp_path_factory.mktemp("q") / "q8", dtype="float32")


def _manifest_drop(component: str, key: str):
    def change(m):
        if key == "bits":
            del m["quantization"]["bits"]
        elif key == "group bits":
            del m["components"][component]["quantized"][0]["bits"]
        else:
            del m["components"][component][key]
    return change


@pytest.mark.parametrize("change, fragment", [
    (_manifest_drop("transformer", "file"), "file"),
    (_manifest_drop("transformer", "bits"), "bits"),
    (_manifest_drop("transformer", "group bits"), "bits"),
    (lambda m: m["components"]["transformer"]["config"].update(depth=10**9), "depth"),
    (lambda m: m["components"]["transformer"]["config"].update(depth=3), "double_blocks"),
    (lambda m: m["components"]["transformer"]["config"].update(depth=1e9), "depth"),
    (lambda m: m["components"]["transformer"]["config"].update(num_heads=0), "num_heads"),
], ids=["no file", "no bits", "group without bits", "depth 10**9", "depth 3 (holds 2)", "depth 1e9",
        "zero heads"])
def test_corrupt_manifest_is_one_line(tiny_quantized, tmp_path, change, fragment):
    folder = tmp_path / "q"
    shutil.copytree(tiny_quantized, folder)
    edit_json(folder / "mlx-flux.json", change)
    with pytest.raises(FluxError, match=fragment) as e:
        load_all(folder)
    assert "\n" not in str(e.value) and str(folder) in str(e.value)
