"""Writing an image somewhere a person chose, and pointing the file manager at it."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import QProcess, QUrl
from PySide6.QtGui import QDesktopServices

# format id -> (file-dialog label, extensions; the first is the default)
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "png": ("PNG image with settings", (".png",)),
    "jpeg": ("JPEG image", (".jpg", ".jpeg")),
    "webp": ("WebP image", (".webp",)),
}
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286
NAME_WORDS, NAME_CHARS = 6, 48  # the suggested file name: the prompt's first words, bounded


def dialog_filters() -> list[str]:
    return [f"{label} (*{' *'.join(exts)})" for label, exts in FORMATS.values()]


def format_for(path: Path, chosen_filter: str = "") -> str:
    """The format implied by the file name, else by the filter picked in the dialog (else PNG)."""
    suffix = path.suffix.lower()
    for fmt, (label, exts) in FORMATS.items():
        if suffix in exts:
            return fmt
    for fmt, (label, _) in FORMATS.items():
        if chosen_filter.startswith(label):
            return fmt
    return "png"


def with_extension(path: Path, fmt: str) -> Path:
    exts = FORMATS[fmt][1]
    return path if path.suffix.lower() in exts else path.with_name(path.name + exts[0])


def export_image(image: Image.Image, metadata: dict[str, Any], dest: Path, fmt: str | None = None,
                 source_png: Path | None = None) -> Path:
    """Write `image` to `dest` as PNG (with our metadata), JPEG or WebP (settings in EXIF).

    A PNG that already exists on disk is copied byte for byte, so the export is exactly the
    saved image. Every write goes through a temporary file, so a full disk never leaves a
    half-written file at `dest`.
    """
    fmt = fmt or format_for(dest)
    dest = with_extension(Path(dest), fmt)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "png" and source_png is not None and source_png.is_file():
        _atomic(dest, lambda tmp: shutil.copyfile(source_png, tmp))
        return dest
    if fmt == "png":
        from mlx_flux.metadata import save_png

        save_png(image, dest, metadata)
        return dest

    rgb = image.convert("RGB")
    exif = Image.Exif()
    if metadata:
        from mlx_flux.metadata import parameters_text

        # The "UNICODE" prefix is how EXIF marks a UTF-16 UserComment; viewers show it as the caption.
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\0" + parameters_text(metadata).encode("utf-16-be")
    options: dict[str, Any] = {"quality": 95, "exif": exif.tobytes()}
    if fmt == "jpeg":
        # No optimize=True: libjpeg's optimising pass over a detailed image overruns Pillow's
        # output buffer ("broken data stream when writing image file"); it saved a few percent.
        options.update(subsampling=0)
    _atomic(dest, lambda tmp: rgb.save(tmp, format="JPEG" if fmt == "jpeg" else "WEBP", **options))
    return dest


def _atomic(dest: Path, write) -> None:
    from mlx_flux.metadata import new_file_mode  # light: no MLX import

    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600; an exported image is an ordinary file
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_folder(last: str = "") -> Path:
    """Where the Export dialog opens: the folder used last if it is still there, else
    ~/Pictures (where people look for images), else home."""
    if last and Path(last).expanduser().is_dir():
        return Path(last).expanduser()
    pictures = Path.home() / "Pictures"
    return pictures if pictures.is_dir() else Path.home()


def default_name(prompt: str, seed: int | None, ext: str = ".png") -> str:
    """A file name that says what the image is: 'a-red-fox-in-snow-seed42.png'.

    The prompt's first words, lower case, letters and digits only (any script), so the name
    is safe on every file system; bounded so long prompts make short names."""
    words = re.findall(r"\w+", prompt.lower().replace("_", " "))[:NAME_WORDS]
    slug = "-".join(words)[:NAME_CHARS].strip("-") or "flux"
    suffix = f"-seed{seed}" if seed is not None else ""
    return f"{slug}{suffix}{ext}"


def reveal_in_file_manager(path: Path) -> None:
    """Show `path` selected in Finder/Explorer; elsewhere open its folder."""
    path = Path(path)
    if sys.platform == "darwin":
        QProcess.startDetached("open", ["-R", str(path)])
    elif sys.platform == "win32":
        QProcess.startDetached("explorer", [f"/select,{path}"])
    else:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent)))
