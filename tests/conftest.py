"""Shared fixtures: tiny random checkpoints in the real layouts, built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# GUI tests run without a display; set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Determinism of the torch reference.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Never reach for the network from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def torch_ref():
    """The reference framework, pinned to float32 and one thread for repeatable numbers."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    return torch


@pytest.fixture(scope="session")
def tiny_schnell(tmp_path_factory, torch_ref) -> Path:
    """A tiny FLUX.1-schnell in the Hugging Face layout, plus the BFL single files beside it."""
    root = tmp_path_factory.mktemp("tiny-schnell")
    tiny_models.build_hf_layout(root, "schnell")
    tiny_models.build_single_files(root, "schnell")
    return root


@pytest.fixture(scope="session")
def tiny_dev(tmp_path_factory, torch_ref) -> Path:
    """A tiny FLUX.1-dev (guidance embedding) in the Hugging Face layout, plus BFL single files."""
    root = tmp_path_factory.mktemp("tiny-dev")
    tiny_models.build_hf_layout(root, "dev")
    tiny_models.build_single_files(root, "dev", prefix="model.diffusion_model.")
    return root


@pytest.fixture(scope="session")
def tiny_kontext(tmp_path_factory, torch_ref) -> Path:
    """A tiny FLUX.1-Kontext-dev: dev's layout, with model_index.json naming FluxKontextPipeline."""
    root = tmp_path_factory.mktemp("tiny-kontext")
    tiny_models.build_hf_layout(root, "dev", pipeline_class="FluxKontextPipeline")
    return root


@pytest.fixture(scope="session")
def tiny_fill(tmp_path_factory, torch_ref) -> Path:
    """A tiny FLUX.1-Fill-dev: dev's layout with a 384-channel transformer input (latents, masked-image
    latents, packed mask), model_index.json naming FluxFillPipeline."""
    root = tmp_path_factory.mktemp("tiny-fill")
    tiny_models.build_hf_layout(root, "dev", pipeline_class="FluxFillPipeline", in_channels=384)
    return root
