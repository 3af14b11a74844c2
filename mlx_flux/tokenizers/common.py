"""What both tokenizers share: the result type, framing with specials, and config files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx_flux.weights import WeightError


@dataclass(frozen=True)
class TokenizedText:
    """One prompt's ids, padded or truncated to exactly `max_length`.

    `num_tokens` counts content plus special tokens before truncation, so `truncated` is
    `num_tokens > len(ids)` and a caller can tell the user how much of the prompt was cut.
    """

    ids: list[int]
    truncated: bool
    num_tokens: int


def frame(content: list[int], max_length: int, pad_id: int, *, bos: int | None, eos: int) -> TokenizedText:
    """`[bos] + content + [eos]` with the content cut so eos survives, right-padded to max_length."""
    head = [] if bos is None else [bos]
    room = max_length - len(head) - 1
    if room < 0:
        raise ValueError(f"max_length {max_length} leaves no room for the special tokens")
    num_tokens = len(head) + len(content) + 1
    ids = head + content[:room] + [eos]
    return TokenizedText(ids + [pad_id] * (max_length - len(ids)), num_tokens > max_length, num_tokens)


def read_json(path: Path) -> Any:
    """Parse a tokenizer JSON file; a missing or unreadable file is a WeightError naming it."""
    if not path.is_file():
        raise WeightError(f"missing tokenizer file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightError(f"corrupt tokenizer file (not JSON): {path}") from e


def read_config(path: Path) -> dict[str, Any]:
    """Parse an optional JSON config (tokenizer_config.json, special_tokens_map.json)."""
    config = read_json(path)
    if not isinstance(config, dict):
        raise WeightError(f"corrupt tokenizer file (not a JSON object): {path}")
    return config


def special_name(entry: Any, default: str) -> str:
    """A special token as written in tokenizer_config.json: a plain string or {"content": ...}."""
    if isinstance(entry, dict):
        entry = entry.get("content")
    return entry if isinstance(entry, str) else default


def special_config(folder: Path, default_max_length: int, min_length: int) -> tuple[dict[str, Any], int]:
    """special_tokens_map.json then tokenizer_config.json (the later wins), and the max length."""
    config: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            config.update(read_config(folder / name))
    max_length = config.get("model_max_length", default_max_length)
    if not isinstance(max_length, int) or not min_length <= max_length <= 1_000_000:
        max_length = default_max_length  # transformers writes a huge sentinel when there is no limit
    return config, max_length
