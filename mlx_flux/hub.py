"""Finding models: local folders, single files, and the Hugging Face hub cache.

Models live in the standard Hugging Face cache (HF_HOME / HF_HUB_CACHE), so a model
another tool (diffusers, mflux) already fetched is reused. We fetch only the diffusers
layout subfolders, never the duplicate BFL single files at the repo root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterable

from .errors import FluxError, GatedRepoError, ModelNotFoundError
from .variants import VARIANTS

Progress = Callable[[str, "float | None"], None]

KNOWN_MODELS = [v.repo for v in VARIANTS.values()]
ALIASES = {name: v.repo for name, v in VARIANTS.items()}  # `schnell`, `dev`, `kontext` name the official repos

WEIGHTED = ("transformer", "vae", "text_encoder", "text_encoder_2")
COMPONENTS = (*WEIGHTED, "tokenizer", "tokenizer_2")
# Everything the engine reads from a diffusers-layout repo, and nothing else.
FULL_PATTERNS = ["model_index.json", "scheduler/*.json", *(f"{c}/*.json" for c in COMPONENTS),
                 *(f"{c}/*.safetensors" for c in WEIGHTED), "tokenizer/*.txt", "tokenizer_2/*.model"]
# What a single-file transformer still needs from its base repo (its transformer config is tiny).
BASE_PATTERNS = [p for p in FULL_PATTERNS if not p.startswith("transformer/") or p.endswith(".json")]

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_repo_id(model: str) -> bool:
    return bool(_REPO_ID.match(model)) and not Path(model).exists()


def display_name(model: str | os.PathLike) -> str:
    """A name for metadata and titles: the repo id, never a local path of the user's home."""
    text = str(model)
    if text in ALIASES:
        return ALIASES[text]
    m = re.search(r"models--([^/\\]+?)--([^/\\]+)", text)
    if m:  # a snapshot folder inside the HF cache
        return f"{m.group(1)}/{m.group(2)}"
    if is_repo_id(text):
        return text
    return Path(text).name or text


def resolve(model: str | os.PathLike, patterns: Iterable[str] = FULL_PATTERNS,
            progress: Progress | None = None) -> Path:
    """A local path for `model`: an existing path as is, or a repo id fetched into the HF cache.

    Uses the cache first (works offline); downloads only what is missing.
    """
    text = str(model)
    text = ALIASES.get(text, text)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if not is_repo_id(text):
        raise ModelNotFoundError(f"no such model file or folder: {text}")
    return download(text, patterns, progress)


def resolve_file(source: str | os.PathLike, suffix: str = ".safetensors") -> Path:
    """A local file, or one file of a hub repository fetched into the HF cache (e.g. a LoRA).

    `owner/repo:name.safetensors` names the file; `owner/repo` means the repository's one
    `suffix` file (several are refused with their names). The cache is used first (offline too).
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise ModelNotFoundError(f"not a file: {text}")
    repo, _, name = text.partition(":")
    if not is_repo_id(repo):
        raise ModelNotFoundError(f"no such file: {text}")
    folder = download(repo, [name or f"*{suffix}"], complete=lambda f: (f / name).is_file() if name
                      else any(f.glob(f"*{suffix}")))
    if name:
        if not (folder / name).is_file():
            raise ModelNotFoundError(f"{repo} has no file {name}")
        return folder / name
    found = sorted(folder.glob(f"*{suffix}"))
    if len(found) != 1:
        listed = ", ".join(f.name for f in found) or f"no {suffix} file"
        raise ModelNotFoundError(f"{repo} holds {listed}: name one as {repo}:FILE")
    return found[0]


def download(repo_id: str, patterns: Iterable[str] = FULL_PATTERNS, progress: Progress | None = None,
             complete: Callable[[Path], bool] | None = None) -> Path:
    """Fetch `repo_id` (only `patterns`) into the HF cache, resuming partial downloads.

    `complete` says whether a cached copy has all that is needed (default: every model
    component the patterns ask for has its weights)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub import constants
    from huggingface_hub.errors import (GatedRepoError as HubGated, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    patterns = list(patterns)
    try:  # a complete copy in the cache needs no network at all
        local = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
        if (complete or (lambda folder: _complete(folder, patterns)))(local):
            return local
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFoundError(
            f"{repo_id} is not (completely) in the Hugging Face cache and HF_HUB_OFFLINE is set: "
            f"run `mlx-flux download {repo_id}` while online")
    kwargs = {}
    if progress is not None:
        kwargs["tqdm_class"] = _progress_tqdm(progress, repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, **kwargs))
    except HubGated as e:
        raise GatedRepoError(
            f"{repo_id} is gated: accept its licence at https://huggingface.co/{repo_id} and log in "
            f"(`hf auth login`) or set HF_TOKEN") from e
    except RepositoryNotFoundError as e:
        hint = "" if os.environ.get("HF_TOKEN") else " (if it is private, log in or set HF_TOKEN)"
        raise ModelNotFoundError(f"unknown model {repo_id!r}: no such repository on the Hugging Face hub{hint}") from e
    except RevisionNotFoundError as e:
        raise ModelNotFoundError(f"{repo_id}: revision not found") from e
    except LocalEntryNotFoundError as e:
        raise FluxError(f"cannot download {repo_id}: no connection to the Hugging Face hub") from e
    except OSError as e:
        if getattr(e, "errno", None) == 28:
            raise FluxError(f"cannot download {repo_id}: the disk is full") from e
        raise FluxError(f"cannot download {repo_id}: {e}") from e
    except Exception as e:  # network failures come in many types across huggingface_hub versions
        raise FluxError(f"cannot download {repo_id}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def _complete(folder: Path, patterns: list[str]) -> bool:
    """Whether every component the patterns ask for has its weights in `folder`."""
    wanted = {p.split("/")[0] for p in patterns if p.endswith(".safetensors")}
    return all(any((folder / c).glob("*.safetensors")) for c in wanted)


def _progress_tqdm(progress: Progress, repo_id: str):
    from tqdm.auto import tqdm

    class _Reporter(tqdm):  # huggingface_hub drives progress through a tqdm class
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._n = 0

        def update(self, n=1):
            self._n += n or 0
            total = self.total or 0
            progress(f"Downloading {repo_id}", self._n / total if total else None)

    return _Reporter
