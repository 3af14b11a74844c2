"""The queue that was still waiting when the app quit, kept for the next launch.

`<data dir>/queue.json` holds each unfinished job's settings (the model choice, the LoRAs, the
input image and mask the app keeps copies of, and the request as its metadata JSON, seed
included). Nothing in it runs by itself: the next window offers to generate or discard it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from app.params import GenerationParams, InputImageChoice, LoraChoice, ModelChoice
from mlx_flux.request import GenerationRequest

log = logging.getLogger(__name__)

FILE_NAME = "queue.json"
FORMAT = 1


def queue_file(root: Path) -> Path:
    return Path(root) / FILE_NAME


def to_json(params: GenerationParams) -> dict[str, Any]:
    return {
        "model": params.choice.source,
        "quantize": params.choice.quantize,
        "loras": [[lora.path, lora.scale] for lora in params.loras],
        "input": params.input.path if params.input is not None else None,
        "mask": params.mask.path if params.mask is not None else None,
        "expand": list(params.expand) if params.expand is not None else None,
        "request": params.request.to_metadata(),
    }


def from_json(item: Any) -> GenerationParams | None:
    """One saved job, or None when it cannot be read (a damaged or hand-edited file)."""
    try:
        request = GenerationRequest.from_metadata(item["request"])
        quantize = item.get("quantize")
        choice = ModelChoice(str(item["model"]), quantize if quantize in (4, 8) else None)
        loras = tuple(LoraChoice(str(path), float(scale)) for path, scale in item.get("loras") or [])
        expand = item.get("expand")
        return GenerationParams(
            choice, request, loras,
            input=InputImageChoice(str(item["input"])) if item.get("input") else None,
            mask=InputImageChoice(str(item["mask"])) if item.get("mask") else None,
            expand=tuple(int(v) for v in expand) if expand else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def save(root: Path, jobs: list[GenerationParams]) -> None:
    """Write `jobs` (none: remove the file). Written beside and renamed: a crash never leaves half."""
    path = queue_file(root)
    try:
        if not jobs:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_text(json.dumps({"format": FORMAT, "jobs": [to_json(p) for p in jobs]}, indent=1),
                       encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        log.exception("could not save the queue to %s", path)


def load(root: Path) -> list[GenerationParams]:
    """The saved jobs, in queue order; [] when there are none or the file cannot be read."""
    path = queue_file(root)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        log.warning("could not read the saved queue %s", path, exc_info=True)
        return []
    items = data.get("jobs") if isinstance(data, dict) else None
    return [p for p in (from_json(item) for item in items or []) if p is not None]
