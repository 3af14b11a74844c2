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


# --- the pipeline: memory, sizes, non-finite values, threads ----------------------------------------

@pytest.fixture(scope="module")
def pipe(tiny_schnell):
    from mlx_flux.pipeline import FluxPipeline

    return FluxPipeline.from_pretrained(tiny_schnell, dtype="float32")


def test_an_image_larger_than_memory_is_refused_naming_the_largest(pipe, monkeypatch):
    """9: checked in resolve (API, CLI and app), before any work."""
    from mlx_flux import memory
    from mlx_flux.request import InputError

    monkeypatch.setattr(memory, "machine_memory", lambda: 64 * 2**20)
    with pytest.raises(InputError, match=r"100000x100000 image needs .* the largest that fits is about \d+x\d+"):
        pipe.generate("x", width=100_000, height=100_000, steps=1, seed=1)
    assert pipe.generate("x", width=32, height=32, steps=1, seed=1).image.size == (32, 32)


def _sizes(folder, bits):
    import mlx.core as mx

    from mlx_flux import memory
    from mlx_flux.loading import find_files

    return memory.low_memory_need(memory.component_bytes(find_files(folder), mx.float32, bits))


def test_a_model_too_large_for_the_machine_is_refused_before_loading(tiny_schnell, monkeypatch):
    """15a: planned from the headers against a simulated small machine."""
    from mlx_flux import memory
    from mlx_flux.pipeline import FluxPipeline

    full, eight = _sizes(tiny_schnell, None), _sizes(tiny_schnell, 8)
    assert eight < full
    monkeypatch.setattr(memory, "machine_memory", lambda: (full + eight) // 2)
    loaded = []
    monkeypatch.setattr("mlx_flux.pipeline.load_transformer", lambda *a, **k: loaded.append(1))
    with pytest.raises(memory.ModelTooLargeError, match="--quantize 8") as e:
        FluxPipeline.from_pretrained(tiny_schnell, dtype="float32")
    assert "\n" not in str(e.value) and not loaded
    monkeypatch.undo()
    monkeypatch.setattr(memory, "machine_memory", lambda: (full + eight) // 2)
    assert FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", quantize="auto").quantize == 8
    assert FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", force=True).quantize is None
    monkeypatch.setattr(memory, "machine_memory", lambda: 1000)
    with pytest.raises(memory.ModelTooLargeError, match="even 4-bit"):
        FluxPipeline.from_pretrained(tiny_schnell, dtype="float32", quantize="auto")


def test_nan_weights_stop_at_the_first_step(tiny_schnell, tmp_path):
    """15: an all-black image with exit 0 before; now a clear error and no file."""
    import mlx.core as mx

    from mlx_flux.errors import NonFiniteError
    from mlx_flux.pipeline import FluxPipeline

    model = model_copy(tiny_schnell, tmp_path)
    shard = first_shard(model / "transformer")
    tensors = dict(mx.load(str(shard)))
    tensors = {k: mx.full(v.shape, float("nan"), v.dtype) if mx.issubdtype(v.dtype, mx.floating) else v
               for k, v in tensors.items()}
    mx.save_safetensors(str(shard), tensors)
    broken = FluxPipeline.from_pretrained(model, dtype="float32")
    with pytest.raises(NonFiniteError, match="NaN/inf values at step 1: the weights may be corrupt"):
        broken.generate("x", width=32, height=32, steps=2, seed=1)


def test_non_finite_inputs_are_refused(pipe):
    import numpy as np

    from mlx_flux.request import InputError

    latents = np.full((1, 16, 4, 4), np.nan, np.float32)
    with pytest.raises(InputError, match="finite"):
        pipe.generate("x", width=32, height=32, steps=1, seed=1, latents=latents)
    for guidance in (float("nan"), float("inf")):
        with pytest.raises(InputError, match="finite"):
            pipe.generate("x", width=32, height=32, steps=1, guidance=guidance)


def test_overlapping_bounded_evaluations_restore_the_process_limit():
    """7: two generations' save/restore of MLX's process-wide limit, ending in either order."""
    import mlx.core as mx

    from mlx_flux import memory

    before = mx.set_memory_limit(mx.get_memory_limit())
    first, second = memory.eval_headroom(10 * 2**20), memory.eval_headroom(20 * 2**20)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first to start ends first
    second.__exit__(None, None, None)
    assert mx.get_memory_limit() == before


def test_two_threads_generating_on_one_pipeline(pipe, monkeypatch):
    """7: a pipeline serialises its generations; the results equal one-at-a-time runs."""
    import threading
    import time

    import mlx.core as mx
    import numpy as np

    before = mx.set_memory_limit(mx.get_memory_limit())
    expected = {s: np.asarray(pipe.generate("x", width=32, height=32, steps=1, seed=s).image) for s in (1, 2)}
    running, most = [0], [0]
    real = pipe._denoise

    def slow_denoise(*args, **kwargs):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.2)  # long enough for the other thread to arrive
        try:
            return real(*args, **kwargs)
        finally:
            running[0] -= 1

    monkeypatch.setattr(pipe, "_denoise", slow_denoise)
    results, errors = {}, []

    def work(seed):
        try:
            results[seed] = np.asarray(pipe.generate("x", width=32, height=32, steps=1, seed=seed).image)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and most[0] == 1
    assert all(np.array_equal(results[s], expected[s]) for s in (1, 2))
    assert mx.get_memory_limit() == before
