"""The typed generation request: checks, and the metadata schema it is written in and read from."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from mlx_flux import __version__
from mlx_flux.metadata import read_request, save_png
from mlx_flux.request import SCHEMA_VERSION, GenerationRequest, ImageRef, InputError

FULL = GenerationRequest("a fox\nin snow", width=1360, height=768, steps=28, guidance=3.5, seed=2**63 + 5,
                         model="black-forest-labs/FLUX.1-dev", quantize=8)


def test_metadata_round_trip_through_a_png(tmp_path):
    meta = FULL.to_metadata()
    assert meta["schema"] == SCHEMA_VERSION and meta["version"] == __version__
    assert GenerationRequest.from_metadata(meta) == FULL
    path = save_png(Image.new("RGB", (8, 8)), tmp_path / "a.png", meta)
    assert read_request(path) == FULL


def test_images_from_before_the_schema_still_restore(tmp_path):
    """PNGs written before requests were versioned: the same keys, no `schema`, no `quantize`."""
    old = {"prompt": "cat", "seed": 5, "steps": 4, "guidance": None, "width": 512, "height": 768,
           "model": "black-forest-labs/FLUX.1-schnell", "version": "0.1.0"}
    info = PngImagePlugin.PngInfo()
    info.add_text("mlx-flux", json.dumps(old))
    path = tmp_path / "old.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    assert read_request(path) == GenerationRequest("cat", width=512, height=768, steps=4, seed=5,
                                                   model="black-forest-labs/FLUX.1-schnell")


def test_other_tools_parameters_give_a_request(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x768, Model: sd")
    path = tmp_path / "other.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    assert read_request(path) == GenerationRequest("cat", width=512, height=768, steps=20, seed=5, model="sd")


def test_precision_survives_the_parameters_text(tmp_path):
    from mlx_flux.metadata import parameters_text, parse_parameters

    assert "Quantize: 8-bit" in parameters_text(FULL.to_metadata())
    assert GenerationRequest.from_metadata(parse_parameters(parameters_text(FULL.to_metadata()))) == FULL


@pytest.mark.parametrize("field, value", [
    ("steps", "many"), ("steps", -3), ("steps", True), ("seed", 1.5), ("width", None),
    ("guidance", float("nan")), ("guidance", "inf"), ("guidance", [1]), ("model", 7), ("quantize", {}),
])
def test_unusable_fields_are_dropped_not_trusted(field, value):
    meta = dict(FULL.to_metadata(), **{field: value})
    got = GenerationRequest.from_metadata(meta)
    assert getattr(got, field) == getattr(GenerationRequest("x"), field)
    assert got.with_(**{field: getattr(FULL, field)}) == FULL  # everything else kept


def test_unknown_keys_of_a_newer_writer_are_ignored():
    meta = dict(FULL.to_metadata(), schema=SCHEMA_VERSION + 1, lora_stack=[{"name": "x"}])
    assert GenerationRequest.from_metadata(meta) == FULL


@pytest.mark.parametrize("meta", [{}, {"prompt": 3}, [1, 2], "text"])
def test_metadata_without_a_prompt_is_refused(meta):
    with pytest.raises(InputError):
        GenerationRequest.from_metadata(meta)


@pytest.mark.parametrize("changes, message", [
    (dict(width=100), "width must be a positive multiple of 16, not 100"),
    (dict(height=0), "height must be a positive multiple of 16"),
    (dict(width=64.0), "width must be a positive multiple of 16"),
    (dict(steps=0), "steps must be at least 1, not 0"),
    (dict(guidance=float("inf")), "guidance must be a finite number"),
    (dict(seed=-1), "seed must be an integer from 0 to 2\\*\\*64-1"),
    (dict(seed=2**64), "seed must be an integer"),
    (dict(prompt=None), "prompt must be text"),
])
def test_check_refuses_what_the_engine_cannot_make(changes, message):
    with pytest.raises(InputError, match=message):
        GenerationRequest("x", width=64, height=64).with_(**changes).check()


def test_check_accepts_numpy_integers_and_the_extremes():
    req = GenerationRequest("x", width=np.int64(64), height=16, steps=np.int32(1), seed=2**64 - 1, guidance=0)
    assert req.check() is req


def test_loras_round_trip_through_json_and_the_parameters_text(tmp_path):
    from mlx_flux.metadata import format_metadata, parameters_text, parse_parameters
    from mlx_flux.request import LoraRef

    req = FULL.with_(loras=(LoraRef("style, v2.safetensors", "abcdef123456", 0.8),
                            LoraRef("b.safetensors", "0123456789ab", -0.5)))
    assert read_request(save_png(Image.new("RGB", (4, 4)), tmp_path / "l.png", req.to_metadata())) == req
    assert GenerationRequest.from_metadata(parse_parameters(parameters_text(req.to_metadata()))) == req
    assert "style, v2.safetensors (abcdef123456) x 0.8; b.safetensors (0123456789ab) x -0.5" in \
        format_metadata(req.to_metadata())
    # entries that are not LoRA references are dropped, the others kept
    meta = dict(req.to_metadata(), loras=[{"name": "x"}, req.to_metadata()["loras"][1], "junk"])
    assert GenerationRequest.from_metadata(meta).loras == req.loras[1:]


@pytest.mark.parametrize("field, value", [
    ("steps", 2**40), ("steps", 0), ("seed", 2**64), ("width", 10**9), ("height", 8), ("guidance", 1e300),
    ("guidance", -1.0), ("strength", 5.0), ("quantize", 64),
])
def test_stored_values_out_of_range_are_dropped(field, value):
    """A PNG is anyone's file: absurd values never reach an engine or a widget (a slider given 2**40
    steps raised OverflowError in the app)."""
    got = GenerationRequest.from_metadata(dict(FULL.to_metadata(), **{field: value}))
    assert getattr(got, field) == getattr(GenerationRequest("x"), field)


def test_a_huge_stored_prompt_is_cut_to_what_can_matter():
    from mlx_flux.request import MAX_PROMPT_CHARS

    got = GenerationRequest.from_metadata({"prompt": "word " * 200_000})
    assert len(got.prompt) == MAX_PROMPT_CHARS


@pytest.mark.parametrize("changes, message", [
    (dict(expand=(16, 0, 8, 0)), "expand must be four multiples of 16"),
    (dict(expand=(0, 0, 0, 0)), "expand adds nothing"),
    (dict(expand=(16, 0, 0, 0), mask=ImageRef("abc", 16, 16)), "a mask .* or expand .*, not both"),
])
def test_fill_inputs_are_checked(changes, message):
    with pytest.raises(InputError, match=message):
        GenerationRequest("x").with_(**changes).check()


def test_fill_inputs_round_trip():
    req = FULL.with_(mask=ImageRef("0123456789ab", 64, 48), mode="inpaint")
    assert GenerationRequest.from_metadata(req.to_metadata()) == req
    out = FULL.with_(expand=(16, 0, 32, 0), mode="outpaint")
    assert GenerationRequest.from_metadata(out.to_metadata()) == out
