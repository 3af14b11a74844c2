"""Where the app keeps its things: one data dir holding history, images and settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QStandardPaths


def default_data_dir() -> Path:
    """The platform's app-data folder (~/Library/Application Support/mlx-flux, XDG on Linux).

    Needs the application name set first (create_app does), since Qt derives the folder from it.
    """
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(location) if location else Path.home() / ".mlx-flux"


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "history.sqlite3"

    @property
    def settings(self) -> Path:
        return self.root / "settings.ini"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def loras(self) -> Path:
        """The LoRA library: .safetensors files put here are listed in the app (created on first use)."""
        return self.root / "loras"

    @property
    def inputs(self) -> Path:
        """The app's copy of every input image, `<fingerprint>.png` (so restoring works after the
        original file is gone), with small previews in `thumbs/`."""
        return self.root / "inputs"

    def prepare(self) -> str | None:
        """Create the folders; return a one-line problem description if they are not writable."""
        try:
            self.images.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"Can't create the data folder {self.root}: {exc.strerror or exc}"
        if not os.access(self.images, os.W_OK):
            return f"The data folder {self.root} is not writable; new images can't be saved."
        self.sweep()
        return None

    def sweep(self) -> None:
        """Remove the hidden temporary files of saves a killed app left behind (ours only, by
        name: `.<image>.XXXX.part`, older than a few minutes)."""
        from mlx_flux.metadata import remove_stale

        folders = [self.images, self.inputs]
        try:
            folders += [p for p in self.images.iterdir() if p.is_dir()]
        except OSError:
            pass
        for folder in folders:
            remove_stale(folder, ".", ".part")
