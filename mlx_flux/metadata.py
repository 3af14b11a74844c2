"""Generation parameters stored inside PNG files, and read back.

Two text chunks: `parameters` in the widely read "prompt / Steps: N, Sampler: ..., Seed: N,
Size: WxH, Model: ..." form so image hosts and viewers show it, and `mlx-flux`, a JSON
object of our own for exact restore: a `GenerationRequest.to_metadata()`, versioned by its
`schema` field (see `request.py`). Neither ever holds a local path or a secret.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

from PIL import Image, PngImagePlugin

from .request import GenerationRequest

JSON_KEY = "mlx-flux"
TEXT_KEY = "parameters"
FIELDS = ("prompt", "seed", "steps", "guidance", "width", "height", "model", "quantize", "loras", "version",
          "schema")


def parameters_text(meta: Mapping[str, Any]) -> str:
    """The A1111-style `parameters` text: the prompt, then one line of comma-separated fields."""
    fields = [f"Steps: {meta.get('steps')}", "Sampler: Euler (flow matching)", f"Seed: {meta.get('seed')}",
              f"Size: {meta.get('width')}x{meta.get('height')}", f"Model: {meta.get('model')}"]
    if meta.get("guidance") is not None:
        fields.append(f"Guidance: {meta['guidance']}")
    if meta.get("quantize"):
        fields.append(f"Quantize: {meta['quantize']}-bit")
    for lora in meta.get("loras") or []:
        if isinstance(lora, Mapping):
            fields.append(f"Lora: {lora.get('name')} ({lora.get('fingerprint')}) {lora.get('scale')}")
    fields.append(f"Version: mlx-flux {meta.get('version')}")
    return f"{meta.get('prompt', '')}\n" + ", ".join(fields)


def save_png(image: Image.Image, path: str | os.PathLike, metadata: Mapping[str, Any]) -> Path:
    """Write `image` as a PNG carrying `metadata`, atomically.

    The file appears complete or not at all: a full disk or a crash mid-write leaves the
    destination (and any earlier file there) untouched.
    """
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    info.add_text(TEXT_KEY, parameters_text(metadata))
    info.add_text(JSON_KEY, json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG", pnginfo=info)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a saved image is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The generation parameters stored in an image, or None if it has none we understand."""
    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", {}) or im.info)
    except (OSError, ValueError):
        return None
    if JSON_KEY in text:
        try:
            meta = json.loads(text[JSON_KEY])
            if isinstance(meta, dict):
                return meta
        except json.JSONDecodeError:
            pass
    if TEXT_KEY in text:
        return parse_parameters(str(text[TEXT_KEY]))
    return None


def parse_parameters(text: str) -> dict[str, Any] | None:
    """Parse the `parameters` form (ours or another tool's) into our field names."""
    prompt, sep, last = text.rpartition("\n")
    if not sep or "Steps:" not in last:
        return None
    fields = dict(re.findall(r"\s*([\w ]+):\s*([^,]*)", last))
    meta: dict[str, Any] = {"prompt": prompt}
    for key, name, cast in (("Steps", "steps", int), ("Seed", "seed", int), ("Guidance", "guidance", float),
                            ("Model", "model", str)):
        if key in fields:
            try:
                meta[name] = cast(fields[key].strip())
            except ValueError:
                pass
    if "Size" in fields and re.fullmatch(r"\s*\d+x\d+\s*", fields["Size"]):
        w, h = fields["Size"].strip().split("x")
        meta["width"], meta["height"] = int(w), int(h)
    if re.fullmatch(r"\s*\d+-bit\s*", fields.get("Quantize", "")):
        meta["quantize"] = int(fields["Quantize"].strip().removesuffix("-bit"))
    loras = re.findall(r"Lora: (.+?) \(([0-9a-f]{12})\) (-?[0-9.]+(?:e-?[0-9]+)?)(?=,|$)", last)
    if loras:
        meta["loras"] = [{"name": n, "fingerprint": f, "scale": float(v)} for n, f, v in loras]
    if "Version" in fields:
        meta["version"] = fields["Version"].strip().removeprefix("mlx-flux ").strip()
    return meta


def read_request(path: str | os.PathLike) -> GenerationRequest | None:
    """The generation request stored in an image, or None if it holds no usable one."""
    meta = read_metadata(path)
    try:
        return GenerationRequest.from_metadata(meta) if meta is not None else None
    except ValueError:
        return None


def format_metadata(meta: Mapping[str, Any]) -> str:
    """Human-readable lines for `mlx-flux info`."""
    keys = [k for k in FIELDS if k in meta] + sorted(k for k in meta if k not in FIELDS)
    width = max(len(k) for k in keys) if keys else 0
    lines = []
    for k in keys:
        value = meta[k]
        if k == "loras" and isinstance(value, list):
            refs = [GenerationRequest.from_metadata({"prompt": "", "loras": [item]}).loras for item in value]
            value = "; ".join(f"{r[0].name} ({r[0].fingerprint}) x {r[0].scale:g}" if r else str(item)
                              for r, item in zip(refs, value)) or "none"
        lines.append(f"{k.ljust(width)}  {value}")
    return "\n".join(lines)
