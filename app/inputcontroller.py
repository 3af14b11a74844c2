"""What the window does with input images: take one (dropped on the well, opened, or an image the
app made: the one in view or a history entry's), keep the app's copy of it, fill the well and
set the size; clear it; and put an image's input back when its settings are restored.

`InputController` is owned by the main window; it works on the controls' input panel, the size
controls and the message bar. Reading and copying a file runs on a pool thread (`InputLoader`);
the engine reads the copy again on the worker's thread when the image is made.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog

from mlx_flux.images import kontext_size, own_size
from mlx_flux.request import GenerationRequest

from app.imaging import qimage_to_pil
from app.inputs import FILE_FILTER, InputLoader, StoredInput, find, preview, short_hash
from app.params import InputImageChoice, fit_size

if TYPE_CHECKING:
    from app.window import MainWindow

log = logging.getLogger(__name__)


class InputController:
    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.controls = window.controls
        self.panel = window.controls.inputPanel
        self.folder = window.data_dir.inputs
        self.loader = InputLoader(self.folder, window)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        p = self.panel
        p.openRequested.connect(self.choose_file)
        p.clearRequested.connect(self.clear)
        p.inputImageView.fileDropped.connect(self.use_file)
        p.inputImageView.imageDropped.connect(self.use_image)
        self._dialog_dir = str(Path.home())

    def is_loading(self) -> bool:
        return self.loader.is_busy()

    # -- taking an image --------------------------------------------------------------------
    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open Input Image", self._dialog_dir, FILE_FILTER)
        if path:
            self._dialog_dir = str(Path(path).parent)
            self.use_file(path)

    def use_file(self, path: str | Path) -> None:
        """Make the image file at `path` the input (read and copied on a pool thread)."""
        self.panel.set_busy()
        self.loader.start(Path(path))

    def use_image(self, image: QImage, name: str = "") -> None:
        """Make these pixels the input (an image without a file)."""
        if image.isNull():
            self.window.show_message("The dropped image could not be read.")
            return
        self.panel.set_busy()
        self.loader.start(qimage_to_pil(image), name or "dropped image")

    def use_shown(self) -> None:
        """"Use as Input": the image in view (its saved PNG, else its pixels)."""
        shown = self.window.shown
        if shown is None or shown.image.isNull():
            return
        if shown.path is not None and shown.path.is_file():
            self.use_file(shown.path)
        else:
            self.use_image(shown.image, "the image in view")

    def use_entry(self, entry) -> None:
        """"Use as Input" on a history entry: its image file."""
        if entry is None:
            return
        if not entry.image_path.is_file():
            self.window.show_message(f"The image file of this entry is missing: {entry.image_path}", "warning")
            return
        self.use_file(entry.image_path)

    def clear(self) -> None:
        """Back to text-to-image."""
        self.loader.cancel()
        self.panel.clear()

    def _on_loaded(self, stored: StoredInput, image: QImage) -> None:
        self.panel.set_input(stored, image)
        # The size the model is best at with this input; the person can still change it.
        size = kontext_size(stored) if self.panel.edits() else fit_size(*own_size(stored))
        self.controls.set_size(*size)
        self.window.statusBar().showMessage(
            f"{stored.name or 'The image'} is the {'image to edit' if self.panel.edits() else 'input image'} "
            f"({stored.width}×{stored.height})", 4000)

    def _on_failed(self, message: str) -> None:
        stored = self.panel.stored()
        if stored is None:
            self.panel.clear()
        else:  # the earlier input stays
            self.panel.set_input(stored, self.panel.inputImageView.preview())
        self.window.show_message(f"Could not use that image as input: {message}")

    # -- restoring ----------------------------------------------------------------------------
    def restore(self, request: GenerationRequest) -> InputImageChoice | None:
        """Put `request`'s input image back in the well from the app's copy (found by its hash);
        a request without one clears the well. Returns the copy to remake the image with, or None
        (with one line in the message bar when the request had an input whose copy is gone)."""
        self.loader.cancel()
        if request.image is None:
            self.panel.clear()
            return None
        stored = find(self.folder, request.image.fingerprint)
        if stored is None:
            self.panel.clear()
            self.window.show_message(
                f"The input image of these settings ({short_hash(request.image.fingerprint)}) is not in the app's "
                "data folder, so the well stays empty; the other settings are restored.", "warning")
            return None
        self.panel.set_input(stored, preview(stored, self.folder))
        return stored.choice
