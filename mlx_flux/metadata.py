"""Generation parameters stored inside PNG files, and read back.

Two text chunks: `parameters` in the widely read "prompt / Steps: N, Sampler: ..., Seed: N,
Size: WxH, Model: ..." form so image hosts and viewers show it, and `mlx-flux`, a JSON
object of our own for exact restore: a `GenerationRequest.to_metadata()`, versioned by its
`schema` field (see `request.py`). Neither ever holds a local path or a secret.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
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


def save_png(image: Image.Image, path: str | os.PathLike, metadata: Mapping[str, Any], overwrite: bool = True) -> Path:
    """Write `image` as a PNG carrying `metadata`, atomically.

    The file appears complete or not at all: a full disk or a crash mid-write leaves the
    destination (and any earlier file there) untouched. With `overwrite` False the file is
    created exclusively: if `path` exists, even one that appeared while this image was being
    written, FileExistsError (naming `path`) and nothing is replaced. Temporary files a
    killed run left beside `path` (ours only, by their name) are removed when stale.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale(folder, f".{path.name}.", ".part")
    info = PngImagePlugin.PngInfo()
    info.add_text(TEXT_KEY, parameters_text(metadata))
    info.add_text(JSON_KEY, json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as e:
        raise _named(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG", pnginfo=info)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600; a saved image is an ordinary file
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_exclusively(tmp, path)
    except OSError as e:  # named after the user's path, never the hidden temporary file
        raise _named(e, path) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _publish_exclusively(tmp: str, path: Path) -> None:
    """Give the complete file `tmp` the name `path`, failing if `path` exists (FileExistsError)."""
    try:
        os.link(tmp, path)  # atomic and exclusive: fails if path exists
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        # no hard links here (FAT, some network shares): claim the name exclusively, then replace it
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(tmp, path)


def _named(e: OSError, path: Path) -> OSError:
    """`e` as raised for `path` (an error about our temporary file is one about the user's file)."""
    if isinstance(e, FileExistsError):
        return FileExistsError(errno.EEXIST, f"{path} exists", str(path))
    return type(e)(e.errno, e.strerror or str(e), str(path))


STALE_SECONDS = 10 * 60  # a temporary file this old belongs to no running save or quantize


def remove_stale(folder: Path, prefix: str, suffix: str = "", age: float = STALE_SECONDS) -> None:
    """Remove what killed runs left in `folder`: entries named `prefix*suffix` older than `age`.

    Only our own temporary names are matched (`.<name>.XXXX.part`, `.<name>.partial-XXXX`),
    never anything else; a file or folder that cannot be removed is left alone.
    """
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)) or len(entry.name) <= len(prefix):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < age:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def new_file_mode() -> int:
    """What a plain open() would give a new file: 0666 less the umask (for files made with mkstemp,
    which makes them 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def read_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The generation parameters stored in an image, or None if it has none we understand."""
    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", {}) or im.info)
            comment = _exif_comment(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        # a header claiming 100000x100000 is refused by Pillow before its text is read
        return None
    if comment and TEXT_KEY not in text:  # a JPEG or WebP export: the parameters text in EXIF
        text[TEXT_KEY] = comment
    if JSON_KEY in text:
        try:
            meta = json.loads(str(text[JSON_KEY]))
            if isinstance(meta, dict):
                return meta
        except (ValueError, RecursionError):  # not JSON, nested too deep, an integer too long
            pass
    if TEXT_KEY in text:
        return parse_parameters(str(text[TEXT_KEY]))
    return None


_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286


def _exif_comment(im: Image.Image) -> str | None:
    """The EXIF UserComment (where JPEG and WebP exports keep the `parameters` text), decoded."""
    try:
        raw = im.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # noqa: BLE001 - a broken EXIF block is only a missing comment
        return None
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes) or len(raw) < 8:
        return None
    head, body = raw[:8], raw[8:]
    try:
        if head.startswith(b"UNICODE"):  # UTF-16, big-endian as written by export (and most tools)
            return body.decode("utf-16-be" if not body.startswith(b"\xff\xfe") else "utf-16")
        return body.decode("ascii" if head.startswith(b"ASCII") else "utf-8")
    except UnicodeDecodeError:
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
    keys = [k for k in FIELDS if k in meta] + sorted(str(k) for k in meta if k not in FIELDS)
    names = {k: printable(k, newlines=False) for k in keys}
    width = min(max((len(n) for n in names.values()), default=0), 24)
    lines = []
    for k in keys:
        value = meta[k]
        if k == "loras" and isinstance(value, list):
            refs = [GenerationRequest.from_metadata({"prompt": "", "loras": [item]}).loras for item in value]
            value = "; ".join(f"{r[0].name} ({r[0].fingerprint}) x {r[0].scale:g}" if r else str(item)
                              for r, item in zip(refs, value)) or "none"
        lines.append(f"{names[k].ljust(width)}  {printable(_text(value))}")
    return "\n".join(lines)


def _text(value: Any) -> str:
    try:
        return str(value)
    except (RecursionError, ValueError):  # a value nested deeply, an integer too long to print
        return "(unprintable value)"


def printable(text: str, newlines: bool = True) -> str:
    """`text` safe to print to a terminal: every character that is not printable (escape
    sequences, clipboard writes, bidirectional overrides) shown as its escape (`\\x1b`),
    newlines kept so a multi-line prompt stays readable."""
    keep = "\n" if newlines else ""
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii") for c in text)
