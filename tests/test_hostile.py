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


# --- the command line: absurd arguments, outputs, hostile PNGs -----------------------------------------

def cli(capsys, *args):
    """`mlx-flux ARGS` in this process: (exit status, stdout, stderr)."""
    from mlx_flux.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_failure(rc, err, *fragments):
    assert rc != 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("mlx-flux: error")]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    for f in fragments:
        assert f in lines[0], lines[0]


GEN = ("generate", "--prompt", "x", "--width", 32, "--height", 32, "--steps", 1, "--quiet")


@pytest.mark.parametrize("args, fragment", [
    (("--count", 4294967296), "--count must be from 1 to 10000"),
    (("--count", 0), "--count must be from 1 to 10000"),
    (("--seed", 2**64), "seed must be an integer from 0 to 2**64-1"),
    (("--seed", -1), "seed must be an integer from 0 to 2**64-1"),
    (("--seeds", f"1,{2**64}"), "seed must be an integer"),
    (("--seeds", "5,5"), "5 more than once"),
    (("--steps", 10**9), "steps must be at most 1000"),
    (("--guidance", "nan"), "guidance must be a finite number"),
    (("--guidance", "inf"), "guidance must be a finite number"),
    (("--prompt", "bad \udcff surrogate"), "prompt is not valid Unicode"),
    (("-o", "{seed:>999999999}.png"), "only contain the placeholder {seed}"),
    (("-o", "{seed.__class__}.png"), "only contain the placeholder {seed}"),
    (("-o", "{seed!r}.png"), "only contain the placeholder {seed}"),
    (("-o", "{0}.png"), "only contain the placeholder {seed}"),
], ids=lambda v: str(v)[:30])
def test_absurd_arguments_fail_before_loading(capsys, tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(capsys, *GEN, "--model", tmp_path / "no-such-model", *args)  # never reached
    assert_one_line_failure(rc, err, fragment)
    assert list(tmp_path.iterdir()) == []


def test_api_seeds_and_steps_are_checked_before_work(pipe):
    from mlx_flux.request import InputError

    for seed in (1.5, "3", 2**64, -1, True):
        with pytest.raises(InputError, match="seed"):
            pipe.generate("x", width=32, height=32, steps=1, seed=seed)
    with pytest.raises(InputError, match="steps must be at most 1000"):
        pipe.generate("x", width=32, height=32, steps=10**9, seed=1)
    with pytest.raises(InputError, match="prompt is not valid Unicode"):
        pipe.generate("\ud800", width=32, height=32, steps=1, seed=1)


def test_an_output_that_appears_while_generating_is_not_replaced(tiny_schnell, tmp_path, capsys, monkeypatch):
    """1: a second writer (another run) creates the file after our check; it stays as it is."""
    from mlx_flux.pipeline import FluxPipeline

    out = tmp_path / "same.png"
    real = FluxPipeline._decode

    def other_writer_first(self, final):
        out.write_bytes(b"the other run's image")
        return real(self, final)

    monkeypatch.setattr(FluxPipeline, "_decode", other_writer_first)
    rc, _, err = cli(capsys, *GEN, "--model", tiny_schnell, "--seed", 1, "-o", out)
    assert_one_line_failure(rc, err, f"{out} exists; pass --overwrite to replace it")
    assert out.read_bytes() == b"the other run's image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.png"]  # no temporary file left


def test_save_png_creates_exclusively_and_names_the_users_path(tmp_path):
    """1 and 18."""
    from PIL import Image

    from mlx_flux.metadata import save_png

    image, out = Image.new("RGB", (8, 8)), tmp_path / "out.png"
    save_png(image, out, {"prompt": "first"}, overwrite=False)
    with pytest.raises(FileExistsError) as e:
        save_png(image, out, {"prompt": "second"}, overwrite=False)
    assert e.value.filename == str(out)
    folder = tmp_path / "adir.png"
    folder.mkdir()
    with pytest.raises(OSError) as e:
        save_png(image, folder, {"prompt": "x"})
    assert e.value.filename == str(folder) and ".part" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.png", "out.png"]


def test_output_that_is_a_folder_is_named_as_given(tiny_schnell, tmp_path, capsys, monkeypatch):
    """18: never the hidden temporary file's name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir.png").mkdir()
    rc, _, err = cli(capsys, *GEN, "--model", tiny_schnell, "--seed", 1, "-o", "adir.png", "--overwrite")
    assert_one_line_failure(rc, err, "adir.png")
    assert ".part" not in err


def test_stale_temporary_files_are_cleaned_and_nothing_else(tmp_path):
    """6: a save killed mid-write leaves `.<name>.XXXX.part`; the next save removes it when stale."""
    import os
    import time

    from PIL import Image

    from mlx_flux.metadata import save_png

    old = time.time() - 3600
    names = {"stale": ".out.png.abc123.part", "fresh": ".out.png.def456.part", "other": ".other.png.abc.part",
             "mine": "out.png.part", "dot": ".out.png.notes"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (old, old))
    os.utime(tmp_path / names["fresh"], None)
    save_png(Image.new("RGB", (8, 8)), tmp_path / "out.png", {"prompt": "x"})
    left = {p.name for p in tmp_path.iterdir()}
    assert names["stale"] not in left
    assert left == {"out.png", *names.values()} - {names["stale"]}


def test_quantize_on_a_full_disk_is_one_line_and_cleans_up(tiny_schnell, tmp_path, capsys, monkeypatch):
    """14 and 6: a killed run's stale partial folder goes, this run's goes, the error names the output."""
    import os
    import time

    import mlx.core as mx

    from mlx_flux import quantized_writer

    stale, unrelated = tmp_path / ".q4.partial-abcd1234", tmp_path / ".q4.backup"
    for d in (stale, unrelated):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"half")
        old = time.time() - 3600
        os.utime(d, (old, old))

    def full_disk(path, *args, **kwargs):
        raise RuntimeError(f"[save_safetensors] Failed to write {path}: No space left on device")

    monkeypatch.setattr(mx, "save_safetensors", full_disk)
    rc, _, err = cli(capsys, "quantize", tiny_schnell, "--bits", 4, "--output", tmp_path / "q4")
    assert_one_line_failure(rc, err, f"cannot write {tmp_path / 'q4'}", "No space left on device")
    assert ".partial" not in err.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".q4.backup"]
    assert quantized_writer  # the module that writes


def test_quantize_auto_and_force_flags_reach_the_engine(tiny_schnell, tmp_path, capsys, monkeypatch):
    """15a from the CLI: refused with the precision that fits, before anything is loaded."""
    from mlx_flux import memory

    full, eight = _sizes(tiny_schnell, None), _sizes(tiny_schnell, 8)
    monkeypatch.setattr(memory, "machine_memory", lambda: (full + eight) // 2)
    out = tmp_path / "o.png"
    rc, _, err = cli(capsys, *GEN, "--model", tiny_schnell, "--seed", 1, "-o", out)
    assert_one_line_failure(rc, err, "--quantize 8", "--force")
    assert not out.exists()
    rc, stdout, err = cli(capsys, *GEN, "--model", tiny_schnell, "--seed", 1, "-o", out, "--quantize", "auto")
    assert rc == 0 and out.exists(), err


# --- hostile PNGs for `mlx-flux info` ---------------------------------------------------------------

def png_chunk(kind: bytes, data: bytes) -> bytes:
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def hostile_png(path: Path, width: int = 1, height: int = 1, **text: str) -> Path:
    """A PNG claiming width x height with tEXt/iTXt chunks, pixels or not (info never decodes them)."""
    import zlib

    chunks = [png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    for key, value in text.items():
        key = key.replace("_", "-")
        chunks.append(png_chunk(b"iTXt", key.encode() + b"\0\0\0\0\0" + value.encode("utf-8", "surrogatepass")))
    if width * height < 10**6:
        raw = b"".join(b"\0" + b"\0" * 3 * width for _ in range(height))
        chunks.append(png_chunk(b"IDAT", zlib.compress(raw)))
    chunks.append(png_chunk(b"IEND", b""))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(chunks))
    return path


def test_info_escapes_control_characters(tmp_path, capsys):
    """4: OSC 52 clipboard writes, screen clears and bidi overrides are shown, not obeyed."""
    prompt = "a cat\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b[H\u202eevil\nsecond line"
    meta = json.dumps({"prompt": prompt, "seed": 1, "\x1b[31mkey": "v\x9b"})
    png = hostile_png(tmp_path / "x.png", mlx_flux=meta)
    rc, out, err = cli(capsys, "info", png)
    assert rc == 0, err
    assert not any(c in out for c in "\x1b\x07\x9b\u202e")
    assert "\\x1b]52;c;ZXZpbA==\\x07" in out and "\\u202eevil\nsecond line" in out and "\\x1b[31mkey" in out


@pytest.mark.parametrize("kind", ["bomb", "deep json", "huge integer", "huge value"])
def test_info_on_hostile_pngs_is_quick_and_clean(tmp_path, capsys, kind):
    """13: a decompression-bomb header, JSON nested 200k deep, an integer of 10k digits."""
    if kind == "bomb":
        png = hostile_png(tmp_path / "x.png", 100_000, 100_000, parameters="p\nSteps: 4, Seed: 1")
    elif kind == "deep json":
        png = hostile_png(tmp_path / "x.png", mlx_flux="[" * 200_000 + "]" * 200_000,
                          parameters="p\nSteps: 4, Seed: 1")
    elif kind == "huge integer":
        png = hostile_png(tmp_path / "x.png", mlx_flux='{"prompt": "p", "seed": 1' + "0" * 10_000 + "}")
    else:
        png = hostile_png(tmp_path / "x.png", mlx_flux=json.dumps({"prompt": "p" * 500_000, "seed": 1e308 * 10}))
    rc, out, err = cli(capsys, "info", png)
    assert "Traceback" not in err
    if rc:
        assert_one_line_failure(rc, err)
    else:
        assert "p" in out


def test_info_into_a_closed_pipe_exits_quietly(tmp_path):
    """13: `mlx-flux info x.png | head -1` printed 'Broken pipe' and exited 1."""
    import subprocess
    import sys

    png = hostile_png(tmp_path / "x.png", mlx_flux=json.dumps({"prompt": "line\n" * 100_000, "seed": 1}))
    script = Path(sys.executable).parent / "mlx-flux"
    proc = subprocess.Popen([str(script), "info", str(png)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == "", err


def test_a_null_shift_in_the_scheduler_config_means_no_shift_given(tmp_path, tiny_schnell):
    """"shift": null is "not given" (as every other config field's null is): the default shift,
    not a TypeError from float(None) when the first image is made."""
    import json
    import shutil

    from mlx_flux.loading import find_files
    from mlx_flux.sampler import config_schedule

    model = tmp_path / "model"
    shutil.copytree(tiny_schnell, model)
    path = model / "scheduler" / "scheduler_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(shift=None, use_dynamic_shifting=False)
    path.write_text(json.dumps(cfg))
    schedule = config_schedule(find_files(model).scheduler, 4, 256)
    assert schedule == config_schedule({"use_dynamic_shifting": False}, 4, 256)
