"""What a LoRA file says about itself, read from its safetensors header alone.

    info = lora_info("style.safetensors")
    info.name, info.trigger_words, info.base_model, info.fingerprint

Trainers keep a few facts in the header's `__metadata__`: kohya sd-scripts (`ss_output_name`,
`ss_tag_frequency`, `ss_base_model_version`), AI-Toolkit (`name`, `trigger_word`), the
Stability model spec (`modelspec.title`, `modelspec.trigger_phrase`, `modelspec.architecture`)
and others. A library list needs them for many files, quickly, on a GUI thread: so only the
8-byte length and the JSON header are read, never the tensors.

Light on purpose: no MLX import (`lora_formats.read_lora` is the one that loads updates).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import FluxError
from .safetensors_header import HeaderError, read_raw_header

# Metadata keys, most specific first.
_NAME_KEYS = ("ss_output_name", "name", "modelspec.title", "ss_training_comment")
_TRIGGER_KEYS = ("trigger_words", "trigger_word", "trigger_phrase", "modelspec.trigger_phrase", "instance_prompt",
                 "activation_text")
_BASE_KEYS = ("ss_base_model_version", "modelspec.architecture", "base_model", "ss_sd_model_name",
              "base_model_name")
MAX_TAGS = 5  # trigger words guessed from kohya's caption tag counts: the most frequent few


class LoraError(FluxError, ValueError):
    """A LoRA file that is missing, corrupt, or not a FLUX.1 LoRA we can read (one line)."""


@dataclass(frozen=True)
class LoraInfo:
    """A LoRA file's own description of itself (every field may be missing from the file)."""

    path: Path
    name: str  # the trainer's output name, else the file name without .safetensors
    trigger_words: tuple[str, ...]
    base_model: str | None
    fingerprint: str | None  # first 12 hex digits of the file's sha256; None when not asked for
    metadata: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def file_name(self) -> str:
        return self.path.name


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header's `__metadata__` (empty when it has none); LoraError if unreadable."""
    path = Path(path)
    try:
        header, _ = read_raw_header(path)
    except FileNotFoundError:
        raise LoraError(f"LoRA file not found: {path}") from None
    except OSError as e:
        raise LoraError(f"{path.name}: cannot be read ({e.strerror or e})") from e
    except HeaderError as e:
        raise LoraError(f"{path.name}: not a safetensors file ({e})") from None
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, streamed (LoRAs are tens to hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def lora_info(path: str | Path, fingerprint: bool = True) -> LoraInfo:
    """Name, trigger words and base model from the header of `path`; its fingerprint (a full
    read of the file) unless `fingerprint=False`. Raises LoraError (one line) if unreadable."""
    path = Path(path)
    meta = read_metadata(path)
    digest = None
    if fingerprint:
        try:
            digest = file_sha256(path)[:12]
        except OSError as e:
            raise LoraError(f"{path.name}: cannot be read ({e.strerror or e})") from e
    name = next((meta[k].strip() for k in _NAME_KEYS if meta.get(k, "").strip()), "")
    stem = path.name[: -len(".safetensors")] if path.name.lower().endswith(".safetensors") else path.name
    return LoraInfo(path=path, name=name if name and name.lower() != "none" else stem,
                    trigger_words=trigger_words(meta), base_model=base_model(meta), fingerprint=digest,
                    metadata=meta)


def trigger_words(meta: Mapping[str, str]) -> tuple[str, ...]:
    """Explicit trigger words if the file names any; else kohya's most frequent caption tags."""
    for key in _TRIGGER_KEYS:
        words = _words(meta.get(key))
        if words:
            return words
    return _frequent_tags(meta.get("ss_tag_frequency"))


def base_model(meta: Mapping[str, str]) -> str | None:
    for key in _BASE_KEYS:
        value = str(meta.get(key) or "").strip()
        if value and value.lower() != "none":
            return value
    return None


def _words(value: Any) -> tuple[str, ...]:
    """A trigger field: a JSON list, or text separated by commas (or one phrase)."""
    if not value:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text.strip("[]")
        else:
            value = text
    items = value if isinstance(value, list) else str(value).split(",")
    return _unique(str(item).strip().strip("'\"") for item in items)


def _frequent_tags(value: str | None) -> tuple[str, ...]:
    """ss_tag_frequency: {"dataset dir": {"tag": count, ...}, ...} -> the top tags."""
    try:
        datasets = json.loads(value) if value else {}
    except json.JSONDecodeError:
        return ()
    counts: dict[str, int] = {}
    for tags in datasets.values() if isinstance(datasets, dict) else []:
        for tag, count in tags.items() if isinstance(tags, dict) else []:
            if isinstance(count, (int, float)):
                counts[tag.strip()] = counts.get(tag.strip(), 0) + int(count)
    ranked = sorted(counts, key=lambda t: -counts[t])  # stable: ties keep the file's order
    return _unique(ranked)[:MAX_TAGS]


def _unique(items) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        if item and item not in seen:
            seen[item] = None
    return tuple(seen)
