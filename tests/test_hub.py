"""Model resolution: local paths, the Hugging Face cache (offline), and hub failures explained."""

from __future__ import annotations

import fnmatch
import shutil

import pytest

from mlx_flux import hub
from mlx_flux.errors import GatedRepoError, ModelNotFoundError

# The files of black-forest-labs/FLUX.1-schnell on the hub (names only).
REPO_FILES = [
    ".gitattributes", "README.md", "ae.safetensors", "flux1-schnell.safetensors", "model_index.json",
    "schnell_grid.jpeg", "scheduler/scheduler_config.json", "text_encoder/config.json",
    "text_encoder/model.safetensors", "text_encoder_2/config.json", "text_encoder_2/model-00001-of-00002.safetensors",
    "text_encoder_2/model-00002-of-00002.safetensors", "text_encoder_2/model.safetensors.index.json",
    "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json", "tokenizer_2/special_tokens_map.json", "tokenizer_2/spiece.model",
    "tokenizer_2/tokenizer.json", "tokenizer_2/tokenizer_config.json", "transformer/config.json",
    "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
    "transformer/diffusion_pytorch_model-00002-of-00003.safetensors",
    "transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
    "transformer/diffusion_pytorch_model.safetensors.index.json", "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
]


def selected(patterns):
    return {f for f in REPO_FILES if any(fnmatch.fnmatch(f, p) for p in patterns)}


def test_download_takes_the_diffusers_layout_only():
    files = selected(hub.FULL_PATTERNS)
    assert "flux1-schnell.safetensors" not in files and "ae.safetensors" not in files
    assert "schnell_grid.jpeg" not in files and "README.md" not in files
    needed = {f for f in REPO_FILES if "/" in f} | {"model_index.json"}
    assert files == needed


def test_single_file_base_skips_the_transformer_weights():
    files = selected(hub.BASE_PATTERNS)
    assert "transformer/config.json" in files
    assert not any(f.startswith("transformer/") and f.endswith(".safetensors") for f in files)
    assert "text_encoder_2/model-00001-of-00002.safetensors" in files and "vae/config.json" in files


def test_display_name_never_shows_a_home_path(tmp_path):
    assert hub.display_name("schnell") == "black-forest-labs/FLUX.1-schnell"
    assert hub.display_name("acme/my-flux") == "acme/my-flux"
    snap = "/Users/ann/.cache/huggingface/hub/models--acme--my-flux/snapshots/abc123"
    assert hub.display_name(snap) == "acme/my-flux"
    assert hub.display_name(tmp_path / "my-finetune") == "my-finetune"


def test_local_path_is_used_as_is(tmp_path):
    assert hub.resolve(tmp_path) == tmp_path
    with pytest.raises(ModelNotFoundError, match="no such model"):
        hub.resolve(tmp_path / "missing-folder")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def put_in_cache(cache, repo_id, source):
    owner, name = repo_id.split("/")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{owner}--{name}"
    shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def test_cached_repo_loads_offline(hf_cache, tiny_schnell):
    snap = put_in_cache(hf_cache, "acme/tiny-flux", tiny_schnell)
    assert hub.resolve("acme/tiny-flux") == snap


def test_missing_from_cache_offline_says_how_to_get_it(hf_cache):
    with pytest.raises(ModelNotFoundError, match="mlx-flux download acme/absent"):
        hub.resolve("acme/absent")


def _hub_error(cls, message):
    e = cls.__new__(cls)
    Exception.__init__(e, message)
    return e


@pytest.mark.parametrize(
    "error, kind, text",
    [
        ("GatedRepoError", GatedRepoError, "accept its licence"),
        ("RepositoryNotFoundError", ModelNotFoundError, "unknown model"),
    ],
)
def test_hub_failures_are_explained(hf_cache, monkeypatch, error, kind, text):
    import huggingface_hub
    from huggingface_hub import constants, errors

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def fake_snapshot_download(repo_id, **kwargs):
        if kwargs.get("local_files_only"):
            raise errors.LocalEntryNotFoundError("not cached")
        raise _hub_error(getattr(errors, error), "401 Client Error")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(kind, match=text) as info:
        hub.resolve("black-forest-labs/FLUX.1-dev")
    assert "\n" not in str(info.value)


def test_progress_reaches_the_callback(hf_cache, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants, errors

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    seen = []

    def fake_snapshot_download(repo_id, **kwargs):
        if kwargs.get("local_files_only"):
            raise errors.LocalEntryNotFoundError("not cached")
        bar = kwargs["tqdm_class"](total=200)
        bar.update(50)
        bar.update(150)
        return str(hf_cache)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    hub.resolve("acme/new", progress=lambda msg, frac: seen.append((msg, frac)))
    assert seen == [("Downloading acme/new", 0.25), ("Downloading acme/new", 1.0)]


def test_files_of_a_repo_resolve_from_the_cache(hf_cache, tmp_path):
    """LoRAs named `owner/repo` (its one .safetensors) or `owner/repo:file.safetensors`."""
    one = tmp_path / "one"
    one.mkdir()
    (one / "style.safetensors").write_bytes(b"x")
    (one / "README.md").write_text("a LoRA")
    snap = put_in_cache(hf_cache, "acme/style-lora", one)
    assert hub.resolve_file("acme/style-lora") == snap / "style.safetensors"
    assert hub.resolve_file("acme/style-lora:style.safetensors") == snap / "style.safetensors"
    local = tmp_path / "mine.safetensors"
    local.write_bytes(b"y")
    assert hub.resolve_file(str(local)) == local

    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        (two / name).write_bytes(b"z")
    put_in_cache(hf_cache, "acme/two-loras", two)
    with pytest.raises(ModelNotFoundError, match="acme/two-loras holds a.safetensors, b.safetensors: name one"):
        hub.resolve_file("acme/two-loras")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        hub.resolve_file("acme/two-loras:c.safetensors")  # not cached, and offline
    with pytest.raises(ModelNotFoundError, match="no such file: nothing-here.safetensors"):
        hub.resolve_file("nothing-here.safetensors")
