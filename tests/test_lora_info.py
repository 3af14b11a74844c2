"""lora_info: a LoRA file's name, trigger words, base model and fingerprint from its header alone."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

import lora_files
from mlx_flux.lora_info import LoraError, LoraInfo, lora_info, read_metadata

TENSORS = {"lora_unet_img_in.lora_down.weight": np.zeros((2, 4), np.float32),
           "lora_unet_img_in.lora_up.weight": np.zeros((4, 2), np.float32)}


def test_kohya_metadata(tmp_path):
    path = lora_files.write_raw(tmp_path / "style.safetensors", TENSORS, {
        "ss_output_name": "Watercolour", "ss_base_model_version": "flux1",
        "ss_tag_frequency": json.dumps({"10_wc": {"wcstyle": 20, "tree": 3, "river": 5}}),
    })
    info = lora_info(path)
    assert isinstance(info, LoraInfo)
    assert info.name == "Watercolour" and info.base_model == "flux1"
    assert info.trigger_words == ("wcstyle", "river", "tree")
    assert info.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert info.file_name == "style.safetensors"


@pytest.mark.parametrize("meta, words", [
    ({"trigger_word": "ohwx"}, ("ohwx",)),
    ({"trigger_words": '["a cat", "b dog"]'}, ("a cat", "b dog")),
    ({"trigger_words": "ink, sketch ,ink"}, ("ink", "sketch")),
    ({"modelspec.trigger_phrase": "in the style of x"}, ("in the style of x",)),
    ({"instance_prompt": "sks person"}, ("sks person",)),
    ({}, ()),
])
def test_trigger_words(tmp_path, meta, words):
    path = lora_files.write_raw(tmp_path / "t.safetensors", TENSORS, meta)
    assert lora_info(path, fingerprint=False).trigger_words == words


def test_ai_toolkit_and_modelspec(tmp_path):
    path = lora_files.write_raw(tmp_path / "x.safetensors", TENSORS,
                                {"name": "my_lora", "modelspec.architecture": "flux-1-dev/lora"})
    info = lora_info(path, fingerprint=False)
    assert (info.name, info.base_model, info.fingerprint) == ("my_lora", "flux-1-dev/lora", None)


def test_no_metadata_names_the_file(tmp_path):
    path = lora_files.write_raw(tmp_path / "plain.safetensors", TENSORS)
    info = lora_info(path)
    assert (info.name, info.trigger_words, info.base_model) == ("plain", (), None)
    assert read_metadata(path) == {}


@pytest.mark.parametrize("content", [b"", b"\x00" * 4, b"\xff" * 16 + b"junk", b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}"])
def test_unreadable_files_raise_one_line(tmp_path, content):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(LoraError) as e:
        lora_info(path)
    assert "broken.safetensors" in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(LoraError, match="not found"):
        lora_info(tmp_path / "gone.safetensors")


def test_lora_formats_shares_the_error_and_the_hash(tmp_path):
    from mlx_flux import lora_formats

    assert lora_formats.LoraError is LoraError


def test_importing_it_does_not_import_mlx():
    code = "import sys, mlx_flux.lora_info; print('mlx.core' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
