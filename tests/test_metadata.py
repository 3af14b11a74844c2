"""PNG metadata: written atomically, readable by us and in the common `parameters` form."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from mlx_flux.metadata import format_metadata, parameters_text, parse_parameters, read_metadata, save_png

META = {"prompt": "a red fox, snow\nsecond line", "seed": 1234567890123, "steps": 28, "guidance": 3.5,
        "width": 1360, "height": 768, "model": "black-forest-labs/FLUX.1-dev", "version": "0.1.0"}


def test_round_trip(tmp_path):
    path = save_png(Image.new("RGB", (32, 16), (10, 20, 30)), tmp_path / "a.png", META)
    assert read_metadata(path) == META
    with Image.open(path) as im:
        assert im.size == (32, 16) and im.mode == "RGB"
        assert im.text["parameters"].startswith("a red fox, snow\nsecond line\nSteps: 28, Sampler:")


def test_saved_file_has_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_png(Image.new("RGB", (4, 4)), tmp_path / "p.png", META)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_parameters_text_is_parsed_back():
    meta = parse_parameters(parameters_text(META))
    assert meta == META


def test_schnell_without_guidance():
    meta = dict(META, guidance=None)
    assert "Guidance" not in parameters_text(meta)
    parsed = parse_parameters(parameters_text(meta))
    assert "guidance" not in parsed and parsed["steps"] == 28


def test_other_tools_parameters_are_understood(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x768, Model: sd")
    path = tmp_path / "other.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    assert read_metadata(path) == {"prompt": "cat", "steps": 20, "seed": 5, "width": 512, "height": 768,
                                   "model": "sd"}


def test_images_without_metadata_and_non_images(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    assert read_metadata(plain) is None
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    assert read_metadata(junk) is None
    assert read_metadata(tmp_path / "missing.png") is None


def test_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path, monkeypatch):
    path = save_png(Image.new("RGB", (4, 4)), tmp_path / "keep.png", META)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError):
        save_png(Image.new("RGB", (4, 4)), path, dict(META, seed=1))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.png"]


def test_format_lists_known_fields_first():
    text = format_metadata(META)
    assert text.splitlines()[0].startswith("prompt")
    assert "seed" in text and "1234567890123" in text
