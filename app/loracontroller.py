"""What the window does with LoRAs: add them (file dialog, drop, library folder), list the library,
find an image's LoRAs again when its settings are restored, and show a LoRA that failed.

`LoraController` is owned by the main window; it works on the controls' LoRA panel, the
window's settings and message bar. Applying LoRAs is the worker's job, at the next generation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QMimeData, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog

from mlx_flux.lora_info import LoraError
from mlx_flux.request import LoraRef

from app.loras import LoraLibrary, is_lora_file, missing_text
from app.params import LoraChoice

if TYPE_CHECKING:
    from app.window import MainWindow

log = logging.getLogger(__name__)


def open_folder(folder: Path) -> None:
    """Show a folder in the platform's file manager (a module function, so tests can swap it)."""
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


class LoraController:
    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.panel = window.controls.loraPanel
        self.library = LoraLibrary(window.data_dir.loras, lambda: window.settings.known_loras)
        p = self.panel
        p.addRequested.connect(self.choose_files)
        p.openFolderRequested.connect(self.open_library_folder)
        p.libraryRequested.connect(self.add_path)
        p.libraryRefreshRequested.connect(self.refresh_library)
        window.queue.loraFailed.connect(self.show_failure)
        self.refresh_library()

    # -- adding -------------------------------------------------------------------------
    def choose_files(self) -> None:
        start = self.library.folder if self.library.folder.is_dir() else Path.home()
        known = self.window.settings.known_loras
        if known and Path(known[0]).parent.is_dir():
            start = Path(known[0]).parent
        paths, _ = QFileDialog.getOpenFileNames(self.window, "Add LoRA", str(start), "LoRA (*.safetensors)")
        for path in paths:
            self.add_path(path)

    def add_path(self, path: str | Path) -> bool:
        """Add one LoRA file to the active list; a file that cannot be read is reported instead."""
        path = Path(path)
        try:
            info = self.library.info(path)
        except LoraError as exc:
            self.window.show_message(f"Could not add the LoRA: {exc}")
            return False
        self.panel.add(str(path), info)
        if path.parent.resolve() != self.library.folder.resolve():
            self.window.settings.remember_lora(str(path))  # so a restore can find it again
        return True

    @staticmethod
    def dropped_loras(mime: QMimeData) -> list[Path]:
        return [Path(url.toLocalFile()) for url in (mime.urls() if mime.hasUrls() else [])
                if url.isLocalFile() and is_lora_file(url.toLocalFile())]

    def add_dropped(self, paths: list[Path]) -> None:
        added = [path.name for path in paths if self.add_path(path)]
        if added:
            self.window.statusBar().showMessage(f"Added {', '.join(added)}", 4000)

    # -- the library folder ---------------------------------------------------------------
    def refresh_library(self) -> None:
        self.panel.set_library(self.library.entries())

    def open_library_folder(self) -> None:
        try:
            folder = self.library.ensure_folder()
        except OSError as exc:
            self.window.show_message(f"Can't create the LoRA folder {self.library.folder}: {exc.strerror or exc}")
            return
        open_folder(folder)

    # -- restoring ------------------------------------------------------------------------
    def restore(self, refs: tuple[LoraRef, ...]) -> tuple[LoraChoice, ...]:
        """Show an image's LoRAs in the panel, each found by its content hash in the library or
        among the files added before; one line says which could not be found."""
        found, missing = [], []
        for ref in refs:
            path = self.library.find(ref)
            if path is None:
                missing.append(ref)
                continue
            try:
                info = self.library.info(path)
            except LoraError:
                info = None
            found.append((LoraChoice(str(path), ref.scale), info))
        self.panel.replace(found)
        if missing:
            self.window.show_message(missing_text(missing), "warning")
        return tuple(choice for choice, _ in found)

    # -- failures -----------------------------------------------------------------------
    def show_failure(self, path: str, message: str) -> None:
        """A LoRA the engine could not apply: say so, mark its row and switch it off."""
        row = self.panel.mark_failed(path, message) if path else None
        what = f"the LoRA “{row.name}”" if row is not None else "the LoRAs"
        self.window.show_message(f"Could not apply {what}, so the image was not made: {message.rstrip('.')}. "
                                 "It has been switched off; the model stays loaded.")
