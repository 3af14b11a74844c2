"""The LoRA library: the files in `<data dir>/loras/` plus the LoRAs the person has added from
elsewhere (remembered in the settings), with what each file says about itself.

No Qt and no MLX here: headers are read with `mlx_flux.lora_info` (a few KB per file), and a
file's fingerprint (a full read) only when a restore has to find a LoRA by its content hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from mlx_flux.lora_info import LoraError, LoraInfo, file_sha256, lora_info
from mlx_flux.request import LoraRef

SUFFIX = ".safetensors"


def is_lora_file(path: str | Path) -> bool:
    return str(path).lower().endswith(SUFFIX)


def short_name(name: str) -> str:
    """'style.safetensors' -> 'style'."""
    return name[: -len(SUFFIX)] if is_lora_file(name) else name


def lora_text(refs: Iterable[LoraRef]) -> str:
    """'style 0.8, ink -0.5': the LoRAs of an image, as captions and tooltips show them."""
    return ", ".join(f"{short_name(ref.name)} {ref.scale:g}" for ref in refs)


def missing_text(refs: list[LoraRef]) -> str:
    """One line naming LoRAs a restore could not find."""
    names = ", ".join(f"{ref.name} ({ref.fingerprint})" for ref in refs)
    return f"{names} {'is' if len(refs) == 1 else 'are'} not in your LoRA library"


def describe(info: LoraInfo) -> str:
    """A LoRA's tooltip: its name, file, trigger words and base model (what the file carries)."""
    lines = [info.name if info.name == short_name(info.file_name) else f"{info.name} ({info.file_name})"]
    if info.trigger_words:
        lines.append("Trigger words: " + ", ".join(info.trigger_words))
    if info.base_model:
        lines.append(f"Base model: {info.base_model}")
    lines.append(str(info.path))
    return "\n".join(lines)


class LoraLibrary:
    """Lists the library folder and finds LoRAs by content hash (cached per file version)."""

    def __init__(self, folder: Path, known: Callable[[], list[str]] = list) -> None:
        self.folder = folder
        self._known = known  # the remembered paths of LoRAs added from elsewhere
        self._infos: dict[tuple[str, int, int], LoraInfo] = {}
        self._hashes: dict[tuple[str, int, int], str] = {}

    def ensure_folder(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def files(self) -> list[Path]:
        """The library's .safetensors files, by name."""
        if not self.folder.is_dir():
            return []
        return sorted((p for p in self.folder.iterdir() if p.is_file() and is_lora_file(p.name)),
                      key=lambda p: p.name.lower())

    def entries(self) -> list[LoraInfo]:
        """The library's files that can be read, with their metadata."""
        found = []
        for path in self.files():
            try:
                found.append(self.info(path))
            except LoraError:
                continue  # half-copied or not a safetensors file: not offered
        return found

    def info(self, path: str | Path) -> LoraInfo:
        """The header metadata of `path` (LoraError if it cannot be read)."""
        try:
            key = _version(path)
        except OSError:
            return lora_info(path, fingerprint=False)  # raises the one-line LoraError
        if key not in self._infos:
            self._infos[key] = lora_info(path, fingerprint=False)
        return self._infos[key]

    def fingerprint(self, path: str | Path) -> str | None:
        try:
            key = _version(path)
            if key not in self._hashes:
                self._hashes[key] = file_sha256(path)[:12]
        except OSError:
            return None
        return self._hashes[key]

    def candidates(self) -> list[Path]:
        """Where a restore looks: the library folder, then the LoRAs added from elsewhere."""
        seen, found = set(), []
        for path in [*self.files(), *(Path(p) for p in self._known())]:
            key = str(path.resolve()) if path.exists() else None
            if key is not None and key not in seen and path.is_file():
                seen.add(key)
                found.append(path)
        return found

    def find(self, ref: LoraRef) -> Path | None:
        """A file with `ref`'s content hash; a file of the same name is preferred (and hashed first)."""
        paths = self.candidates()
        for path in sorted(paths, key=lambda p: p.name != ref.name):
            if self.fingerprint(path) == ref.fingerprint:
                return path
        return None


def _version(path: str | Path) -> tuple[str, int, int]:
    """A file's identity for the caches: a changed file is read again."""
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns
