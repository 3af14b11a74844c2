"""The `mlx-flux` console script, run as a user runs it, including every bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlx_flux.metadata import read_metadata

SCRIPT = Path(sys.executable).parent / "mlx-flux"


def run(*args, cwd=None, env=None):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env,
                          timeout=300)


def assert_clean_failure(proc, *fragments):
    """Non-zero exit, no traceback, and the error is one line (progress lines may precede it)."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mlx-flux: error")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    for f in fragments:
        assert f in errors[0], errors[0]


def test_console_script_is_installed():
    assert SCRIPT.exists()
    proc = run("--version")
    assert proc.returncode == 0 and "mlx-flux" in proc.stdout


def test_generate_writes_a_png_with_metadata(tiny_schnell, tmp_path):
    out = tmp_path / "out.png"
    proc = run("generate", "--model", tiny_schnell, "--prompt", "a red fox", "--width", 64, "--height", 48,
               "--steps", 2, "--seed", 42, "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert "step 2/2" in proc.stderr
    with Image.open(out) as im:
        assert im.size == (64, 48)
    meta = read_metadata(out)
    assert meta["prompt"] == "a red fox" and meta["seed"] == 42 and meta["steps"] == 2
    info = run("info", out)
    assert info.returncode == 0 and "a red fox" in info.stdout and "42" in info.stdout


def test_several_seeds_and_default_names(tiny_schnell, tmp_path):
    proc = run("generate", "--model", tiny_schnell, "--prompt", "x", "--width", 32, "--height", 32,
               "--steps", 1, "--seeds", "1,2,3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flux-1.png", "flux-2.png", "flux-3.png"]
    assert [read_metadata(tmp_path / f"flux-{s}.png")["seed"] for s in (1, 2, 3)] == [1, 2, 3]


def test_long_prompt_warns(tiny_schnell, tmp_path):
    proc = run("generate", "--model", tiny_schnell, "--prompt", "word " * 120, "--width", 32, "--height", 32,
               "--steps", 1, "--seed", 1, "--output", tmp_path / "x.png", "--quiet")
    assert proc.returncode == 0 and "warning" in proc.stderr and "cut off" in proc.stderr


def test_existing_output_is_never_replaced_silently(tiny_schnell, tmp_path):
    out = tmp_path / "mine.png"
    out.write_bytes(b"precious")
    proc = run("generate", "--model", tiny_schnell, "--prompt", "x", "--width", 32, "--height", 32,
               "--output", out)
    assert_clean_failure(proc, "exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    proc = run("generate", "--model", tiny_schnell, "--prompt", "x", "--width", 32, "--height", 32,
               "--steps", 1, "--output", out, "--overwrite", "--quiet")
    assert proc.returncode == 0 and read_metadata(out)["prompt"] == "x"


def _corrupt_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    shard = sorted((dst / "transformer").glob("*.safetensors"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    return shard


@pytest.mark.parametrize("case", ["size", "steps", "missing", "incomplete", "corrupt", "unknown-repo", "not-a-dir",
                                  "bad-seeds", "no-seed-placeholder", "not-png", "wrong-tensor"])
def test_bad_input_gives_one_line_and_no_file(case, tiny_schnell, tmp_path):
    model, extra, expect = tiny_schnell, [], []
    out = tmp_path / "out.png"
    if case == "size":
        extra, expect = ["--width", 100], ["--width must be a positive multiple of 16"]
    elif case == "steps":
        extra, expect = ["--steps", 0], ["--steps"]
    elif case == "missing":
        model, expect = tmp_path / "no-model", ["no such model"]
    elif case == "incomplete":
        model = tmp_path / "incomplete"
        shutil.copytree(tiny_schnell, model, ignore=shutil.ignore_patterns("text_encoder"))
        expect = ["incomplete model folder", "text_encoder/"]
    elif case == "corrupt":
        shard = _corrupt_copy(tiny_schnell, tmp_path / "corrupt")
        model, expect = tmp_path / "corrupt", ["corrupt", shard.name]
    elif case == "unknown-repo":
        model, expect = "nobody-here/no-such-flux", ["nobody-here/no-such-flux"]
    elif case == "not-a-dir":
        out, expect = tmp_path / "missing-dir" / "out.png", ["does not exist"]
    elif case == "bad-seeds":
        extra, expect = ["--seeds", "1,two"], ["--seeds"]
    elif case == "no-seed-placeholder":
        extra, expect = ["--seeds", "1,2"], ["{seed}"]
    elif case == "not-png":
        out, expect = tmp_path / "out.jpg", [".png"]
    elif case == "wrong-tensor":
        from safetensors.numpy import load_file, save_file

        model = tmp_path / "wrong"
        shutil.copytree(tiny_schnell, model)
        vae = model / "vae" / "diffusion_pytorch_model.safetensors"
        weights = load_file(vae)
        weights["decoder.conv_in.weight"] = weights["decoder.conv_in.weight"][:, :8]
        save_file(weights, vae)
        expect = ["decoder.conv_in"]
    proc = run("generate", "--model", model, "--prompt", "x", "--width", 32, "--height", 32, "--steps", 1,
               "--output", out, *extra)
    assert_clean_failure(proc, *expect)
    assert not out.exists()
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))


def test_info_errors(tmp_path):
    assert_clean_failure(run("info", tmp_path / "none.png"), "no such file")
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    assert_clean_failure(run("info", plain), "no generation parameters")


def test_download_offline_and_bad_ids(tmp_path):
    proc = run("download", "acme/not-cached", env={"HF_HUB_CACHE": str(tmp_path)})
    assert_clean_failure(proc, "acme/not-cached", "HF_HUB_OFFLINE")
    assert_clean_failure(run("download", "not a repo"), "not a hub repo id")


def test_gated_repo_without_token(monkeypatch, capsys, tmp_path):
    """Through the CLI's own entry point, with the hub answering 'gated'."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    from mlx_flux import cli

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    def gated(repo_id, **kwargs):
        if kwargs.get("local_files_only"):
            raise errors.LocalEntryNotFoundError("not cached")
        e = errors.GatedRepoError.__new__(errors.GatedRepoError)
        Exception.__init__(e, "401 Client Error: access to model is restricted")
        raise e

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    code = cli.main(["generate", "--model", "dev", "--prompt", "x", "--width", "32", "--height", "32",
                     "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "gated" in err[0] and "HF_TOKEN" in err[0] and "FLUX.1-dev" in err[0]


# --- LoRAs -------------------------------------------------------------------------------------

def _lora(tmp_path, name="style.safetensors", seed=1):
    import lora_files

    dims = lora_files.Dims(hidden=32, mlp_ratio=4, in_channels=64, context=32, vec=24, depth=2, depth_single=2,
                           clip_hidden=24, clip_layers=2, clip_mlp=48)
    desc = lora_files.random_description(dims, seed=seed, clip=False,
                                         targets=list(lora_files.flux_targets(dims, guidance=False)))
    return lora_files.write_kohya(tmp_path / name, dims, desc)


def test_generate_with_loras_records_them_and_info_shows_them(tiny_schnell, tmp_path):
    from mlx_flux.metadata import read_request

    style = _lora(tmp_path)
    other = _lora(tmp_path, "other.safetensors", seed=2)
    common = ["generate", "--model", tiny_schnell, "--prompt", "a red fox", "--width", 32, "--height", 32,
              "--steps", 1, "--seed", 3]
    plain = run(*common, "--output", tmp_path / "plain.png")
    styled = run(*common, "--lora", style, "--lora", other, "-0.5", "--output", tmp_path / "styled.png")
    assert plain.returncode == 0 and styled.returncode == 0, styled.stderr
    request = read_request(tmp_path / "styled.png")
    assert [(r.name, r.scale) for r in request.loras] == [("style.safetensors", 1.0), ("other.safetensors", -0.5)]
    assert read_request(tmp_path / "plain.png").loras == ()
    with Image.open(tmp_path / "plain.png") as a, Image.open(tmp_path / "styled.png") as b:
        assert a.tobytes() != b.tobytes()
    info = run("info", tmp_path / "styled.png")
    assert "style.safetensors (" in info.stdout and "x -0.5" in info.stdout
    assert str(tmp_path) not in info.stdout  # a name and a hash, never the user's path


@pytest.mark.parametrize("lora_args, fragments", [
    (["{missing}"], ["no such file", "nope.safetensors"]),
    (["{style}", "strong"], ["--lora", "scale must be a number", "'strong'"]),
    (["{style}", "nan"], ["scale must be a finite number"]),
    (["{style}", "1", "2"], ["--lora takes a path and at most one scale"]),
    (["{sdxl}"], ["SDXL"]),
])
def test_bad_loras_are_one_line_errors(tiny_schnell, tmp_path, lora_args, fragments):
    import lora_files
    import numpy as np

    names = {"missing": tmp_path / "nope.safetensors", "style": _lora(tmp_path),
             "sdxl": lora_files.write_raw(tmp_path / "sdxl.safetensors", {
                 "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": np.zeros((4, 8), np.float32),
                 "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": np.zeros((8, 4), np.float32)})}
    out = tmp_path / "never.png"
    proc = run("generate", "--model", tiny_schnell, "--prompt", "x", "--width", 32, "--height", 32, "--steps", 1,
               "--output", out, "--lora", *[a.format(**names) for a in lora_args])
    assert_clean_failure(proc, *fragments)
    assert not out.exists()


def test_quantize_bakes_loras_in_and_lists_them(tiny_schnell, tmp_path):
    import json

    style = _lora(tmp_path)
    out = tmp_path / "q8-style"
    proc = run("quantize", tiny_schnell, "--bits", 8, "--output", out, "--lora", style, 0.7)
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads((out / "mlx-flux.json").read_text())["loras"]
    assert entry["name"] == "style.safetensors" and entry["scale"] == 0.7 and entry["format"] == "kohya"
    common = ["--prompt", "a red fox", "--width", 32, "--height", 32, "--steps", 1, "--seed", 3]
    baked = run("generate", "--model", out, *common, "--output", tmp_path / "baked.png")
    applied = run("generate", "--model", tiny_schnell, "--quantize", 8, *common, "--lora", style, 0.7,
                  "--output", tmp_path / "applied.png")
    plain = run("generate", "--model", tiny_schnell, "--quantize", 8, *common, "--output", tmp_path / "plain.png")
    assert baked.returncode == applied.returncode == plain.returncode == 0, baked.stderr + applied.stderr
    with Image.open(tmp_path / "baked.png") as b, Image.open(tmp_path / "applied.png") as a, \
            Image.open(tmp_path / "plain.png") as p:
        baked_px, applied_px, plain_px = (np.asarray(im, np.int16) for im in (b, a, p))
    # merged before quantizing vs a float side path on the quantized base: close, and both away from the base
    assert np.abs(baked_px - applied_px).mean() < np.abs(baked_px - plain_px).mean() / 3


# --- input images --------------------------------------------------------------------------------

def _picture(path, size=(64, 48)):
    Image.effect_mandelbrot(size, (-2, -1.2, 1, 1.2), 60).convert("RGB").save(path)
    return path


def test_img2img_from_the_command_line(tiny_schnell, tmp_path):
    from mlx_flux.metadata import read_request

    src = _picture(tmp_path / "in.png", (70, 50))
    out = tmp_path / "out.png"
    proc = run("generate", "--model", tiny_schnell, "--prompt", "a red fox", "--image", src, "--strength", 0.5,
               "--steps", 4, "--seed", 2, "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert "step 2/2" in proc.stderr  # strength 0.5 of 4 steps
    request = read_request(out)
    assert (request.mode, request.strength, request.width, request.height) == ("img2img", 0.5, 64, 48)
    assert str(tmp_path) not in (run("info", out).stdout)  # the input is named by its hash, not its path


def test_kontext_edits_from_the_command_line(tiny_kontext, tmp_path):
    from mlx_flux.metadata import read_request

    src = _picture(tmp_path / "in.png", (48, 32))
    out = tmp_path / "edit.png"
    proc = run("generate", "--model", tiny_kontext, "--prompt", "make it night", "--image", src, "--width", 48,
               "--height", 32, "--steps", 2, "--seed", 2, "--output", out)
    assert proc.returncode == 0, proc.stderr
    request = read_request(out)
    assert (request.mode, request.guidance, request.image.width, request.image.height) == ("edit", 2.5, 48, 32)


@pytest.mark.parametrize("extra, fragments", [
    (["--image", "{missing}"], ["no such image file", "missing.png"]),
    (["--image", "{junk}"], ["cannot read junk.png as an image"]),
    (["--image", "{good}", "--strength", 0], ["strength must be more than 0 and at most 1, not 0"]),
    (["--image", "{good}", "--strength", 1.5], ["strength must be more than 0 and at most 1"]),
    (["--strength", 0.5], ["--strength is for img2img: give an --image too"]),
])
def test_bad_input_images_are_one_line_errors(tiny_schnell, tmp_path, extra, fragments):
    (tmp_path / "junk.png").write_bytes(b"\x89PNG not really")
    names = {"missing": tmp_path / "missing.png", "junk": tmp_path / "junk.png",
             "good": _picture(tmp_path / "good.png")}
    out = tmp_path / "never.png"
    proc = run("generate", "--model", tiny_schnell, "--prompt", "x", "--steps", 1, "--output", out,
               *[a.format(**names) if isinstance(a, str) else a for a in extra])
    assert_clean_failure(proc, *fragments)
    assert not out.exists()


def test_kontext_refuses_a_strength(tiny_kontext, tmp_path):
    proc = run("generate", "--model", tiny_kontext, "--prompt", "x", "--image", _picture(tmp_path / "in.png"),
               "--strength", 0.5, "--steps", 1, "--output", tmp_path / "never.png")
    assert_clean_failure(proc, "edits its input image: it takes no strength")
